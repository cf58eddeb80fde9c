package httpproxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/tracing"
)

// traceState is a request's tracing: its config, the context it came
// with, the sampling decision and, once started, its span.
type traceState struct {
	cfg     *proxyconfig.Tracing
	parent  tracing.Context
	sampled bool
	span    *tracing.Span
}

// decideTrace reads the request's trace context and decides sampling when
// its listener traces. A request that is not sampled and came without a
// decision is marked so the next hops agree; that neither allocates nor
// starts anything.
func (p *Proxy) decideTrace(rs *reqState, r *http.Request, t *Target) {
	if p.tracer == nil || t.HTTP == nil || t.HTTP.Tracing == nil {
		return
	}
	ts := &rs.trace
	ts.cfg = t.HTTP.Tracing
	ts.parent = tracing.Extract(r.Header)
	ts.sampled = tracing.Decide(ts.parent, ts.cfg.Sampling)
	if !ts.sampled && !ts.parent.Decided {
		tracing.MarkNotSampled(r.Header)
	}
}

// startSpan starts the span of a sampled request at start and writes its
// context into the request going on (to the app for inbound clusters, to
// the upstream otherwise). Requests the proxy answers itself get their
// span at the end (endSpan).
func (p *Proxy) startSpan(rs *reqState, r *http.Request, start time.Time) {
	ts := &rs.trace
	if !ts.sampled || ts.span != nil {
		return
	}
	addr := collectorAddr(rs.target, ts.cfg.Cluster)
	if addr == "" {
		ts.sampled = false // no collector endpoint: nothing to export to
		return
	}
	kind := tracing.Client
	if rs.inbound {
		kind = tracing.Server
	}
	ts.span = p.tracer.Start(addr, ts.cfg.ServiceName, ts.parent, spanName(rs), kind, start, requestAttrs(rs, r, ts.cfg)...)
	ts.span.Inject(r.Header, ts.parent)
}

// endSpan finishes the request's span with the response's attributes.
func (p *Proxy) endSpan(rs *reqState, r *http.Request, start time.Time, clusterName string, code int, flags, host string, reqBytes, respBytes int64) {
	ts := &rs.trace
	if !ts.sampled {
		return
	}
	if ts.span == nil {
		p.startSpan(rs, r, start)
		if ts.span == nil {
			return
		}
	}
	if flags == "" {
		flags = "-"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.status_code", strconv.Itoa(code)),
		attribute.String("response_flags", flags),
		attribute.Int64("request_size", reqBytes),
		attribute.Int64("response_size", respBytes),
	}
	if clusterName != "" {
		attrs = append(attrs, attribute.String("upstream_cluster", clusterName), attribute.String("upstream_cluster.name", clusterName))
	}
	if host != "" {
		attrs = append(attrs, attribute.String("upstream_address", host))
	}
	peerHeader := rs.respPeer
	if rs.inbound {
		peerHeader = rs.reqPeer
	}
	if peer := peermeta.Parse(peerHeader); peer.Name != "" {
		attrs = append(attrs, attribute.String("peer.workload", peer.Name), attribute.String("peer.namespace", peer.Namespace))
	}
	ts.span.End(code, time.Now(), attrs...)
}

// traceID is the request's trace ID for the access log: its span's, else
// the one it came with; "" when it has none.
func (rs *reqState) traceID() string {
	if rs.trace.span != nil {
		return rs.trace.span.TraceID()
	}
	if rs.trace.parent.HasIDs {
		return rs.trace.parent.TraceIDString()
	}
	return ""
}

// collectorAddr is the address of the first endpoint of the collector's
// cluster in the request's snapshot, or "".
func collectorAddr(t *Target, cluster string) string {
	if t.Snapshot == nil {
		return ""
	}
	c := t.Snapshot.Clusters[cluster]
	if c == nil {
		return ""
	}
	if la := c.Config().LoadAssignment; la != nil {
		for _, l := range la.Localities {
			for _, e := range l.Endpoints {
				return e.Address
			}
		}
	}
	return ""
}

// spanName is Istio's: the destination service and port, then "/*"
// ("reviews.default.svc.cluster.local:9080/*"), or the authority for
// requests that reached no cluster.
func spanName(rs *reqState) string {
	if rs.cluster != nil {
		// "<direction>|<port>|<subset>|<host>"
		parts := strings.SplitN(rs.cluster.Name(), "|", 4)
		if len(parts) == 4 {
			host := parts[3]
			if svc := rs.cluster.Config().Service; rs.inbound && svc != "" {
				host = svc
			}
			if host != "" {
				return host + ":" + parts[1] + "/*"
			}
		}
	}
	return rs.target.Authority + "/*"
}

// requestAttrs are the span's attributes known when it starts: Envoy's
// names, then the custom tags.
func requestAttrs(rs *reqState, r *http.Request, cfg *proxyconfig.Tracing) []attribute.KeyValue {
	path := r.URL.RequestURI()
	attrs := make([]attribute.KeyValue, 0, 10+len(cfg.Tags))
	attrs = append(attrs,
		attribute.String("component", "proxy"),
		attribute.String("http.method", r.Method),
		attribute.String("http.url", "http://"+rs.target.Authority+path),
		attribute.String("http.path", path),
		attribute.String("http.protocol", r.Proto),
		attribute.String("guid:x-request-id", r.Header.Get("X-Request-Id")),
	)
	if ua := r.Header.Get("User-Agent"); ua != "" {
		attrs = append(attrs, attribute.String("user_agent", ua))
	}
	if self := rs.p.self; self.Name != "" {
		attrs = append(attrs, attribute.String("istio.canonical_service", self.App), attribute.String("istio.namespace", self.Namespace), attribute.String("node.workload", self.Name))
	}
	for _, tag := range cfg.Tags {
		v := tag.Value
		if tag.Header != "" {
			if hv := r.Header.Get(tag.Header); hv != "" {
				v = hv
			}
		}
		attrs = append(attrs, attribute.String(tag.Name, v))
	}
	return attrs
}

// accessLogFor is where a request on t is logged: the --access-log
// logger when set (it overrides the config, filter included), else the
// listener's access_log sinks (the first) with its filter (nil: every
// request), else nowhere.
func (p *Proxy) accessLogFor(t *Target) (*accesslog.Logger, *proxyconfig.LogFilter) {
	if p.access != nil {
		return p.access, nil
	}
	if p.accessFiles == nil || t.HTTP == nil || len(t.HTTP.AccessLogs) == 0 {
		return nil, nil
	}
	return p.accessFiles.Get(t.HTTP.AccessLogs[0].Path), t.HTTP.AccessLogs[0].Filter
}
