package httpproxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// Route timers are reused across requests: one that fired or was
// stopped never cancels a later request that took it from the pool.
func TestPooledRouteTimerNeverFiresForAnotherRequest(t *testing.T) {
	newState := func(d time.Duration) *reqState {
		return &reqState{parent: context.Background(), action: &proxyconfig.RouteAction{Timeout: d}}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				short := newState(time.Duration(i%3)*50*time.Microsecond + time.Microsecond)
				short.startTimer()
				time.Sleep(time.Duration(i%4) * 25 * time.Microsecond)
				short.stopTimer()
				long := newState(time.Hour)
				long.startTimer()
				time.Sleep(10 * time.Microsecond)
				if long.Err() != nil {
					t.Error("a request with a 1 h route timeout was cancelled by a reused timer")
				}
				long.stopTimer()
			}
		}()
	}
	wg.Wait()
}
