// Package h2client is the sidecar's HTTP/2 client: a pool of connections
// to a cluster's endpoints (h2c, or over connections its dialer secured),
// which multiplexes requests as streams.
//
// It exists for the cost of a request, as the HTTP/1.1 pool does
// (upstream/h1.go). net/http's HTTP/2 transport runs every request on a
// goroutine of its own that writes its headers and body, flushing each,
// while the caller waits for it. Here the caller's goroutine writes the
// request's HEADERS and, when its body has already arrived in full (the
// usual gRPC call: see Complete), its DATA, in one write to the socket,
// and then waits for the response that the connection's reader goroutine
// hands it. A body still arriving is written by a goroutine beside it, so
// full-duplex streams work.
//
// Framing and HPACK are golang.org/x/net/http2's Framer and hpack. What is
// here: the pool (a connection per endpoint that is shared by up to the
// server's SETTINGS_MAX_CONCURRENT_STREAMS streams, more connections when
// those are taken, dials to an endpoint coalesced), flow control in both
// directions, GOAWAY (a request the server did not take is sent again on
// another connection), a PING health check of connections that go quiet,
// and the mapping onto net/http's Request and Response.
package h2client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options configure a Pool.
type Options struct {
	// Dial opens a connection to an endpoint ("host:port"); its errors
	// are returned by RoundTrip as they are.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// IdleTimeout closes a connection without streams for this long
	// (0: 90 s).
	IdleTimeout time.Duration
}

// Pool is an HTTP/2 connection pool: an http.RoundTripper. Requests carry
// their endpoint's address in URL.Host. It is safe for concurrent use.
type Pool struct {
	opts Options

	mu      sync.Mutex
	conns   map[string][]*conn // by endpoint address
	dialing map[string]*dialCall
}

type dialCall struct {
	done chan struct{}
	err  error
}

// New returns a pool.
func New(opts Options) *Pool {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 90 * time.Second
	}
	return &Pool{opts: opts, conns: map[string][]*conn{}, dialing: map[string]*dialCall{}}
}

// maxRetries bounds how often a request the server did not take (a
// GOAWAY below its stream, a connection lost before it was sent) is sent
// again on another connection.
const maxRetries = 3

// RoundTrip sends req as a stream and returns its response once the
// response's headers arrive. The response body must be read to its end
// or closed.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for try := 0; ; try++ {
		cc, err := p.getConn(ctx, req.URL.Host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := cc.roundTrip(req)
		var ne *notSentError
		if errors.As(err, &ne) {
			if try < maxRetries && ctx.Err() == nil {
				continue // nothing of it was sent or read: another connection
			}
			closeBody(req)
			return nil, ne.err
		}
		return resp, err
	}
}

// closeBody closes a request body no stream took (RoundTrip closes the
// body in every case, as an http.RoundTripper must).
func closeBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody {
		_ = req.Body.Close()
	}
}

// getConn returns a connection to addr with a stream reserved on it,
// dialing one when none has room.
func (p *Pool) getConn(ctx context.Context, addr string) (*conn, error) {
	dials := 0
	for {
		p.mu.Lock()
		for _, cc := range p.conns[addr] {
			if cc.reserve() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		if d := p.dialing[addr]; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				if ctx.Err() == nil && errors.Is(d.err, context.Canceled) {
					continue // the request that dialed gave up; this one dials again
				}
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		p.dialing[addr] = d
		p.mu.Unlock()
		nc, err := p.opts.Dial(ctx, "tcp", addr)
		var cc *conn
		if err == nil {
			cc, err = newConn(p, addr, nc)
		}
		if err == nil {
			err = cc.awaitSettings(ctx)
		}
		p.mu.Lock()
		delete(p.dialing, addr)
		if err == nil {
			p.conns[addr] = append(p.conns[addr], cc)
		}
		p.mu.Unlock()
		d.err = err
		close(d.done)
		if err != nil {
			return nil, err
		}
		if cc.reserve() {
			return cc, nil
		}
		// Full already (other requests took its streams), or ended
		// before it was in the pool (its removal may have run first).
		cc.mu.Lock()
		dead := cc.closed || cc.goingAway
		none := cc.peer.MaxStreams == 0
		cc.mu.Unlock()
		if dead {
			p.remove(cc)
		}
		if none {
			return nil, &RefusedError{Reason: "the upstream allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)"}
		}
		if dials++; dials >= maxDials {
			return nil, &RefusedError{Reason: fmt.Sprintf("no stream free on %d new connections to %s", dials, addr)}
		}
	}
}

// maxDials bounds the connections one request dials, each taken by
// others before it could use it.
const maxDials = 4

// remove takes a closed or retiring connection out of the pool.
func (p *Pool) remove(cc *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.conns[cc.addr]
	for i, c := range list {
		if c == cc {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.conns, cc.addr)
	} else {
		p.conns[cc.addr] = list
	}
}

// CloseIdleConnections closes the connections that carry no stream.
func (p *Pool) CloseIdleConnections() {
	for _, cc := range p.all() {
		if cc.closeIfIdle() {
			p.remove(cc)
		}
	}
}

// Retire ends the pool's use: idle connections close, the others once
// their streams end, taking no new ones. A request still sent after it
// dials a new connection, which closes after the idle timeout.
func (p *Pool) Retire() {
	for _, cc := range p.all() {
		cc.retire()
	}
}

func (p *Pool) all() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []*conn
	for _, list := range p.conns {
		all = append(all, list...)
	}
	return all
}
