package httpproxy

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/tracing"
	"weft.dev/weft/internal/proxy/upstream"
)

// mirrorDrainMax is how much of a mirror's answer is read (and dropped)
// so that its connection can be reused; past it the connection closes.
const mirrorDrainMax = 64 << 10

// drawMirrors returns the mirror policies of a that this request draws,
// nil when none (no allocation for routes without mirrors).
func drawMirrors(a *proxyconfig.RouteAction) []proxyconfig.Mirror {
	var out []proxyconfig.Mirror
	for _, m := range a.Mirrors {
		if m.PerMillion >= 1_000_000 || m.PerMillion > 0 && rand.Uint32N(1_000_000) < m.PerMillion {
			out = append(out, m)
		}
	}
	return out
}

// sendMirrors sends a copy of the upstream request out to each of ms's
// clusters, once the request's own exchange is over (a streamed response
// too), and drops their answers: fire and forget, on goroutines of their
// own, bounded by the route timeout. The copy carries the request's
// header (as forwarded) and its whole body, which the request's attempts
// kept as they read it (RetryBufferLimit at most): a body that was larger,
// or that no attempt read to its end (the upstream answered early or could
// not be reached), is not mirrored; a request without a body always is.
// Its authority gets "-shadow" appended to the host unless the policy
// keeps it.
func (p *Proxy) sendMirrors(rs *reqState, out *http.Request, ms []proxyconfig.Mirror) {
	var body []byte
	if out.Body != nil && out.Body != http.NoBody {
		var ok bool
		if body, ok = rs.replay.whole(out.ContentLength); !ok {
			p.log.Debug("request not mirrored: its body was too large to keep or did not arrive whole", "path", out.URL.Path)
			return
		}
	}
	timeout := proxyconfig.DefaultRouteTimeout
	if rs.action != nil && rs.action.Timeout > 0 {
		timeout = rs.action.Timeout
	}
	for _, m := range ms {
		c := rs.target.Snapshot.Clusters[m.Cluster]
		if c == nil {
			p.log.Debug("request not mirrored: no such cluster", "cluster", m.Cluster)
			continue
		}
		u := *out.URL
		req := &http.Request{
			Method: out.Method, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: out.Header.Clone(), Host: out.Host, ContentLength: int64(len(body)), Body: http.NoBody,
		}
		if len(body) > 0 {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		if !m.KeepHost {
			req.Host = shadowHost(req.Host)
		}
		if m.Unsampled {
			tracing.Unsample(req.Header)
		}
		h2 := c.UseHTTP2(rs.h2Down, rs.grpc, false)
		if _, ok := req.Header["User-Agent"]; !ok && h2 {
			req.Header["User-Agent"] = []string{""} // no Go default User-Agent upstream
		}
		host, err := c.Pick(rs.target.OriginalDst, rs.hash, rs.hasHash)
		if err != nil {
			p.log.Debug("request not mirrored: no healthy endpoint", "cluster", m.Cluster)
			continue
		}
		if err := c.StartRequest(h2); err != nil {
			p.log.Debug("request not mirrored: the cluster's circuit breaker is open", "cluster", m.Cluster)
			continue
		}
		req.URL.Host = host.Addr
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			host.Start()
			resp, err := c.Transport(h2).RoundTrip(req.WithContext(ctx))
			c.Observe(host, upstream.ResultOf(resp, err, false))
			failed := err != nil
			if err == nil {
				failed = resp.StatusCode >= 500
				_, _ = io.CopyN(io.Discard, resp.Body, mirrorDrainMax)
				_ = resp.Body.Close()
			} else {
				p.log.Debug("mirrored request failed", "cluster", m.Cluster, "err", err)
			}
			host.Done(failed)
			c.EndRequest()
		}()
	}
}

// shadowHost appends "-shadow" to an authority's host, before its port
// when it has one ("[::1]:80" -> "[::1]-shadow:80"), as Envoy does.
func shadowHost(authority string) string {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 || strings.IndexByte(authority[i:], ']') >= 0 {
		return authority + "-shadow"
	}
	return authority[:i] + "-shadow" + authority[i:]
}
