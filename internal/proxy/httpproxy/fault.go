package httpproxy

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
	"weft.dev/weft/internal/xdsmeta"
)

// faultAbortMsg is the body (or grpc-message) of a fault's abort, as
// Envoy words it.
const faultAbortMsg = "fault filter abort"

// injectFault applies a route's fault injection before the request is
// routed further, as Envoy's fault filter does ahead of its router: a
// drawn delay holds the request back (the route timeout starts after
// it), then a drawn abort answers it. It reports whether it answered the
// request (aborted). A request a fault hits is counted against the
// cluster its route would pick (*clusterName), as a request denied by
// policy is. A request cancelled during a delay (an HTTP/2 stream reset,
// an HTTP/1.x client gone, which the listener's watcher notices once the
// request's body is read, a connection reaped) ends without a response
// and is never forwarded; one whose stream bound (max_stream_duration)
// runs out during a delay is answered as at any other point.
func (p *Proxy) injectFault(sw *statusWriter, rs *reqState, r *http.Request, f *proxyconfig.Fault, clusterName *string) bool {
	delayed := f.DelayPerMillion > 0 && rand.Uint32N(1_000_000) < f.DelayPerMillion
	aborted := f.AbortPerMillion > 0 && rand.Uint32N(1_000_000) < f.AbortPerMillion
	if !delayed && !aborted {
		return false
	}
	p.countAgainstRoute(rs, r, clusterName)
	if delayed {
		rs.setResult("", accesslog.FlagDelayInjected)
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-rs.Done():
			t.Stop()
			if rs.Cause() == errStreamDuration {
				// The stream's bound ran out during the delay.
				p.durationReply(sw, rs)
				return true
			}
			rs.setResult("", accesslog.FlagDownstreamTermination)
			panic(http.ErrAbortHandler)
		}
	}
	if !aborted {
		return false
	}
	flags := accesslog.FlagFaultInjected
	if delayed {
		flags = accesslog.FlagDelayInjected + "," + flags
	}
	rs.setResult("", accesslog.FlagFaultInjected)
	h := sw.Header()
	p.applyResponseHeaders(rs, h)
	p.setPeerHeader(rs, h)
	switch {
	case rs.grpc && f.AbortGRPC:
		writeGRPCStatus(sw, f.AbortGRPCStatus, flags, faultAbortMsg)
	case rs.grpc:
		writeGRPCStatus(sw, int(grpcOfHTTP(f.AbortStatus)), flags, faultAbortMsg)
	case f.AbortGRPC:
		// As Envoy: a gRPC status means nothing to an HTTP client, which
		// gets 200 with the abort's body.
		writeLocal(sw, r, rs.start, http.StatusOK, flags, faultAbortMsg)
	default:
		writeLocal(sw, r, rs.start, f.AbortStatus, flags, faultAbortMsg)
	}
	return true
}

// countAgainstRoute makes a request the proxy answers itself before
// routing it (a fault, a CORS preflight) count against the cluster its
// route would pick (*clusterName), in metrics and logs, as a request
// denied by policy does.
func (p *Proxy) countAgainstRoute(rs *reqState, r *http.Request, clusterName *string) {
	rs.grpc = router.IsGRPC(r)
	if a := rs.route.Action; a != nil {
		if name, _ := router.PickCluster(a); rs.target.Snapshot != nil && rs.target.Snapshot.Clusters[name] != nil {
			*clusterName, rs.cluster = name, rs.target.Snapshot.Clusters[name]
			rs.inbound = strings.HasPrefix(name, xdsmeta.ClusterInboundPrefix)
		}
	}
}

// grpcOfHTTP is the gRPC status of an HTTP status, as gRPC's
// specification maps them ("HTTP to gRPC Status Code Mapping"): 404 is
// gRPC's "no such method" code (12), and a status the table does not
// list is code 2.
func grpcOfHTTP(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}
