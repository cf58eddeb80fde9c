// Package procscale runs the proxy on as few Go processors (Ps,
// GOMAXPROCS) as its load needs: one while one is enough, more, up to a
// maximum, while it is busy.
//
// Every P beyond the first costs CPU per request even when the load would
// fit on one: a goroutine made ready by the network poller while another
// P is idle wakes a thread for it, which looks for work, often finds it
// taken, and sleeps again, two futex calls and a spin that a single P
// never makes. Measured through sidecars with 2 Ps against 1 (the same
// binary, paired rounds): 7-26 % more CPU per request in 20 of 25 rounds,
// at 1000 requests a second and at full load, on 2 cores and on 16
// (docs/performance.md, "Session 14"). A fixed single P would cap the
// proxy at one core, though, which a busy service outgrows.
//
// The Scaler measures the process's CPU use (user and system, from
// getrusage) every Interval. When one interval used at least Up of the
// CPU its Ps can give (half a core with one P, by default), the Ps
// double, up to the maximum, at once: a burst that fills its Ps gets
// more within two intervals. When Quiet intervals in a row would each
// have fitted in one P fewer at Down of its capacity, one P goes, one at
// a time. With Down below Up a steady load does not flap: a load that
// fits in p-1 Ps at Down does not fill them to Up.
//
// Work beside the requests that comes in bursts, such as applying a new
// configuration, runs under Hold, on the maximum of Ps, so that requests
// arriving meanwhile do not wait behind it on a single P. The maximum
// stays for Linger after the last Hold ends: a change of configuration
// arrives as several xDS responses a few milliseconds apart, and without
// it each would raise and lower GOMAXPROCS. An interval with a Hold in
// it adds Ps only if it filled the maximum to Up: what it measured is
// mostly the Hold's burst, which had its Ps.
//
// Changing GOMAXPROCS stops the world for a moment (tens of
// microseconds), which the thresholds make rare. A program that sets
// GOMAXPROCS no longer follows later changes of its container's CPU
// limit; the maximum is the runtime's choice at start or lower.
package procscale

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is when the Scaler adds and removes Ps.
type Policy struct {
	// Interval is the time between two measurements of the process's
	// CPU use.
	Interval time.Duration
	// Up is the share of its Ps' capacity an interval must use for the
	// Ps to double.
	Up float64
	// Down is the share of one P fewer's capacity that Quiet intervals
	// in a row must each stay under for one P to go.
	Down  float64
	Quiet int
	// Linger is how long the maximum of Ps stays after the last Hold
	// ends (0: it goes at once).
	Linger time.Duration
}

// DefaultPolicy adds Ps at the end of an interval (half a second) that
// kept its Ps half busy and removes one after 10 quiet seconds. Holds
// linger 100 ms: measured under a change of configuration a second, the
// responses of each change set GOMAXPROCS six times, and each of those
// stopped the world for 0.3-3.8 ms on a busy 2-core machine
// (docs/performance.md, optimisation 27). A single P
// half busy (about 12,000 requests a second through a sidecar on the
// benchmark's 16-core machine) already queues requests behind each
// other: with 40 µs of work each, M/M/1 puts its 99th percentile wait
// near 0.4 ms, and higher loads soon make it more.
var DefaultPolicy = Policy{Interval: 500 * time.Millisecond, Up: 0.5, Down: 0.3, Quiet: 20, Linger: 100 * time.Millisecond}

// Next is the number of Ps after an interval that used busy cores of CPU
// with procs Ps (at most max), given quiet, the count of quiet intervals
// before it; it returns the new count of quiet intervals too.
func (p Policy) Next(procs, max int, busy float64, quiet int) (int, int) {
	if procs < max && busy >= p.Up*float64(procs) {
		return min(max, 2*procs), 0
	}
	if procs > 1 && busy <= p.Down*float64(procs-1) {
		if quiet+1 >= p.Quiet {
			return procs - 1, 0
		}
		return procs, quiet + 1
	}
	return procs, 0
}

// valid reports whether the Scaler can run by p: a positive interval,
// 0 <= Down < Up (a Down at or above Up would let a steady load flap)
// and no negative Linger.
func (p Policy) valid() bool {
	return p.Interval > 0 && p.Down >= 0 && p.Down < p.Up && p.Quiet >= 1 && p.Linger >= 0
}

// Scaler sets GOMAXPROCS from the process's CPU use.
type Scaler struct {
	max  int
	pol  Policy
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	procs   int  // the Ps the load asks for
	holds   int  // Holds not yet released: while any, max Ps
	held    bool // a Hold ran since the loop last looked
	stopped bool // Stop ran: Holds change nothing any more
	// lingerUntil is when the Ps may go back to procs after the last
	// Hold ended (zero: not lingering); linger runs endLinger then.
	lingerUntil time.Time
	linger      *time.Timer
}

// active is the running Scaler, which Hold raises.
var active atomic.Pointer[Scaler]

// Start starts with one P and scales between it and max Ps by pol. It
// returns nil, and changes nothing, when max is below 2, pol is not one
// it can run by (see Policy), or the process's CPU time cannot be read
// here (then GOMAXPROCS is the caller's to set). The runtime's metric
// /sched/gomaxprocs:threads (go_sched_gomaxprocs_threads on the admin
// API) shows the Ps in use.
func Start(max int, pol Policy) *Scaler {
	if _, ok := cpuTime(); !ok || max < 2 || !pol.valid() {
		return nil
	}
	s := &Scaler{max: max, pol: pol, procs: 1, stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GOMAXPROCS(1)
	active.Store(s)
	go s.run()
	return s
}

// Stop stops scaling and waits for the Scaler's goroutine; GOMAXPROCS
// stays where it is.
func (s *Scaler) Stop() {
	if s == nil {
		return
	}
	active.CompareAndSwap(s, nil)
	s.mu.Lock()
	s.stopped = true
	if s.linger != nil {
		s.linger.Stop()
	}
	s.mu.Unlock()
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Hold runs the process on the running Scaler's maximum of Ps until
// release is called and the policy's Linger has passed, whatever the
// load: for a burst of work beside the requests, such as applying a new
// configuration, which on one P would hold up every request that
// arrives meanwhile for up to the scheduler's time slice (10 ms) at a
// time. Without a running Scaler it does nothing. Raising and lowering
// GOMAXPROCS each stop the world for a moment.
func Hold() (release func()) {
	s := active.Load()
	if s == nil {
		return func() {}
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return func() {}
	}
	s.holds++
	s.held = true
	if s.holds == 1 && s.lingerUntil.IsZero() && s.procs < s.max {
		runtime.GOMAXPROCS(s.max)
	}
	s.lingerUntil = time.Time{}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.holds--
			if s.holds == 0 && !s.stopped {
				s.endHold()
			}
			s.mu.Unlock()
		})
	}
}

// endHold lowers the Ps when the last Hold has ended, at once or a
// Linger later. Called with mu held.
func (s *Scaler) endHold() {
	if s.pol.Linger <= 0 {
		if s.procs < s.max {
			runtime.GOMAXPROCS(s.procs)
		}
		return
	}
	s.lingerUntil = time.Now().Add(s.pol.Linger)
	if s.linger == nil {
		s.linger = time.AfterFunc(s.pol.Linger, s.endLinger)
	} else {
		s.linger.Reset(s.pol.Linger)
	}
}

// endLinger lowers the Ps once the Linger after the last Hold has
// passed, unless a Hold came meanwhile or the Scaler stopped.
func (s *Scaler) endLinger() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lingerUntil.IsZero() || s.holds > 0 || s.stopped {
		return
	}
	if left := time.Until(s.lingerUntil); left > 0 {
		s.linger.Reset(left) // a Hold came and went since the timer was set
		return
	}
	s.lingerUntil = time.Time{}
	s.held = true // the interval this ends in ran partly on the maximum
	if s.procs < s.max {
		runtime.GOMAXPROCS(s.procs)
	}
}

// takeHeld reports whether a Hold ran, or lingered, since it was last
// asked: the interval ran on the maximum of Ps either way.
func (s *Scaler) takeHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held || s.holds > 0 || !s.lingerUntil.IsZero()
	s.held = false
	return h
}

// setProcs records the Ps the load asks for and sets them unless a Hold,
// or its Linger, keeps the maximum.
func (s *Scaler) setProcs(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n != s.procs && s.holds == 0 && s.lingerUntil.IsZero() {
		runtime.GOMAXPROCS(n)
	}
	s.procs = n
}

func (s *Scaler) run() {
	defer close(s.done)
	t := time.NewTicker(s.pol.Interval)
	defer t.Stop()
	procs, quiet := 1, 0
	last, _ := cpuTime()
	lastAt := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			cpu, ok := cpuTime()
			now := time.Now()
			wall := now.Sub(lastAt)
			if !ok || wall <= 0 {
				continue // measured over a longer interval next time
			}
			busy := float64(cpu-last) / float64(wall)
			last, lastAt = cpu, now
			held := s.takeHeld()
			next, q := s.pol.Next(procs, s.max, busy, quiet)
			if next > procs && held && busy < s.pol.Up*float64(s.max) {
				// The interval's work ran under a Hold, on the
				// maximum of Ps, and did not fill those: it was the
				// Hold's burst, which had its Ps, not a load that
				// needs them.
				next, q = procs, 0
			}
			if next != procs {
				s.setProcs(next)
			}
			procs, quiet = next, q
		}
	}
}
