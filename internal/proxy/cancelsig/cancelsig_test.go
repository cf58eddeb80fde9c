package cancelsig

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// watcher counts how often it was told.
type watcher struct {
	mu sync.Mutex
	n  int
}

func (w *watcher) Cancelled() {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
}

func (w *watcher) told() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// sigCtx is a context made of a Signal, as the sidecar's are.
type sigCtx struct {
	context.Context
	Signal
}

func (c *sigCtx) Done() <-chan struct{} { return c.Signal.Done() }
func (c *sigCtx) Err() error            { return c.Signal.Err() }

func newSigCtx() *sigCtx { return &sigCtx{Context: context.Background()} }

func TestCancelTellsEveryWatcherOnce(t *testing.T) {
	var s Signal
	ws := []*watcher{{}, {}, {}, {}} // more than the inline slots
	for _, w := range ws {
		if !s.Watch(w) {
			t.Fatal("Watch refused before Cancel")
		}
	}
	if !s.Unwatch(ws[1]) || !s.Unwatch(ws[3]) {
		t.Fatal("Unwatch of a registered watcher reported false")
	}
	if s.Unwatch(ws[1]) {
		t.Fatal("second Unwatch reported true")
	}
	cause := errors.New("route timeout")
	if !s.Cancel(nil, cause) {
		t.Fatal("first Cancel reported false")
	}
	if s.Cancel(nil, errors.New("later")) {
		t.Fatal("second Cancel reported true")
	}
	for i, want := range []int{1, 0, 1, 0} {
		if got := ws[i].told(); got != want {
			t.Errorf("watcher %d told %d times, want %d", i, got, want)
		}
	}
	if s.Err() != context.Canceled || s.Cause() != cause {
		t.Errorf("Err, Cause = %v, %v; want %v, %v", s.Err(), s.Cause(), context.Canceled, cause)
	}
	if s.Unwatch(ws[0]) {
		t.Error("Unwatch after Cancel reported true: the watcher was told")
	}
	if s.Watch(&watcher{}) {
		t.Error("Watch after Cancel reported true")
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Cancel")
	}
}

func TestDoneAskedBeforeCancelIsClosedByIt(t *testing.T) {
	var s Signal
	done := s.Done()
	if s.Done() != done {
		t.Fatal("Done returned a different channel the second time")
	}
	select {
	case <-done:
		t.Fatal("Done closed before Cancel")
	default:
	}
	s.Cancel(context.DeadlineExceeded, nil)
	<-done
	if s.Err() != context.DeadlineExceeded || s.Cause() != context.DeadlineExceeded {
		t.Errorf("Err, Cause = %v, %v; want DeadlineExceeded for both", s.Err(), s.Cause())
	}
}

func TestFollowWatchableAndStop(t *testing.T) {
	ctx := newSigCtx()
	w := &watcher{}
	stop := Follow(ctx, w)
	if !stop.Stop() {
		t.Fatal("Stop before cancellation reported false")
	}
	ctx.Cancel(nil, nil)
	if w.told() != 0 {
		t.Fatal("a stopped watcher was told")
	}

	ctx = newSigCtx()
	w = &watcher{}
	stop = Follow(ctx, w)
	ctx.Cancel(nil, nil)
	if w.told() != 1 {
		t.Fatalf("told %d times, want 1", w.told())
	}
	if stop.Stop() {
		t.Error("Stop after the watcher was told reported true")
	}

	// Already cancelled: told before Follow returns.
	w = &watcher{}
	stop = Follow(ctx, w)
	if w.told() != 1 || stop.Stop() {
		t.Errorf("following a cancelled context: told %d times, Stop true; want 1, false", w.told())
	}
}

func TestFollowOtherContexts(t *testing.T) {
	w := &watcher{}
	if stop := Follow(context.Background(), w); !stop.Stop() {
		t.Error("Stop of a context that cannot be cancelled reported false")
	}

	ctx, cancel := context.WithCancel(context.Background())
	stop := Follow(ctx, w)
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for w.told() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if w.told() != 1 {
		t.Fatalf("told %d times after the context.Context was cancelled, want 1", w.told())
	}
	if stop.Stop() {
		t.Error("Stop after the watcher was told reported true")
	}
}

// The context package derives contexts from a Signal's context through
// its AfterFunc method: a child is cancelled with its parent, and a
// child cancelled first leaves no watcher behind.
func TestDerivedContexts(t *testing.T) {
	parent := newSigCtx()
	child, cancelChild := context.WithCancelCause(parent)
	other, cancelOther := context.WithCancel(parent)
	cancelOther()
	if parent.more != nil || parent.inline[1] != nil {
		t.Error("a cancelled child left its watcher registered")
	}
	parent.Cancel(nil, errors.New("route timeout"))
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not cancelled with its parent")
	}
	if child.Err() != context.Canceled || other.Err() != context.Canceled {
		t.Errorf("children's errors %v, %v; want Canceled", child.Err(), other.Err())
	}
	cancelChild(nil)
}

func TestCause(t *testing.T) {
	ctx := newSigCtx()
	if Cause(ctx) != nil {
		t.Fatal("Cause before cancellation not nil")
	}
	cause := errors.New("route timeout")
	ctx.Cancel(nil, cause)
	if Cause(ctx) != cause {
		t.Errorf("Cause = %v, want %v", Cause(ctx), cause)
	}
	cctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if Cause(cctx) != cause {
		t.Errorf("Cause of a context.Context = %v, want %v", Cause(cctx), cause)
	}
}

func TestWatchAllocatesNothing(t *testing.T) {
	ctx := newSigCtx()
	w := &watcher{}
	allocs := testing.AllocsPerRun(100, func() {
		Follow(ctx, w).Stop()
	})
	if allocs != 0 {
		t.Errorf("Follow and Stop on a Signal's context: %v allocations, want 0", allocs)
	}
}

// Stop racing Cancel: a watcher whose Stop reported true is never told,
// one whose Stop reported false is told exactly once.
func TestStopRacingCancel(t *testing.T) {
	for i := 0; i < 2000; i++ {
		ctx := newSigCtx()
		ws := []*watcher{{}, {}, {}}
		stops := make([]Stop, len(ws))
		for j, w := range ws {
			stops[j] = Follow(ctx, w)
		}
		res := make([]bool, len(ws))
		var wg sync.WaitGroup
		wg.Add(1 + len(ws))
		go func() { defer wg.Done(); ctx.Cancel(nil, nil) }()
		for j := range ws {
			go func() { defer wg.Done(); res[j] = stops[j].Stop() }()
		}
		wg.Wait()
		for j, w := range ws {
			if n := w.told(); res[j] && n != 0 || !res[j] && n != 1 {
				t.Fatalf("round %d, watcher %d: Stop %v, told %d times", i, j, res[j], n)
			}
		}
	}
}
