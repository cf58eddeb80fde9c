package procscale

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDefaultPolicyDoesNotFlap(t *testing.T) {
	p := DefaultPolicy
	if !(p.Down < p.Up) || p.Up > 1 || p.Quiet < 1 || p.Interval <= 0 {
		t.Fatalf("DefaultPolicy %+v: want 0 < Down < Up <= 1, Quiet >= 1, Interval > 0", p)
	}
	// A steady load, whatever its size, settles: at most one step down
	// after the last step up, never up again.
	for busy := 0.05; busy < 8; busy += 0.05 {
		procs, quiet, downs := 1, 0, 0
		for range 50 * p.Quiet {
			next, q := p.Next(procs, 8, busy, quiet)
			if next > procs {
				if downs > 0 {
					t.Fatalf("%.2f cores: up again to %d after a step down", busy, next)
				}
			} else if next < procs {
				downs++
			}
			procs, quiet = next, q
		}
		if downs > 1 {
			t.Errorf("%.2f cores: %d steps down after going up", busy, downs)
		}
	}
}

func TestPolicyNext(t *testing.T) {
	p := Policy{Interval: time.Second, Up: 0.75, Down: 0.5, Quiet: 20}
	type step struct {
		busy             float64
		wantProcs, quiet int
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"idle stays on one", 2, []step{{0.1, 1, 0}, {0.7, 1, 0}, {0, 1, 0}}},
		{"a busy interval doubles at once", 2, []step{{0.75, 2, 0}, {1.9, 2, 0}}},
		{"doubling stops at the maximum", 6, []step{{0.9, 2, 0}, {1.6, 4, 0}, {3.5, 6, 0}, {6, 6, 0}}},
		{"a load between the thresholds keeps its Ps", 2, []step{{0.8, 2, 0}, {0.6, 2, 0}, {0.6, 2, 0}, {1.2, 2, 0}}},
		{"Quiet quiet intervals remove one P", 2, func() []step {
			s := []step{{1, 2, 0}}
			for i := 1; i < p.Quiet; i++ {
				s = append(s, step{0.4, 2, i})
			}
			return append(s, step{0.4, 1, 0}, step{0.4, 1, 0})
		}()},
		{"a busier interval starts the quiet count again", 2, func() []step {
			s := []step{{1, 2, 0}}
			for i := 1; i < p.Quiet; i++ {
				s = append(s, step{0.3, 2, i})
			}
			s = append(s, step{0.6, 2, 0})
			for i := 1; i < p.Quiet; i++ {
				s = append(s, step{0.3, 2, i})
			}
			return append(s, step{0.3, 1, 0})
		}()},
		{"one P at a time on the way down", 4, func() []step {
			s := []step{{0.8, 2, 0}, {1.6, 4, 0}}
			for i := 1; i < p.Quiet; i++ {
				s = append(s, step{1.4, 4, i}) // fits in 3 Ps at half their capacity
			}
			s = append(s, step{1.4, 3, 0}, step{1.4, 3, 0}) // does not fit in 2 at half
			return s
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procs, quiet := 1, 0
			for i, s := range tc.steps {
				procs, quiet = p.Next(procs, tc.max, s.busy, quiet)
				if procs != s.wantProcs || quiet != s.quiet {
					t.Fatalf("step %d (%.2f cores used): %d Ps, %d quiet; want %d, %d", i, s.busy, procs, quiet, s.wantProcs, s.quiet)
				}
			}
		})
	}
}

// TestScalesWithLoad runs a Scaler on this process: spinning goroutines
// make it add a P, and stopping them makes it remove it again. The policy
// is quicker and its thresholds lower than the default so that a loaded
// test machine still sees both.
func TestScalesWithLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("spins the CPU")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	pol := Policy{Interval: 20 * time.Millisecond, Up: 0.5, Down: 0.2, Quiet: 5}
	s := Start(2, pol)
	if s == nil {
		t.Skip("no CPU time on this platform")
	}
	defer s.Stop()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after Start, want 1", n)
	}
	waitProcs := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); runtime.GOMAXPROCS(0) != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d, want %d", runtime.GOMAXPROCS(0), want)
			}
		}
	}

	var spin atomic.Bool
	spin.Store(true)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for spin.Load() {
			}
		})
	}
	waitProcs(2)
	spin.Store(false)
	wg.Wait()
	waitProcs(1)

	// Stopped, it no longer scales: spinning leaves one P one.
	s.Stop()
	runtime.GOMAXPROCS(1)
	spin.Store(true)
	for range 2 {
		wg.Go(func() {
			for spin.Load() {
			}
		})
	}
	time.Sleep(20 * pol.Interval)
	spin.Store(false)
	wg.Wait()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS %d after Stop and a busy while, want 1: the Scaler still runs", n)
	}
}

func TestHold(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	s := Start(3, Policy{Interval: time.Hour, Up: 0.5, Down: 0.3, Quiet: 1}) // no measurement in the test's time
	if s == nil {
		t.Skip("no CPU time on this platform")
	}
	defer s.Stop()
	want := func(n int) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("GOMAXPROCS %d, want %d", got, n)
		}
	}
	want(1)
	r1 := Hold()
	want(3)
	r2 := Hold()
	r1()
	want(3) // r2 still holds
	r1()    // a second release of the same Hold changes nothing
	want(3)
	r2()
	want(1)

	// What the load asks for while held is set when the last Hold ends.
	r3 := Hold()
	s.setProcs(2)
	want(3)
	r3()
	want(2)

	s.Stop()
	runtime.GOMAXPROCS(1)
	Hold()()
	_ = Hold()
	want(1) // no Scaler running: nothing held
}

// The maximum of Ps stays for the policy's Linger after the last Hold
// ends, through Holds that come meanwhile and what the load asks for,
// and then goes back to what the load asks for.
func TestHoldLingers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		name   string
		linger time.Duration
	}{{"an hour", time.Hour}, {"20 ms", 20 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			s := Start(3, Policy{Interval: time.Hour, Up: 0.5, Down: 0.3, Quiet: 1, Linger: c.linger})
			if s == nil {
				t.Skip("no CPU time on this platform")
			}
			defer s.Stop()
			Hold()()
			r := Hold()
			s.setProcs(2)
			r()
			if c.linger == time.Hour {
				if n := runtime.GOMAXPROCS(0); n != 3 {
					t.Fatalf("GOMAXPROCS %d after the Holds ended, within their linger: want 3", n)
				}
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for runtime.GOMAXPROCS(0) != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("GOMAXPROCS %d 10 s after the Holds ended, want 2 (what the load asks for)", runtime.GOMAXPROCS(0))
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// Work done under a Hold that does not fill the maximum of Ps it ran
// on does not make the Scaler add Ps for the load: when the Hold ends,
// the process is back on one.
func TestHeldBurstDoesNotScale(t *testing.T) {
	if testing.Short() {
		t.Skip("spins the CPU")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	pol := Policy{Interval: 20 * time.Millisecond, Up: 0.5, Down: 0.2, Quiet: 1000}
	s := Start(3, pol) // a held interval must use 1.5 cores to count
	if s == nil {
		t.Skip("no CPU time on this platform")
	}
	defer s.Stop()
	release := Hold()
	var spin atomic.Bool
	spin.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { // one core: enough for one P, well under three
		for spin.Load() {
		}
	})
	time.Sleep(15 * pol.Interval)
	spin.Store(false)
	wg.Wait()
	release()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS %d after a held burst of one core, want 1", n)
	}
}

// A Hold outstanding when the Scaler stops changes nothing when released.
func TestHoldAcrossStop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	s := Start(2, Policy{Interval: time.Hour, Up: 0.5, Down: 0.3, Quiet: 1})
	if s == nil {
		t.Skip("no CPU time on this platform")
	}
	release := Hold()
	s.Stop()
	runtime.GOMAXPROCS(3)
	release()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS %d after a Hold released after Stop, want 3 (unchanged)", n)
	}
}

func TestStartRefusesPoliciesItCannotRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	for _, pol := range []Policy{
		{Interval: 0, Up: 0.5, Down: 0.3, Quiet: 1},
		{Interval: time.Second, Up: 0.5, Down: 0.5, Quiet: 1},
		{Interval: time.Second, Up: 0.5, Down: 0.3, Quiet: 0},
		{Interval: time.Second, Up: 0.5, Down: 0.3, Quiet: 1, Linger: -time.Millisecond},
	} {
		if s := Start(2, pol); s != nil {
			s.Stop()
			t.Errorf("Start(2, %+v) returned a Scaler", pol)
		}
	}
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS %d, want 3 (unchanged)", n)
	}
}

func TestNothingBelowTwo(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	if s := Start(1, DefaultPolicy); s != nil {
		s.Stop()
		t.Fatal("Start(1) returned a Scaler")
	}
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS %d after Start(1), want 3 (unchanged)", n)
	}
	var s *Scaler
	s.Stop() // a nil Scaler stops
}
