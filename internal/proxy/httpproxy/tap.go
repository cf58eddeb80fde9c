package httpproxy

import (
	"time"

	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/tap"
)

// tapHTTP hands a finished request to the live tap. It runs only while
// someone is tapping (the caller checks p.tap.Active()), after the
// response is complete, on the request's goroutine. No body is read;
// headers are redacted by the tap package.
func (p *Proxy) tapHTTP(rs *reqState, sw *statusWriter, clusterName string, code int, flags, host, rid string, reqBytes int64, start time.Time) {
	r := rs.down
	e := &tap.Event{
		Kind: tap.KindHTTP, Time: start, Protocol: r.Proto,
		Method: r.Method, Authority: rs.target.Authority, Path: r.URL.RequestURI(),
		Status: code, DurationMs: float64(time.Since(start)) / float64(time.Millisecond),
		BytesReceived: reqBytes, BytesSent: sw.n,
		ResponseFlags: flags, UpstreamHost: host, UpstreamCluster: clusterName,
		RequestID: rid, TraceID: tap.TraceID(r.Header.Get("Traceparent")),
		Headers: tap.Headers(r.Header),
	}
	if e.ResponseFlags == "" {
		e.ResponseFlags = "-"
	}
	h := sw.Header()
	if v := h["Grpc-Status"]; len(v) > 0 {
		e.GRPCStatus = v[0]
	} else if v := h[grpcStatusTrailer]; len(v) > 0 {
		e.GRPCStatus = v[0]
	}
	peer := rs.respPeer
	if rs.inbound {
		peer = rs.reqPeer
	}
	p.tap.Ends(e, rs.inbound, peermeta.Parse(peer), serviceOf(clusterName, rs))
	p.tap.Principals(e, rs.inbound, peerPrincipal(rs))
	p.tap.Publish(e)
}
