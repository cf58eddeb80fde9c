// Package cancelsig carries cancellation down the sidecar's per-request
// chain (downstream connection -> request -> upstream connection) without
// the allocations of the context package's cancellation: a request
// context made with context.WithCancelCause, its route timer made with
// time.AfterFunc and the upstream connection's context.AfterFunc cost nine
// allocations per request. A Signal is the cancellation state of a
// context type of the sidecar's own (a connection's, a request's); a
// Watcher (the next link) is told of it through an interface value, which
// allocates nothing.
//
// Contexts from elsewhere (net/http's HTTP/2 server, a per-try timeout's
// context) still work: Follow falls back to context.AfterFunc, and Signal
// has the AfterFunc method through which the context package propagates
// cancellation from a custom context to the contexts derived from it.
package cancelsig

import (
	"context"
	"sync"
)

// A Watcher is told once that what it watches was cancelled. Cancelled
// runs on the cancelling goroutine: it must not block.
type Watcher interface {
	Cancelled()
}

// Watchable is a context that tells Watchers of its cancellation.
type Watchable interface {
	// Watch registers w; false when the context is cancelled already
	// (w was not registered and is not told).
	Watch(w Watcher) bool
	// Unwatch unregisters w; true when w was registered and has not
	// been told and will not be.
	Unwatch(w Watcher) bool
}

// Stop undoes a Follow.
type Stop struct {
	from Watchable
	w    Watcher
	f    func() bool
}

// Stop stops the watch; true when the watcher was not told and will not
// be (as the function context.AfterFunc returns).
func (s Stop) Stop() bool {
	switch {
	case s.f != nil:
		return s.f()
	case s.from != nil:
		return s.from.Unwatch(s.w)
	}
	return false // told at once by Follow
}

// Follow tells w when ctx is cancelled: through ctx's Watch when ctx is
// Watchable, which allocates nothing, else through context.AfterFunc (w
// told on a goroutine of its own). When a Watchable ctx is cancelled
// already, w is told before Follow returns (context.AfterFunc tells it
// soon after); Stop then reports false.
func Follow(ctx context.Context, w Watcher) Stop {
	if wc, ok := ctx.(Watchable); ok {
		if wc.Watch(w) {
			return Stop{from: wc, w: w}
		}
		w.Cancelled()
		return Stop{}
	}
	if ctx.Done() == nil {
		return Stop{f: never} // cannot be cancelled
	}
	return Stop{f: context.AfterFunc(ctx, w.Cancelled)}
}

func never() bool { return true }

// Cause is context.Cause that also knows the sidecar's contexts, whose
// causes the context package cannot see.
func Cause(ctx context.Context) error {
	if c, ok := ctx.(interface{ Cause() error }); ok {
		if err := c.Cause(); err != nil {
			return err
		}
	}
	return context.Cause(ctx)
}

// Signal is a context's cancellation: its Done channel (made when first
// asked for), error and cause, and the Watchers to tell. The zero value
// is ready to use; a Signal must not be copied after first use.
type Signal struct {
	mu    sync.Mutex
	done  chan struct{}
	err   error
	cause error
	// Watchers, in place for the usual one or two, then spilled.
	inline [2]Watcher
	more   []Watcher
}

// closedChan is the Done channel of a Signal cancelled before anyone
// asked for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is context.Context's Done.
func (s *Signal) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		if s.err != nil {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// Err is context.Context's Err.
func (s *Signal) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Cause is the cause given to Cancel (nil before it).
func (s *Signal) Cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// Cancel cancels the signal with err (context.Canceled when nil) and
// cause (err when nil) and tells every Watcher, on this goroutine. Only
// the first call does anything; it reports whether it was the first.
func (s *Signal) Cancel(err, cause error) bool {
	if err == nil {
		err = context.Canceled
	}
	if cause == nil {
		cause = err
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.err, s.cause = err, cause
	if s.done != nil {
		close(s.done)
	}
	inline, more := s.inline, s.more
	s.inline, s.more = [2]Watcher{}, nil
	s.mu.Unlock()
	for _, w := range inline {
		if w != nil {
			w.Cancelled()
		}
	}
	for _, w := range more {
		w.Cancelled()
	}
	return true
}

// Watch is Watchable's Watch.
func (s *Signal) Watch(w Watcher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	for i := range s.inline {
		if s.inline[i] == nil {
			s.inline[i] = w
			return true
		}
	}
	s.more = append(s.more, w)
	return true
}

// Unwatch is Watchable's Unwatch.
func (s *Signal) Unwatch(w Watcher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.inline {
		if s.inline[i] == w {
			s.inline[i] = nil
			return true
		}
	}
	for i, x := range s.more {
		if x == w {
			last := len(s.more) - 1
			copy(s.more[i:], s.more[i+1:])
			s.more[last] = nil // no reference kept past the length
			s.more = s.more[:last]
			return true
		}
	}
	return false
}

// AfterFunc runs f on a goroutine of its own once the signal is
// cancelled, as context.AfterFunc does; the context package uses it to
// cancel the contexts derived from a context that embeds the Signal.
func (s *Signal) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	if !s.Watch(a) {
		a.Cancelled()
		return func() bool { return false }
	}
	return func() bool { return s.Unwatch(a) }
}

type afterFunc struct{ f func() }

func (a *afterFunc) Cancelled() { go a.f() }
