package listener

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Noticing an HTTP/1.x client that goes away while its request is served.
//
// A connection's goroutine reads nothing while the handler runs, so a
// client that closes or resets its connection while its request waits
// (for the upstream, or in an injected delay) would be noticed only when
// the response is written: meanwhile the upstream works on a request
// nobody waits for, and the request holds a connection of the cluster's
// pool, for as long as the upstream takes when the route has no timeout
// (Istio's default). A sweep that runs every watchAfter while requests
// are being served starts a watcher on each connection whose request has
// been served for at least watchAfter and whose body was read whole: a
// goroutine that peeks at the connection. A read that fails (end of
// stream, reset) cancels the connection's context, which ends the request
// (flag DC, the upstream connection closed or its stream reset); a read
// that finds bytes (the client pipelined its next request) ends the
// watch. When the handler returns, a watcher still reading is stopped
// with a past read deadline and waited for, so only one goroutine reads
// the connection at a time. Requests answered within watchAfter, nearly
// all of them, pay two uncontended lock operations and an atomic load;
// the sweep itself walks the HTTP/1.x connections (under the lock that
// registers new ones) every watchAfter while any request is served. End
// of stream counts as the client gone, a half-close too, as under
// net/http and Envoy's HTTP connection manager: the request is
// cancelled, though what its handler still writes is sent before the
// connection closes. A body's Complete never waits for a read in
// progress, so a stalled upload holds up no sweep.

// watchAfter is how long a request is served before its connection is
// watched, and how often the sweep looks: a client that went away is
// noticed within twice this.
const watchAfter = 100 * time.Millisecond

// errClientGone is the cause of a request cancelled because its client
// closed the connection.
var errClientGone = errors.New("the client closed its connection")

// connWatch is an h1Conn's watch state.
type connWatch struct {
	mu        sync.Mutex
	watchable bool // the handler runs: a sweep may start a watcher
	watching  bool // a watcher was started for the request
	wg        sync.WaitGroup
	gone      atomic.Bool // a watcher saw the client go
}

// armWatch lets the sweep watch the connection while the handler serves
// req. Requests that take the connection over (CONNECT, upgrades) are not
// watched.
func (c *h1Conn) armWatch(req *http.Request) {
	if req.Method == http.MethodConnect || req.Header["Upgrade"] != nil {
		return
	}
	c.watch.mu.Lock()
	c.watch.watchable = true
	c.watch.mu.Unlock()
	c.m.sweepSoon()
}

// unwatch ends the watch of the request being served: a watcher still
// reading is stopped and waited for. It reports whether the client went
// away.
func (c *h1Conn) unwatch() bool {
	c.watch.mu.Lock()
	watching := c.watch.watching
	c.watch.watchable, c.watch.watching = false, false
	c.watch.mu.Unlock()
	if !watching {
		return false
	}
	_ = c.dc.SetReadDeadline(aLongTimeAgo)
	c.watch.wg.Wait()
	_ = c.dc.SetReadDeadline(time.Time{})
	return c.watch.gone.Load()
}

// maybeWatch starts a watcher when the request has been served since
// before cutoff (unix nanos) and its body was read whole. It reports
// whether the connection may need one at a later sweep.
func (c *h1Conn) maybeWatch(cutoff int64) bool {
	c.watch.mu.Lock()
	defer c.watch.mu.Unlock()
	if !c.watch.watchable || c.watch.watching {
		return false
	}
	if c.since.Load() > cutoff || !bodyRead(c.body) {
		return true
	}
	c.watch.watching = true
	c.watch.wg.Add(1)
	go c.watchConn()
	return false
}

// bodyRead says whether nothing is left to read of a request body, so
// that what the connection carries next is the client's next request or
// its end.
func bodyRead(b io.ReadCloser) bool {
	if b == nil || b == http.NoBody {
		return true
	}
	cb, ok := b.(interface{ Complete() bool })
	return ok && cb.Complete()
}

// watchConn waits for the connection's next bytes or its end.
func (c *h1Conn) watchConn() {
	defer c.watch.wg.Done()
	_, err := c.br.Peek(1)
	if err == nil || isTimeout(err) {
		return // the next request came, or unwatch stopped the read
	}
	c.watch.gone.Store(true)
	c.ctx.Cancel(nil, errClientGone)
}

// sweepSoon schedules the sweep unless it is scheduled.
func (m *Manager) sweepSoon() {
	if m.sweeping.Load() || !m.sweeping.CompareAndSwap(false, true) {
		return
	}
	// Only the goroutine that set sweeping resets the timer (made stopped
	// by New) until the sweep clears it.
	m.sweepTimer.Reset(watchAfter)
}

// sweep starts the watchers that are due and runs again while requests
// are being served.
func (m *Manager) sweep() {
	if m.sweepConns() {
		m.sweepTimer.Reset(watchAfter)
		return
	}
	m.sweeping.Store(false)
	// A request that was armed after the look above and saw the sweep
	// still scheduled did not schedule one: look once more.
	if m.sweepConns() && m.sweeping.CompareAndSwap(false, true) {
		m.sweepTimer.Reset(watchAfter)
	}
}

// sweepConns starts the watchers that are due; true when requests are
// being served whose watch may start later.
func (m *Manager) sweepConns() bool {
	cutoff := time.Now().Add(-watchAfter).UnixNano()
	m.h1Mu.Lock()
	defer m.h1Mu.Unlock()
	later := false
	for c := range m.h1Conns {
		if c.state.Load() == h1Active && c.maybeWatch(cutoff) {
			later = true
		}
	}
	return later
}
