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
// request (aborted); *clusterName is then the cluster the request was
// for, which its metrics and access log name. A client that goes away
// during a delay ends the request without a response.
func (p *Proxy) injectFault(sw *statusWriter, rs *reqState, r *http.Request, f *proxyconfig.Fault, clusterName *string) bool {
	delayed := f.DelayPerMillion > 0 && rand.Uint32N(1_000_000) < f.DelayPerMillion
	if delayed {
		rs.setResult("", accesslog.FlagDelayInjected)
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-rs.Done():
			t.Stop()
			rs.setResult("", accesslog.FlagDownstreamTermination)
			panic(http.ErrAbortHandler)
		}
	}
	if f.AbortPerMillion == 0 || rand.Uint32N(1_000_000) >= f.AbortPerMillion {
		return false
	}
	rs.grpc = router.IsGRPC(r)
	if a := rs.route.Action; a != nil {
		// Counted against the cluster the route would have picked, as a
		// request denied by policy is.
		if name, _ := router.PickCluster(a); rs.target.Snapshot != nil && rs.target.Snapshot.Clusters[name] != nil {
			*clusterName, rs.cluster = name, rs.target.Snapshot.Clusters[name]
			rs.inbound = strings.HasPrefix(name, xdsmeta.ClusterInboundPrefix)
		}
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
	case f.AbortGRPC && rs.grpc:
		writeGRPCStatus(sw, f.AbortGRPCStatus, flags, faultAbortMsg)
	case f.AbortGRPC:
		writeLocal(sw, r, rs.start, httpStatusOfGRPC(codes.Code(f.AbortGRPCStatus)), flags, faultAbortMsg)
	default:
		writeLocal(sw, r, rs.start, f.AbortStatus, flags, faultAbortMsg)
	}
	return true
}

// httpStatusOfGRPC is the HTTP status that stands for a gRPC status code
// (the mapping google.rpc.Code documents), for a gRPC abort of a request
// that is not gRPC.
func httpStatusOfGRPC(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
