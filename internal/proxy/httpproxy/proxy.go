// Package httpproxy is the proxy's HTTP request path: route matching,
// direct responses and redirects, header mutations and rewrites, then
// forwarding to a cluster with retries, timeouts and circuit breakers.
// Every failure answers with a short readable body and Envoy's response
// flags (header x-weft-response-flags and the access log).
//
// Forwarding (forward.go) prepares the upstream request in place (hop-by-hop
// headers, rewrites, header mutations), runs the attempts (endpoint picks,
// retries, per-try timeouts) and relays the response: headers, 1xx
// responses, trailers, streaming with immediate flushes, and protocol
// upgrades.
package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/cancelsig"
	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/h1wire"
	"weft.dev/weft/internal/proxy/h2client"
	"weft.dev/weft/internal/proxy/jwtauth"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/router"
	"weft.dev/weft/internal/proxy/tap"
	"weft.dev/weft/internal/proxy/tracing"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/xdsmeta"
)

// FlagsHeader carries the response flags of a failed, retried or
// fault-injected request.
const FlagsHeader = "X-Weft-Response-Flags"

// RetryBufferLimit is how much of a request body is kept for retries; a
// request whose body grew past it is never retried.
const RetryBufferLimit = 64 << 10

// Options configure a Proxy.
type Options struct {
	// Logger receives data path logs (rarely: errors only).
	Logger *slog.Logger
	// AccessLog receives one entry per request whatever the config says
	// (--access-log); nil leaves access logging to the config.
	AccessLog *accesslog.Logger
	// AccessLogs are the loggers the config's access_log sinks name; nil
	// disables them.
	AccessLogs *accesslog.Files
	// Tracer records the spans of requests on listeners whose config
	// traces; nil disables tracing.
	Tracer *tracing.Tracer
	// Metrics records request metrics; nil disables them.
	Metrics *proxymetrics.Metrics
	// Workload is the proxy's own workload, sent to peer sidecars in the
	// peer metadata header (package peermeta): on requests to outbound
	// clusters and on responses from inbound ones.
	Workload peermeta.Workload
	// TrackHijacked, when set, is told about connections taken over by
	// an upgrade (WebSocket) so that shutdown can wait for and then close
	// them; it returns the func to call when the connection is done.
	TrackHijacked func(net.Conn) (done func())
	// Tap receives finished requests while someone is tapping; nil
	// disables it.
	Tap *tap.Hub
}

// Proxy forwards HTTP requests. It is safe for concurrent use.
type Proxy struct {
	track   func(net.Conn) func()
	log     *slog.Logger
	access  *accesslog.Logger
	metrics *proxymetrics.Metrics
	peer    []string // the peer header's value, shared by every request: read only
	tap     *tap.Hub

	// Tracing and the config's access loggers (tracing.go).
	tracer      *tracing.Tracer
	accessFiles *accesslog.Files
	self        peermeta.Workload

	// jwks caches the key sets of jwksUris (jwt.go).
	jwks *jwtauth.Cache
}

// New returns a Proxy.
func New(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{log: opts.Logger, access: opts.AccessLog, metrics: opts.Metrics, track: opts.TrackHijacked, tap: opts.Tap}
	p.tracer, p.accessFiles, p.self = opts.Tracer, opts.AccessLogs, opts.Workload
	p.jwks = jwtauth.NewCache(opts.Logger.With("component", "jwks"))
	if v := peermeta.Encode(opts.Workload); v != "" {
		p.peer = []string{v}
	}
	return p
}

// Target is what the listener decided about a request.
type Target struct {
	// Snapshot is the runtime config the request runs on.
	Snapshot *dataplane.Snapshot
	// Routes is the route table of the selected filter chain.
	Routes *router.Table
	// Authority selects the virtual host: the Host header, or the CONNECT
	// target for requests inside a tunnel.
	Authority string
	// OriginalDst is the host:port the client addressed (absolute URL or
	// CONNECT target), used by ORIGINAL_DST clusters; empty when unknown.
	OriginalDst string
	// HTTP is the HTTP connection manager of the selected filter chain
	// (tracing and access log config); nil when there is none.
	HTTP *proxyconfig.HTTPConnectionManager
	// DownstreamPrincipal is the SPIFFE ID from the client's verified
	// certificate when the connection is mTLS, "" otherwise. Principals
	// come from certificates only, never from headers.
	DownstreamPrincipal string
	// DownstreamHTTPS is set when the client's connection is TLS that this
	// proxy terminated with a certificate of its config (a gateway's HTTPS
	// server), not the mesh's mTLS: the request's X-Forwarded-Proto is
	// then https.
	DownstreamHTTPS bool
	// DownstreamTLS is set when the client's connection is TLS (mesh mTLS
	// or a gateway's HTTPS server); a virtual host that requires TLS
	// redirects the others.
	DownstreamTLS bool
}

// logged reports whether an access log filter passes the finished
// request. It is apart from Serve so that the request it builds for the
// filter, which escapes, is allocated only when there is a filter.
func (p *Proxy) logged(f *proxyconfig.LogFilter, t *Target, r *http.Request, sw *statusWriter, code int, d time.Duration, flags string) bool {
	req := t.routeRequest(r)
	return router.Logged(f, &router.LogInput{Request: &req, Code: code, Duration: d, Flags: flags, GRPCStatus: grpcStatusOf(sw, code)})
}

// routeRequest is r as routes and access log filters match it.
func (t *Target) routeRequest(r *http.Request) router.Request {
	return router.Request{HTTP: r, Authority: t.Authority, TLS: t.DownstreamTLS}
}

// errors carried as context causes.
var (
	errRouteTimeout  = errors.New("route timeout")
	errPerTryTimeout = errors.New("per-try timeout")
	// errStreamDuration: the route's max_stream_duration (or the
	// grpc-timeout it lets bound the stream) ran out.
	errStreamDuration = errors.New("max stream duration")
)

// reqState is the per-request state of a forwarded request. It is also
// the context of the upstream request: the server's request context
// (parent), cancelled also by the route timeout and when Serve returns
// (Signal), whose Watchers (the HTTP/1.1 pool's connection) are told
// without allocating; see package cancelsig. It follows the parent's
// cancellation at once when the parent is the sidecar's own (HTTP/1.x,
// no allocation), else (net/http's HTTP/2 server: context.AfterFunc)
// only once something waits for it (Done, Watch, AfterFunc).
type reqState struct {
	parent context.Context
	cancelsig.Signal
	follow     sync.Once // followParent, at most once, not after Serve
	parentStop cancelsig.Stop
	start      time.Time // when Serve began
	// h2Trace, when the upstream pool is HTTP/2's, holds the trace that
	// relays its 1xx responses; Value consults it.
	h2Trace context.Context

	p       *Proxy
	sw      *statusWriter // &w, or the writer of a local reply
	w       statusWriter
	body    countingBody
	target  *Target
	down    *http.Request
	vh      *router.VirtualHost
	route   *proxyconfig.Route
	action  *proxyconfig.RouteAction
	wc      *proxyconfig.WeightedCluster
	cluster *upstream.Cluster
	hash    uint64
	hasHash bool
	h2Down  bool
	grpc    bool
	upgrade bool
	inbound bool // the cluster is an inbound one: the app behind this sidecar
	// timerDone (guarded by tmu) and rtDone (by mu) sit with the other
	// flags, which keeps the state in one size class smaller
	// (TestRequestStateSize).
	timerDone bool // the request body was read (startTimer ran), or the timer was stopped first
	rtDone    bool // the round trip returned: 1xx responses are no longer relayed
	mirrored  bool // the request is mirrored: its body is kept (sendMirrors)
	// The route timer, armed once (startTimer) unless stopped first; on
	// a route with a stream bound (max_stream_duration), armed when the
	// request is routed (armStream) and moved earlier by the route
	// timeout when that ends first.
	tmu   sync.Mutex
	timer *routeTimer

	// peer metadata header values: the request's (read on inbound
	// clusters) and the response's (read on outbound ones); "" when none.
	reqPeer, respPeer string
	// cors is set for an allowed cross-origin request (cors.go).
	cors *corsState

	// trace is the request's tracing (tracing.go).
	trace traceState

	// replay is the request body as attempts read it (roundTrip).
	replay replayBody

	// written by the round tripper, read after ServeHTTP returns.
	mu           sync.Mutex
	upstreamHost string
	flags        string
}

func (rs *reqState) setResult(host, flags string) {
	rs.mu.Lock()
	if host != "" {
		rs.upstreamHost = host
	}
	if flags != "" {
		rs.flags = addFlag(rs.flags, flags)
	}
	rs.mu.Unlock()
}

func addFlag(flags, f string) string {
	if f == "" {
		return flags
	}
	if flags == "" {
		return f
	}
	if strings.Contains(","+flags+",", ","+f+",") {
		return flags
	}
	return flags + "," + f
}

// Deadline is context.Context's: the server's request's.
func (rs *reqState) Deadline() (time.Time, bool) { return rs.parent.Deadline() }

func (rs *reqState) followParent() { rs.parentStop = cancelsig.Follow(rs.parent, rs) }

// Done is context.Context's.
func (rs *reqState) Done() <-chan struct{} {
	rs.follow.Do(rs.followParent)
	return rs.Signal.Done()
}

// Err is context.Context's: the request's own cancellation, else its
// parent's (which a request that nothing waits on does not follow).
func (rs *reqState) Err() error {
	if err := rs.Signal.Err(); err != nil {
		return err
	}
	return rs.parent.Err()
}

// Cause is why the request was cancelled (errRouteTimeout for the route
// timeout), nil while it is not.
func (rs *reqState) Cause() error {
	if c := rs.Signal.Cause(); c != nil {
		return c
	}
	if rs.parent.Err() != nil {
		return cancelsig.Cause(rs.parent)
	}
	return nil
}

// Watch is cancelsig.Watchable's.
func (rs *reqState) Watch(w cancelsig.Watcher) bool {
	rs.follow.Do(rs.followParent)
	return rs.Signal.Watch(w)
}

// AfterFunc is how the context package propagates the request's
// cancellation to contexts derived from it (a per-try timeout's).
func (rs *reqState) AfterFunc(f func()) func() bool {
	rs.follow.Do(rs.followParent)
	return rs.Signal.AfterFunc(f)
}

// end ends the request's context: its route timer stopped, no following
// of the parent after it.
func (rs *reqState) end() {
	rs.stopTimer()
	rs.follow.Do(func() {})
	rs.parentStop.Stop()
	rs.Cancel(nil, nil)
}

// Cancelled cancels the request when the server's request context is
// cancelled (a Watcher of it).
func (rs *reqState) Cancelled() {
	rs.Cancel(rs.parent.Err(), cancelsig.Cause(rs.parent))
}

// startTimer runs once the request body has been read: it arms the
// route timeout, unless a grpc-timeout bounds the stream instead, and
// then only when the timeout ends before the stream's bound (armStream).
func (rs *reqState) startTimer() {
	a := rs.action
	if a == nil || a.Timeout <= 0 && !a.StreamTimeouts() {
		return
	}
	rs.tmu.Lock()
	defer rs.tmu.Unlock()
	if rs.timerDone {
		return
	}
	rs.timerDone = true
	rt := rs.timer
	switch {
	case a.Timeout <= 0 || rt != nil && rt.grpcTimeout:
	case rt == nil:
		rs.timer = armTimer(rs, a.Timeout, false)
	case time.Since(rs.start)+a.Timeout < rt.streamBound && rt.t.Stop():
		// Not fired (a fired one is cancelling the request already).
		rt.stream.Store(false)
		rt.t.Reset(a.Timeout)
	}
}

// armStream arms the timer of a route with a stream bound when the
// request is routed, counted from its start: the route's
// max_stream_duration, or with grpc_timeout_header_max, a gRPC request's
// grpc-timeout, capped and offset (which then replaces the route
// timeout). A request with neither gets no timer here.
func (rs *reqState) armStream(r *http.Request, a *proxyconfig.RouteAction) {
	d, fromHeader := a.MaxStreamDuration, false
	if a.GRPCTimeoutHeader && router.IsGRPC(r) {
		if v, ok := r.Header["Grpc-Timeout"]; ok && len(v) > 0 {
			if h, ok := grpcTimeout(v[0]); ok {
				d, fromHeader = h, true
				if a.GRPCTimeoutHeaderMax > 0 && d > a.GRPCTimeoutHeaderMax {
					d = a.GRPCTimeoutHeaderMax
				}
				if d > 0 && a.GRPCTimeoutHeaderOffset > 0 {
					d = max(d-a.GRPCTimeoutHeaderOffset, 0) // 0: at once
				}
			}
		}
	}
	if d <= 0 && !fromHeader {
		return
	}
	rs.tmu.Lock()
	defer rs.tmu.Unlock()
	if rs.timerDone {
		return // ended already
	}
	rt := armTimer(rs, max(d-time.Since(rs.start), 0), true)
	rt.streamBound, rt.grpcTimeout = d, fromHeader
	rs.timer = rt
}

// streamBound is the request's stream bound and whether its body had
// been read; 0 when it has none.
func (rs *reqState) streamBound() (time.Duration, bool) {
	rs.tmu.Lock()
	defer rs.tmu.Unlock()
	if rs.timer == nil {
		return 0, rs.timerDone
	}
	return rs.timer.streamBound, rs.timerDone
}

// setGRPCTimeout tells the upstream of a gRPC request with a stream bound
// what the bound is, as Envoy does: its grpc-timeout becomes the bound
// (not less the time already spent, so that it does not vary with the
// proxy's own delay). Unlike Envoy, a shorter grpc-timeout of the client's
// (on a route whose bound is max_stream_duration) is kept: the upstream
// is not told it has longer than its caller waits.
func (rs *reqState) setGRPCTimeout(h http.Header) {
	rs.tmu.Lock()
	rt := rs.timer
	ok := rt != nil && (rt.streamBound > 0 || rt.grpcTimeout)
	var d time.Duration
	if ok {
		d = rt.streamBound
	}
	rs.tmu.Unlock()
	if !ok {
		return
	}
	if v := h["Grpc-Timeout"]; len(v) > 0 {
		if c, valid := grpcTimeout(v[0]); valid && c <= d {
			return
		}
	}
	h["Grpc-Timeout"] = []string{formatGRPCTimeout(d)}
}

// formatGRPCTimeout writes d as a grpc-timeout value: whole milliseconds
// (rounded up) while they fit the header's 8 digits, else seconds,
// minutes or hours.
func formatGRPCTimeout(d time.Duration) string {
	const maxValue = 1e8 - 1
	for _, u := range []struct {
		unit time.Duration
		c    string
	}{{time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}, {time.Hour, "H"}} {
		n := (d + u.unit - 1) / u.unit
		if n <= maxValue || u.c == "H" {
			return strconv.FormatInt(int64(min(n, maxValue)), 10) + u.c
		}
	}
	return ""
}

// upgraded ends the route timeout of a request whose protocol was
// switched (101): an upgraded connection lives as long as both sides
// keep it, and its stream bound, if any.
func (rs *reqState) upgraded() {
	rs.tmu.Lock()
	rt := rs.timer
	if rt == nil || rt.streamBound == 0 {
		rs.tmu.Unlock()
		rs.stopTimer()
		return
	}
	rs.timerDone = true
	if !rt.stream.Load() && rt.t.Stop() {
		rt.stream.Store(true)
		rt.t.Reset(max(rt.streamBound-time.Since(rs.start), 0))
	}
	rs.tmu.Unlock()
}

func (rs *reqState) stopTimer() {
	rs.tmu.Lock()
	rt := rs.timer
	rs.timer, rs.timerDone = nil, true
	rs.tmu.Unlock()
	if rt != nil {
		rt.stop()
	}
}

// routeTimer is a route timeout's timer, reused by later requests once
// stopped before it fired: a request's timer and its callback would
// otherwise be two allocations per request. A request with a stream
// bound has one timer for both bounds, set to the one that ends first.
type routeTimer struct {
	t  *time.Timer
	rs atomic.Pointer[reqState]
	// stream is set while the timer is set to the stream bound: firing
	// then cancels the request with errStreamDuration.
	stream atomic.Bool
	// streamBound is the request's stream bound, from its start; 0 when
	// none. grpcTimeout: it came from the request's grpc-timeout.
	// Written when the timer is armed, read under the request's tmu.
	streamBound time.Duration
	grpcTimeout bool
}

var routeTimers sync.Pool

func armTimer(rs *reqState, d time.Duration, stream bool) *routeTimer {
	rt, _ := routeTimers.Get().(*routeTimer)
	if rt == nil {
		rt = &routeTimer{}
		rt.rs.Store(rs)
		rt.stream.Store(stream)
		rt.t = time.AfterFunc(d, rt.fire)
		return rt
	}
	rt.rs.Store(rs)
	rt.stream.Store(stream)
	rt.streamBound, rt.grpcTimeout = 0, false
	rt.t.Reset(d)
	return rt
}

func (rt *routeTimer) fire() {
	if rs := rt.rs.Load(); rs != nil {
		cause := errRouteTimeout
		if rt.stream.Load() {
			cause = errStreamDuration
		}
		rs.Cancel(nil, cause)
	}
}

// stop stops the timer; one that had not fired (and now will not) goes
// back to the pool. One that fired is left to the collector, since its
// callback may still be running.
func (rt *routeTimer) stop() {
	if rt.t.Stop() {
		rt.rs.Store(nil)
		routeTimers.Put(rt)
	}
}

// Serve routes and forwards one request.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Target) {
	start := time.Now()
	p.metrics.RequestStarted()
	// The request's state, response writer and body counter are one
	// allocation.
	rs := &reqState{parent: r.Context(), p: p, target: t, down: r, h2Down: r.ProtoMajor == 2, start: start}
	sw, cb := &rs.w, &rs.body
	sw.ResponseWriter, sw.track, rs.sw = w, p.track, sw
	defer sw.untrack()
	defer rs.replay.release()
	cb.ReadCloser = r.Body
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = cb
	}
	rid := r.Header.Get("X-Request-Id")
	if rid == "" {
		rid = newRequestID()
		r.Header.Set("X-Request-Id", rid)
	}
	if _, ok := rs.parent.(cancelsig.Watchable); ok {
		rs.follow.Do(rs.followParent)
	}
	p.decideTrace(rs, r, t)
	if v, ok := r.Header[peermeta.Header]; ok {
		// Read only if the request goes to an inbound cluster; never
		// forwarded as it came.
		if len(v) > 0 {
			rs.reqPeer = v[0]
		}
		delete(r.Header, peermeta.Header)
	}
	clusterName := ""
	denied := p.secure(r, t)
	defer func() {
		v := recover()
		if v != nil && sw.code != 0 {
			// The response was cut while streaming.
			flag := p.abortFlag(r.Context())
			switch rs.Cause() {
			case errRouteTimeout:
				flag = accesslog.FlagUpstreamTimeout
			case errStreamDuration:
				flag = "" // none, as Envoy's reset at max_stream_duration
			}
			rs.setResult("", flag)
		}
		code := sw.code
		rs.end()
		rs.mu.Lock()
		flags := rs.flags
		host := rs.upstreamHost
		rs.mu.Unlock()
		received := cb.n.Load()
		p.metrics.RequestEnded()
		p.metrics.Request(clusterName, code, flags)
		if p.metrics != nil {
			p.recordIstio(rs, sw, clusterName, code, flags, received, start)
		}
		p.endSpan(rs, r, start, clusterName, code, flags, host, received, sw.n)
		if al, filter := p.accessLogFor(t); al != nil {
			d := time.Since(start)
			if filter == nil || p.logged(filter, t, r, sw, code, d, flags) {
				e := &accesslog.Entry{
					Start: start, Method: r.Method, Authority: t.Authority, Path: r.URL.RequestURI(), Protocol: r.Proto,
					Code: code, Flags: flags, BytesReceived: received, BytesSent: sw.n, Duration: d,
					UpstreamHost: host, UpstreamCluster: clusterName, RequestID: rid, TraceID: rs.traceID(),
				}
				p.accessEnds(e, rs, clusterName)
				al.Log(e)
			}
		}
		if p.tap.Active() {
			p.tapHTTP(rs, sw, clusterName, code, flags, host, rid, received, start)
		}
		if v != nil {
			panic(v)
		}
	}()

	if denied != nil {
		// Record a denial against the service the request was for, as
		// the metrics and access log of any other request on this
		// listener are: route it, without forwarding.
		if t.Routes != nil {
			if _, route := t.Routes.Match(t.routeRequest(r)); route != nil && route.Action != nil {
				if name, _ := router.PickCluster(route.Action); t.Snapshot.Clusters[name] != nil {
					clusterName, rs.cluster = name, t.Snapshot.Clusters[name]
					rs.inbound = strings.HasPrefix(name, xdsmeta.ClusterInboundPrefix)
					rs.grpc = router.IsGRPC(r)
				}
			}
		}
		p.localReply(sw, rs, denied.status, denied.flag, denied.msg)
		return
	}
	if t.Routes == nil {
		p.localReply(sw, rs, http.StatusNotFound, accesslog.FlagNoRoute, "no route configuration for this listener yet")
		return
	}
	vh, route := t.Routes.Match(t.routeRequest(r))
	if vh == nil {
		p.localReply(sw, rs, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("no virtual host for authority %q in route configuration %q", t.Authority, t.Routes.Config().Name))
		return
	}
	if vh.Config.RequireTLS && !t.DownstreamTLS {
		// Before any route, as Envoy: the same request over https.
		h := sw.Header()
		h.Set("Location", "https://"+t.Authority+r.URL.RequestURI())
		sw.WriteHeader(http.StatusMovedPermanently)
		return
	}
	if route == nil {
		p.localReply(sw, rs, http.StatusNotFound, accesslog.FlagNoRoute,
			fmt.Sprintf("no route matched %s %s in virtual host %q", r.Method, r.URL.RequestURI(), vh.Config.Name))
		return
	}
	rs.vh, rs.route = vh, route
	if route.Action != nil && route.Action.StreamTimeouts() {
		// The stream's bound counts from its start, fault delays
		// included.
		rs.armStream(r, route.Action)
	}
	// Istio's order: fault injection, then CORS (on routes that forward).
	if hcm := t.HTTP; hcm != nil && hcm.FaultFilter {
		f := route.Fault
		if f == nil {
			f = hcm.Fault
		}
		if f.Injects() && p.injectFault(sw, rs, r, f, &clusterName) {
			return
		}
	}
	if hcm := t.HTTP; route.CORS != nil && route.Action != nil && hcm != nil && hcm.CORSFilter && p.cors(sw, rs, r, route.CORS, &clusterName) {
		return // a preflight, answered
	}
	switch {
	case route.Direct != nil:
		h := sw.Header()
		p.applyResponseHeaders(rs, h)
		if route.Direct.Body != "" {
			if h.Get("Content-Type") == "" {
				h.Set("Content-Type", "text/plain")
			}
			h.Set("Content-Length", strconv.Itoa(len(route.Direct.Body)))
		}
		sw.WriteHeader(route.Direct.Status)
		_, _ = io.WriteString(sw, route.Direct.Body)
		return
	case route.Redirect != nil:
		path := r.URL.EscapedPath()
		if path == "" {
			path = "/"
		}
		// Without a scheme redirect, Envoy keeps the request's :scheme.
		loc := router.RedirectLocation(&route.Match, route.Redirect, t.routeRequest(r).Scheme(), t.Authority, path, r.URL.RawQuery)
		h := sw.Header()
		p.applyResponseHeaders(rs, h)
		h.Set("Location", loc)
		sw.WriteHeader(route.Redirect.Code)
		return
	}
	a := route.Action
	rs.action = a
	name, wc := router.PickCluster(a)
	clusterName, rs.wc = name, wc
	c := t.Snapshot.Clusters[name]
	if c == nil {
		p.localReply(sw, rs, http.StatusServiceUnavailable, accesslog.FlagNoClusterFound, fmt.Sprintf("cluster %q not found", name))
		return
	}
	rs.cluster = c
	rs.inbound = strings.HasPrefix(name, xdsmeta.ClusterInboundPrefix)
	if len(a.HashPolicies) > 0 {
		src, _, _ := net.SplitHostPort(r.RemoteAddr)
		rs.hash, rs.hasHash = router.Hash(a.HashPolicies, r, src)
	}
	rs.grpc = router.IsGRPC(r)
	dropH2CUpgrade(r.Header)
	rs.upgrade = r.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade")

	if a.Timeout > 0 || a.StreamTimeouts() {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			rs.startTimer()
		} else {
			cb.timerAtEOF, cb.declared = rs, r.ContentLength
		}
	}
	p.startSpan(rs, r, start)
	p.forward(sw, r, rs)
}

// abortFlag says why a response was cut while streaming.
func (p *Proxy) abortFlag(ctx context.Context) string {
	if ctx.Err() != nil {
		return accesslog.FlagDownstreamTermination
	}
	return accesslog.FlagUpstreamTermination
}

// LocalReply answers a request the listener could not route (no filter
// chain) and logs it like any other request.
func (p *Proxy) LocalReply(w http.ResponseWriter, r *http.Request, authority string, status int, flag, msg string) {
	t := &Target{Authority: authority}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	rs := &reqState{parent: r.Context(), p: p, sw: sw, target: t, down: r}
	p.localReply(sw, rs, status, flag, msg)
	p.metrics.Request("", sw.code, flag)
	if p.access != nil {
		p.access.Log(&accesslog.Entry{
			Start: start, Method: r.Method, Authority: authority, Path: r.URL.RequestURI(), Protocol: r.Proto,
			Code: sw.code, Flags: flag, BytesSent: sw.n, Duration: time.Since(start), RequestID: r.Header.Get("X-Request-Id"),
		})
	}
}

func (p *Proxy) localReply(w http.ResponseWriter, rs *reqState, status int, flag, msg string) {
	rs.setResult("", flag)
	h := w.Header()
	if rs.route != nil {
		p.applyResponseHeaders(rs, h)
	}
	p.setPeerHeader(rs, h)
	writeLocal(w, rs.down, rs.start, status, flag, msg)
}

// writeLocal writes a reply the proxy makes itself: a short text body
// with the flags header, or, for gRPC requests, a trailers-only gRPC
// response whose grpc-status says the same (as Envoy does).
func writeLocal(w http.ResponseWriter, r *http.Request, start time.Time, status int, flags, msg string) {
	if router.IsGRPC(r) {
		writeGRPCStatus(w, grpcCode(r, start, status, flags), flags, msg)
		return
	}
	h := w.Header()
	if flags != "" {
		h.Set(FlagsHeader, flags)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	body := msg + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// writeGRPCStatus writes a trailers-only gRPC response with status code.
func writeGRPCStatus(w http.ResponseWriter, code int, flags, msg string) {
	h := w.Header()
	if flags != "" {
		h.Set(FlagsHeader, flags)
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", grpcPercentEncode(msg))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// grpcCode maps a local reply to a gRPC status code. A request whose
// grpc-timeout has passed since it started gets DEADLINE_EXCEEDED whatever
// the cause, since the upstream usually gave up for that very reason.
func grpcCode(r *http.Request, start time.Time, status int, flags string) int {
	if d, ok := grpcTimeout(r.Header.Get("Grpc-Timeout")); ok {
		if !start.IsZero() && time.Since(start) >= d {
			return int(codes.DeadlineExceeded)
		}
	}
	if strings.Contains(flags, accesslog.FlagUpstreamTimeout) {
		return int(codes.DeadlineExceeded)
	}
	// gRPC's mapping of the HTTP status, except that a local reply the
	// mapping leaves UNKNOWN is UNAVAILABLE: the proxy could not serve it.
	if c := grpcOfHTTP(status); c != codes.Unknown {
		return int(c)
	}
	return int(codes.Unavailable)
}

// grpcTimeout parses a grpc-timeout header ("100m", "5S"): at most 8
// digits and a unit, as gRPC's wire format has it. Hours past what a
// Duration holds (99999999H is about 11,000 years) saturate instead of
// wrapping round to a short or negative timeout.
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}

// grpcPercentEncode encodes a grpc-message value.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func (p *Proxy) applyResponseHeaders(rs *reqState, h http.Header) {
	if rs.wc != nil && !rs.wc.ResponseHeaders.Empty() {
		router.ApplyHeaders(h, &rs.wc.ResponseHeaders, nil)
	}
	if rs.route != nil && !rs.route.ResponseHeaders.Empty() {
		router.ApplyHeaders(h, &rs.route.ResponseHeaders, nil)
	}
	if rs.vh != nil && !rs.vh.Config.ResponseHeaders.Empty() {
		router.ApplyHeaders(h, &rs.vh.Config.ResponseHeaders, nil)
	}
	if rs.target.Routes != nil && !rs.target.Routes.Config().ResponseHeaders.Empty() {
		router.ApplyHeaders(h, &rs.target.Routes.Config().ResponseHeaders, nil)
	}
	if rs.cors != nil {
		setCORS(h, rs.cors.policy, rs.cors.origin)
	}
}

// rewrite builds the upstream request: path and host rewrites, request
// header mutations (weighted cluster, route, virtual host, route
// configuration, so the least specific level is applied last).
func rewrite(rs *reqState, in, out *http.Request) {
	out.URL.Scheme = "http"
	out.URL.Host = "" // set per attempt
	out.URL.User = nil
	out.URL.Opaque = ""
	a := rs.action
	if a.HasPrefixRewrite || a.RegexRewrite != nil {
		path := in.URL.EscapedPath()
		if path == "" {
			path = "/"
		}
		np := router.RewritePath(&rs.route.Match, a, path)
		if up, err := url.PathUnescape(np); err == nil {
			out.URL.Path, out.URL.RawPath = up, np
		} else {
			out.URL.Path, out.URL.RawPath = np, ""
		}
	}
	if out.URL.Path == "" {
		out.URL.Path = "/"
	}
	if a.HostRewrite != "" {
		out.Host = a.HostRewrite
	}
	h := out.Header
	authority := out.Host
	if rs.wc != nil && !rs.wc.RequestHeaders.Empty() {
		router.ApplyHeaders(h, &rs.wc.RequestHeaders, &authority)
	}
	if !rs.route.RequestHeaders.Empty() {
		router.ApplyHeaders(h, &rs.route.RequestHeaders, &authority)
	}
	if !rs.vh.Config.RequestHeaders.Empty() {
		router.ApplyHeaders(h, &rs.vh.Config.RequestHeaders, &authority)
	}
	if rc := rs.target.Routes.Config(); !rc.RequestHeaders.Empty() {
		router.ApplyHeaders(h, &rc.RequestHeaders, &authority)
	}
	out.Host = authority
	if a.StreamTimeouts() && rs.grpc {
		rs.setGRPCTimeout(h)
	}
	if !rs.inbound && rs.p.peer != nil {
		h[peermeta.Header] = rs.p.peer
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		if rs.target.DownstreamHTTPS {
			h["X-Forwarded-Proto"] = []string{"https"}
		} else {
			h["X-Forwarded-Proto"] = []string{"http"}
		}
	}
}

// modifyResponse reads and drops the peer metadata of an outbound
// response and applies the route's response header mutations.
func modifyResponse(rs *reqState, resp *http.Response) {
	if v, ok := resp.Header[peermeta.Header]; ok {
		if len(v) > 0 && !rs.inbound {
			rs.respPeer = v[0]
		}
		delete(resp.Header, peermeta.Header)
	}
	rs.p.applyResponseHeaders(rs, resp.Header)
	rs.p.setPeerHeader(rs, resp.Header)
	rs.mu.Lock()
	flags := rs.flags
	rs.mu.Unlock()
	if flags != "" {
		resp.Header.Set(FlagsHeader, flags)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rs.upgraded()
	}
}

// flagError is a failure with its response flag, status and message.
type flagError struct {
	flag   string
	status int
	msg    string
}

func (e *flagError) Error() string { return e.msg }

// errorReply answers a request whose forwarding failed before a response
// started.
func (p *Proxy) errorReply(w http.ResponseWriter, rs *reqState, err error) {
	if rs.Cause() == errStreamDuration {
		p.durationReply(w, rs)
		return
	}
	var fe *flagError
	if !errors.As(err, &fe) {
		fe = classify(rs, nil, err)
	}
	if fe.flag == accesslog.FlagDownstreamTermination {
		rs.setResult("", fe.flag)
		return
	}
	p.replyFailure(w, rs, fe.flag, fe.status, fe.msg, false)
}

// durationReply answers a request whose stream bound ran out before its
// response started, as Envoy does: 504 once the request body was read,
// 408 while it was still coming, with no response flag; a gRPC request
// gets DEADLINE_EXCEEDED.
func (p *Proxy) durationReply(w http.ResponseWriter, rs *reqState) {
	status, msg := durationTimeout(rs)
	p.replyFailure(w, rs, "", status, msg, true)
}

// replyFailure adds flag (if any) to the request's flags and answers it
// locally with status and msg, with the route's response headers and the
// peer metadata header; a gRPC request gets the gRPC status of the
// status, or DEADLINE_EXCEEDED when deadline is set.
func (p *Proxy) replyFailure(w http.ResponseWriter, rs *reqState, flag string, status int, msg string, deadline bool) {
	rs.mu.Lock()
	rs.flags = addFlag(rs.flags, flag)
	flags := rs.flags
	rs.mu.Unlock()
	h := w.Header()
	p.applyResponseHeaders(rs, h)
	p.setPeerHeader(rs, h)
	if deadline && router.IsGRPC(rs.down) {
		writeGRPCStatus(w, int(codes.DeadlineExceeded), flags, msg)
		return
	}
	writeLocal(w, rs.down, rs.start, status, flags, msg)
}

// durationTimeout is the status and message of a request whose stream
// bound ran out.
func durationTimeout(rs *reqState) (int, string) {
	d, bodyRead := rs.streamBound()
	if b := rs.body.ReadCloser; b == nil || b == http.NoBody || rs.down.ContentLength == 0 {
		bodyRead = true // none to read (startTimer may not have run yet)
	}
	status := http.StatusRequestTimeout
	if bodyRead {
		status = http.StatusGatewayTimeout
	}
	return status, fmt.Sprintf("downstream duration timeout: the stream outlasted its bound of %s (max_stream_duration or grpc-timeout)", d)
}

// classify maps an attempt's error to a response flag. actx is the
// attempt's context (nil when unknown).
func classify(rs *reqState, actx context.Context, err error) *flagError {
	cname := ""
	if rs.cluster != nil {
		cname = rs.cluster.Name()
	}
	switch {
	case rs.Cause() == errRouteTimeout:
		return &flagError{accesslog.FlagUpstreamTimeout, http.StatusGatewayTimeout,
			fmt.Sprintf("upstream request timeout: no complete response within the route timeout of %s (cluster %s)", rs.action.Timeout, cname)}
	case rs.down.Context().Err() != nil:
		return &flagError{accesslog.FlagDownstreamTermination, 499, "downstream closed the request"}
	case actx != nil && context.Cause(actx) == errPerTryTimeout:
		return &flagError{accesslog.FlagUpstreamTimeout, http.StatusGatewayTimeout,
			fmt.Sprintf("upstream request timeout: no response headers within the per-try timeout of %s (cluster %s)", rs.retryPolicy().PerTryTimeout, cname)}
	case errors.Is(err, upstream.ErrOverflow):
		return &flagError{accesslog.FlagOverflow, http.StatusServiceUnavailable,
			fmt.Sprintf("upstream overflow: the max_connections circuit breaker of cluster %s is open", cname)}
	}
	var me *h1wire.MalformedError
	if errors.As(err, &me) {
		return &flagError{accesslog.FlagUpstreamProtocolError, http.StatusBadGateway,
			fmt.Sprintf("upstream sent a malformed response: %v (cluster %s)", me, cname)}
	}
	var de *upstream.DialError
	if errors.As(err, &de) {
		return &flagError{accesslog.FlagUpstreamConnectFailure, http.StatusServiceUnavailable,
			fmt.Sprintf("upstream connect failure: %v (cluster %s)", de, cname)}
	}
	return &flagError{accesslog.FlagUpstreamTermination, http.StatusServiceUnavailable,
		fmt.Sprintf("upstream connection terminated before response headers: %v (cluster %s)", err, cname)}
}

func (rs *reqState) retryPolicy() *proxyconfig.RetryPolicy {
	if rs.action != nil && rs.action.Retry != nil {
		return rs.action.Retry
	}
	if rs.vh != nil && rs.vh.Config.Retry != nil {
		return rs.vh.Config.Retry
	}
	return &noRetry
}

var noRetry = proxyconfig.RetryPolicy{}

// roundTrip runs the attempts of a request on the cluster's HTTP/1.1 or
// HTTP/2 (h2) pools. The first attempt sends out itself, with the picked
// endpoint as its URL's host; a retry sends a copy, so a transport still
// holding an abandoned attempt never sees it change.
func (p *Proxy) roundTrip(rs *reqState, out *http.Request, h2 bool) (*http.Response, error) {
	c := rs.cluster
	rp := rs.retryPolicy()
	var rb *replayBody
	if out.Body != nil && out.Body != http.NoBody {
		// The request state holds the one replay body of a request (its
		// buffer released when Serve returns).
		rb = &rs.replay
		rb.src, rb.limit = out.Body, RetryBufferLimit
		if rp.NumRetries == 0 && !rs.mirrored || rs.upgrade {
			rb.limit = -1 // nothing to replay or mirror: do not buffer
		} else if out.ContentLength > 0 && out.ContentLength <= RetryBufferLimit {
			rb.reserve(out.ContentLength)
		}
	}
	// The hosts of the attempts so far, for the previous_hosts predicate.
	var triedBuf [4]*upstream.Host
	tried := triedBuf[:0]
	for attempt := uint32(0); ; attempt++ {
		retrying := attempt > 0
		// A retry holds a max_retries slot (StartRetry) until its
		// attempt ends, or until it ends here without one.
		host, err := pickHost(rs, rp, tried)
		if err != nil {
			if retrying {
				c.EndRetry()
			}
			return nil, withURX(retrying, &flagError{accesslog.FlagNoHealthyUpstream, http.StatusServiceUnavailable,
				"no healthy upstream for cluster " + c.Name()})
		}
		if rp.OtherHosts && attempt < rp.NumRetries {
			tried = append(tried, host)
		}
		if err := c.StartRequest(h2); err != nil {
			if retrying {
				c.EndRetry()
			}
			return nil, withURX(retrying, &flagError{accesslog.FlagOverflow, http.StatusServiceUnavailable,
				fmt.Sprintf("upstream overflow: the max_requests or max_pending_requests circuit breaker of cluster %s is open", c.Name())})
		}
		// Attempts share the header map (the transports only read it).
		req := out
		if retrying {
			a := &attemptRequest{req: *out, url: *out.URL}
			req, a.req.URL = &a.req, &a.url
		}
		req.URL.Host = host.Addr
		if rb != nil {
			body, ok := rb.attempt()
			if !ok {
				c.EndRequest()
				if retrying {
					c.EndRetry()
				}
				return nil, &flagError{accesslog.FlagUpstreamTermination, http.StatusServiceUnavailable,
					"upstream attempt failed and the request body was too large to retry"}
			}
			req.Body = body
		}
		// An attempt has its own context only when it has its own
		// deadline (the per-try timeout); otherwise it runs on the
		// request's, which saves a context per request.
		var actx context.Context = rs
		acancel := noCancel
		var ptimer *time.Timer
		areq := req
		if rp.PerTryTimeout > 0 {
			actx, acancel = context.WithCancelCause(rs)
			ptimer = time.AfterFunc(rp.PerTryTimeout, func() { acancel(errPerTryTimeout) })
			areq = req.WithContext(actx)
		}
		host.Start()
		resp, err := c.Transport(h2).RoundTrip(areq)
		if ptimer != nil {
			ptimer.Stop()
		}
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols && !rs.upgrade {
			// A protocol the client did not ask for (RFC 9110 section
			// 15.2.2): the upstream broke the protocol, and outlier
			// detection and retries see it so.
			_ = resp.Body.Close()
			resp, err = nil, &h1wire.MalformedError{Err: errors.New("upstream switched protocols without an Upgrade request")}
		}
		// Outlier detection counts the host's answers and its failures,
		// not a client that went away.
		if c.Config().Outlier != nil {
			c.Observe(host, upstream.ResultOf(resp, err, err != nil && rs.Err() != nil && rs.Cause() != errRouteTimeout))
		}
		if retrying {
			c.EndRetry()
		}
		rs.setResult(host.Addr, "")
		var fe *flagError
		if err != nil {
			fe = classify(rs, actx, err)
		}
		cond := retryCondition(rp, resp, fe, err)
		canRetry := cond && attempt < rp.NumRetries && rs.Err() == nil && (rb == nil || rb.replayable())
		if canRetry && !c.StartRetry() {
			canRetry = false
		}
		if !canRetry {
			if err != nil {
				host.Done(true)
				c.EndRequest()
				acancel(nil)
				return nil, withURX(retrying && cond, fe)
			}
			failed := resp.StatusCode >= 500
			if retrying && cond {
				rs.setResult("", accesslog.FlagRetryLimitExceeded)
			}
			resp.Body = wrapBody(resp.Body, host, c, failed, acancel)
			return resp, nil
		}
		// Retry: discard this attempt.
		if resp != nil {
			_ = resp.Body.Close()
		}
		host.Done(true)
		c.EndRequest()
		acancel(nil)
		if !sleepBackoff(rs, rp, attempt+1) {
			c.EndRetry()
			return nil, classify(rs, nil, rs.Cause())
		}
	}
}

func noCancel(error) {}

// pickHost picks the host of an attempt. Under the previous_hosts retry
// predicate, a retry whose pick is a host an earlier attempt went to
// (tried) picks again, up to rp.Reselects times, and then takes its last
// pick; a consistent hash is moved for each new pick, so that a request
// whose key maps to a failing host can reach another.
func pickHost(rs *reqState, rp *proxyconfig.RetryPolicy, tried []*upstream.Host) (*upstream.Host, error) {
	c := rs.cluster
	host, err := c.Pick(rs.target.OriginalDst, rs.hash, rs.hasHash)
	if err != nil || !rp.OtherHosts {
		return host, err
	}
	for i := uint32(1); i <= rp.Reselects && slices.Contains(tried, host); i++ {
		h, err := c.Pick(rs.target.OriginalDst, rs.hash^(uint64(i)*0x9e3779b97f4a7c15), rs.hasHash)
		if err != nil {
			break
		}
		host = h
	}
	return host, nil
}

// attemptRequest is a retry's copy of the upstream request, with its own
// URL, in one allocation.
type attemptRequest struct {
	req http.Request
	url url.URL
}

func withURX(retrying bool, fe *flagError) *flagError {
	if !retrying {
		return fe
	}
	return &flagError{fe.flag + "," + accesslog.FlagRetryLimitExceeded, fe.status, fe.msg + " (retries exhausted)"}
}

// retryCondition reports whether an attempt's outcome (a response, or
// err and its classification fe) matches the policy.
func retryCondition(rp *proxyconfig.RetryPolicy, resp *http.Response, fe *flagError, err error) bool {
	on := rp.On
	if on == 0 {
		return false
	}
	if fe != nil {
		switch fe.flag {
		case accesslog.FlagUpstreamConnectFailure:
			// The one failure that comes before any of the request was
			// sent: reset-before-request retries it, and nothing else.
			return on&(proxyconfig.RetryConnectFailure|proxyconfig.Retry5xx|proxyconfig.RetryGatewayError|proxyconfig.RetryReset|proxyconfig.RetryResetBeforeRequest) != 0
		case accesslog.FlagUpstreamProtocolError:
			return on&(proxyconfig.RetryReset|proxyconfig.Retry5xx|proxyconfig.RetryGatewayError) != 0
		case accesslog.FlagUpstreamTermination:
			return on&(proxyconfig.RetryReset|proxyconfig.Retry5xx|proxyconfig.RetryGatewayError) != 0 ||
				on&proxyconfig.RetryRefusedStream != 0 && refusedStream(err)
		case accesslog.FlagUpstreamTimeout:
			if fe.status == http.StatusGatewayTimeout && strings.Contains(fe.msg, "per-try") {
				return on&(proxyconfig.Retry5xx|proxyconfig.RetryGatewayError|proxyconfig.RetryReset) != 0
			}
		}
		return false
	}
	code := resp.StatusCode
	switch {
	case code >= 500 && on&proxyconfig.Retry5xx != 0:
		return true
	case (code == 502 || code == 503 || code == 504) && on&proxyconfig.RetryGatewayError != 0:
		return true
	case code == 409 && on&proxyconfig.RetryRetriable4xx != 0:
		return true
	}
	if on&proxyconfig.RetryRetriableStatusCodes != 0 {
		for _, s := range rp.StatusCodes {
			if int(s) == code {
				return true
			}
		}
	}
	if gs := resp.Header.Get("Grpc-Status"); gs != "" {
		switch gs {
		case "1":
			return on&proxyconfig.RetryGRPCCancelled != 0
		case "4":
			return on&proxyconfig.RetryGRPCDeadlineExceeded != 0
		case "8":
			return on&proxyconfig.RetryGRPCResourceExhausted != 0
		case "13":
			return on&proxyconfig.RetryGRPCInternal != 0
		case "14":
			return on&proxyconfig.RetryGRPCUnavailable != 0
		}
	}
	return false
}

// refusedStream reports whether err is an HTTP/2 upstream's refusal of
// the stream (REFUSED_STREAM, or a GOAWAY below it): the request was not
// processed.
func refusedStream(err error) bool {
	var re *h2client.RefusedError
	return errors.As(err, &re)
}

// sleepBackoff waits Envoy's fully jittered exponential backoff before
// retry n (1-based): a random time in [0, min((2^n-1)·base, max)].
func sleepBackoff(ctx context.Context, rp *proxyconfig.RetryPolicy, n uint32) bool {
	base := rp.BaseInterval
	if base <= 0 {
		base = proxyconfig.DefaultRetryBase
	}
	maxI := rp.MaxInterval
	if maxI <= 0 {
		maxI = 10 * base
	}
	upper := base * time.Duration((uint64(1)<<min(n, 30))-1)
	if upper > maxI || upper <= 0 {
		upper = maxI
	}
	d := time.Duration(rand.Int64N(int64(upper) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dropH2CUpgrade removes an HTTP/1.1 client's offer to switch to h2c
// ("curl --http2" sends Upgrade: h2c with HTTP2-Settings). The offer is
// about the client's hop only: the proxy keeps HTTP/1.1 with the client
// and picks the upstream protocol from the cluster, so passing the offer
// on would let an app switch the proxied connection to HTTP/2 behind the
// proxy's back, and would mark the request an upgrade (never retried).
// Other protocols in the same Upgrade header are kept.
func dropH2CUpgrade(h http.Header) {
	if !httpguts.HeaderValuesContainsToken(h["Upgrade"], "h2c") {
		return
	}
	var keep []string
	for _, v := range h["Upgrade"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "h2c") {
				keep = append(keep, t)
			}
		}
	}
	h.Del("Http2-Settings")
	if len(keep) == 0 {
		h.Del("Upgrade")
		return
	}
	h.Set("Upgrade", strings.Join(keep, ", "))
}

func newRequestID() string {
	var b [36]byte
	const hexd = "0123456789abcdef"
	x, y := rand.Uint64(), rand.Uint64()
	x = x&^(0xf<<12) | 4<<12   // version 4
	y = y&^(0x3<<62) | 0x2<<62 // variant
	j := 0
	for i := 0; i < 16; i++ {
		var v byte
		if i < 8 {
			v = byte(x >> (56 - 8*i))
		} else {
			v = byte(y >> (56 - 8*(i-8)))
		}
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexd[v>>4], hexd[v&0xf]
		j += 2
	}
	return string(b[:])
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
