// Package h2conn holds what the sidecar's HTTP/2 server (h2server) and
// client (h2client) share: header field names as HTTP/2 sends them, and
// the socket writer whose every write has a deadline.
package h2conn

import (
	"net"
	"strings"
	"time"
)

// LowerName is a canonical header key as HTTP/2 sends it (lowercase); the
// common ones are not allocated again.
func LowerName(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Access-Control-Allow-Origin",
		"Age", "Allow", "Authorization", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
		"Expires", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Grpc-Status-Details-Bin",
		"Grpc-Timeout", "Last-Modified", "Link", "Location", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Te", "Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Envoy-Upstream-Service-Time", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
		"Traceparent", "Tracestate", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "X-B3-Parentspanid",
		"X-Weft-Peer",
	} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// DeadlineWriter writes to a connection with a deadline of Timeout from
// the start of each write (those a bufio.Writer makes when full
// included): a peer that stops reading cannot hold a writer forever.
type DeadlineWriter struct {
	Conn    net.Conn
	Timeout time.Duration
}

func (w DeadlineWriter) Write(p []byte) (int, error) {
	_ = w.Conn.SetWriteDeadline(time.Now().Add(w.Timeout))
	return w.Conn.Write(p)
}
