package listener

import (
	"bufio"
	"context"
	"net/http"

	"weft.dev/weft/internal/proxy/h2server"
)

// connContext is the parent context of a connection's requests: the
// listener's details of the connection, and its local address (for
// authorization rules on destination ports and IPs, as under net/http).
func connContext(dc *downConn) context.Context {
	ctx := context.WithValue(context.Background(), connInfoKey{}, dc.info)
	return context.WithValue(ctx, http.LocalAddrContextKey, dc.LocalAddr())
}

// serveH2 serves an HTTP/2 connection with the sidecar's own server
// (h2server) on the calling goroutine, until the client leaves or a drain
// ends it; br holds the bytes already read (the preface's start). The
// connection stays tracked as raw (trackRaw) until it closes, so that
// Shutdown waits for it and closes it at the drain deadline.
func (m *Manager) serveH2(dc *downConn, br *bufio.Reader) {
	defer m.untrackRaw(dc)
	sc := h2server.NewConn(dc, br, h2server.Options{
		Handler:     m.handler,
		Context:     connContext(dc),
		IdleTimeout: idleTimeout,
		Date:        httpDate,
		Logger:      m.log,
	})
	m.h1Mu.Lock()
	if m.h2Conns == nil {
		m.h1Mu.Unlock()
		_ = dc.Close()
		return
	}
	m.h2Conns[sc] = struct{}{}
	m.h1Mu.Unlock()
	defer func() {
		m.h1Mu.Lock()
		delete(m.h2Conns, sc)
		m.h1Mu.Unlock()
	}()
	if m.drainingNow() {
		sc.Shutdown()
	}
	sc.Serve()
}

// shutdownH2 sends GOAWAY on every HTTP/2 connection: clients open no
// more streams, and each connection closes when its streams are done. It
// does not wait: a connection whose writer is stuck on a client that
// does not read sends its GOAWAY when the write deadline ends that.
func (m *Manager) shutdownH2() {
	m.h1Mu.Lock()
	conns := make([]*h2server.Conn, 0, len(m.h2Conns))
	for sc := range m.h2Conns {
		conns = append(conns, sc)
	}
	m.h1Mu.Unlock()
	for _, sc := range conns {
		go sc.Shutdown()
	}
}
