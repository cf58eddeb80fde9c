package gcheadroom

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		headroom, base uint64
		want           int
	}{
		{6 * mib, 0, 100},
		{6 * mib, 4 * mib, 100},  // small config: Go's default
		{6 * mib, 6 * mib, 100},  // exactly the headroom
		{6 * mib, 10 * mib, 60},  // 1000 services
		{6 * mib, 12 * mib, 50},  // twice the headroom
		{6 * mib, 100 * mib, 25}, // floor
	} {
		if got := Percent(c.headroom, c.base); got != c.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", c.headroom/mib, c.base/mib, got, c.want)
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitGOGC collects until the Tuner, which adjusts after collections,
// has set GOGC to want.
func waitGOGC(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %d", gogc(), want)
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
}

// A live heap much larger than the headroom lowers GOGC after the next
// collection, and GOGC goes back to 100 when the heap shrinks.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	tu := Start(1 << 20)
	if tu == nil {
		t.Fatal("Start returned nil without GOGC in the environment")
	}
	defer tu.Stop()
	live := make([][]byte, 64) // 64 MiB live: far above the headroom
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	waitGOGC(t, MinPercent)
	if tu.Percent() != MinPercent {
		t.Errorf("Percent() = %d, want %d", tu.Percent(), MinPercent)
	}
	runtime.KeepAlive(live)
	live = nil
	waitGOGC(t, Percent(1<<20, 1<<20)) // a small heap: back to 100
	tu.Stop()
	if gogc() != 100 {
		t.Errorf("GOGC %d after Stop, want 100", gogc())
	}
}

func TestOffWhenGOGCIsSetOrNoHeadroom(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start(1<<20) != nil {
		t.Error("Start made a Tuner although GOGC is set")
	}
	t.Setenv("GOGC", "")
	if Start(0) != nil {
		t.Error("Start made a Tuner for a headroom of 0")
	}
	var none *Tuner
	none.Stop()
	none.Adjust()
	if none.Percent() != 100 {
		t.Error("a nil Tuner's Percent is not 100")
	}
}

// A Tuner's adjustment made while Tight runs takes effect when it ends;
// until then Tight's lower target holds.
func TestTunerDuringTight(t *testing.T) {
	t.Setenv("GOGC", "")
	tu := Start(32 << 20)
	defer tu.Stop()
	live := make([][]byte, 64) // 64 MiB live: GOGC about 50
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC() // measured live, no garbage: Tight's 25 % stands (TightPercent)
	var during, tuned int
	if err := Tight(configGCPercent, func() error {
		deadline := time.Now().Add(10 * time.Second)
		for tu.Percent() == 100 && time.Now().Before(deadline) {
			runtime.GC()
			time.Sleep(5 * time.Millisecond)
		}
		during, tuned = gogc(), tu.Percent()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(live)
	if tuned == 100 || tuned == configGCPercent {
		t.Fatalf("the Tuner chose %d for a 64 MiB heap and a 32 MiB headroom, want about 50", tuned)
	}
	if during != configGCPercent {
		t.Errorf("GOGC %d while Tight ran, want %d", during, configGCPercent)
	}
	if got := gogc(); got != tuned {
		t.Errorf("GOGC %d after Tight, want the Tuner's %d", got, tuned)
	}
}

// An adjustment that was about to set GOGC when Stop ran does not undo
// Stop's GOGC (Stop's critical section is run by hand while Adjust
// waits for the lock).
func TestAdjustAfterStopKeepsStopsGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	tu := Start(1 << 20)
	defer tu.Stop()
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	runtime.GC()
	mu.Lock()
	tu.percent = 100
	adjusted := make(chan struct{})
	go func() { tu.Adjust(); close(adjusted) }()
	time.Sleep(50 * time.Millisecond) // Adjust is past its first check, waiting for mu
	tu.stopped.Store(true)
	setPercent(100)
	tu.percent = 100
	mu.Unlock()
	<-adjusted
	runtime.KeepAlive(live)
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after Stop, want 100", got)
	}
}
