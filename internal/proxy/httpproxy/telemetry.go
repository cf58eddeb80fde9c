package httpproxy

import (
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
)

// setPeerHeader puts the sidecar's own peer metadata on a response from
// an inbound cluster (replies the proxy makes itself included), so the
// client's sidecar learns who answered.
func (p *Proxy) setPeerHeader(rs *reqState, h http.Header) {
	if rs.inbound && p.peer != nil {
		h[peermeta.Header] = p.peer
	}
}

// grpcStatusTrailer is the key under which a reverse-proxied response
// keeps an undeclared grpc-status trailer in the downstream header map.
const grpcStatusTrailer = http.TrailerPrefix + "Grpc-Status"

// recordIstio records the request in the mesh metrics (istio_*). It runs
// after the response is complete, on the request's goroutine.
func (p *Proxy) recordIstio(rs *reqState, sw *statusWriter, clusterName string, code int, flags string, reqBytes int64, start time.Time) {
	r := proxymetrics.HTTPRequest{
		Inbound:       rs.inbound,
		Service:       serviceOf(clusterName, rs),
		GRPC:          rs.grpc,
		Code:          code,
		Flags:         flags,
		Duration:      time.Since(start),
		RequestBytes:  reqBytes,
		ResponseBytes: sw.n,
	}
	r.PeerPrincipal = peerPrincipal(rs)
	if rs.inbound {
		r.Peer = peermeta.Parse(rs.reqPeer)
		r.MTLS = r.PeerPrincipal != ""
	} else {
		r.Peer = peermeta.Parse(rs.respPeer)
	}
	if rs.grpc || rs.cluster == nil {
		// A local reply to a gRPC request carries grpc-status in headers;
		// rs.grpc is set only once a cluster is picked.
		r.GRPCStatus = responseGRPCStatus(sw)
		if r.GRPCStatus != "" {
			r.GRPC = true
		}
	}
	p.metrics.RecordHTTP(&r)
}

// responseGRPCStatus is the grpc-status the response sent, in its
// headers or as a trailer; "" for none.
func responseGRPCStatus(sw *statusWriter) string {
	h := sw.Header()
	if v := h["Grpc-Status"]; len(v) > 0 {
		return v[0]
	} else if v := h[grpcStatusTrailer]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// grpcStatusOf is the response's gRPC status as Envoy's access log
// filters take it: grpc-status when sent, else mapped from the HTTP
// status (2, UNKNOWN, for one the mapping does not list or none).
func grpcStatusOf(sw *statusWriter, code int) int {
	if s := responseGRPCStatus(sw); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
		return int(codes.Unknown)
	}
	return int(grpcOfHTTP(code))
}

func serviceOf(clusterName string, rs *reqState) string {
	meta := ""
	if rs.cluster != nil {
		meta = rs.cluster.Config().Service
	}
	return proxymetrics.ServiceOf(clusterName, meta, rs.inbound)
}

// peerPrincipal is the SPIFFE ID of the request's peer from its verified
// certificate: the client's on the inbound side, the endpoint's on the
// outbound side; "" when that hop was not mTLS.
func peerPrincipal(rs *reqState) string {
	if rs.inbound {
		if rs.target != nil {
			return rs.target.DownstreamPrincipal
		}
		return ""
	}
	if rs.cluster != nil && rs.upstreamHost != "" {
		return rs.cluster.PeerPrincipal(rs.upstreamHost)
	}
	return ""
}

// accessEnds fills the access log's source and destination the way the
// tap and the metrics see them: this sidecar's own workload on one side,
// the peer's metadata and verified principal on the other.
func (p *Proxy) accessEnds(e *accesslog.Entry, rs *reqState, clusterName string) {
	if p.tap == nil {
		return
	}
	var ev tap.Event
	peer := rs.respPeer
	if rs.inbound {
		peer = rs.reqPeer
	}
	p.tap.Ends(&ev, rs.inbound, peermeta.Parse(peer), serviceOf(clusterName, rs))
	p.tap.Principals(&ev, rs.inbound, peerPrincipal(rs))
	for _, x := range [...]struct {
		from *tap.Endpoint
		to   *accesslog.Peer
	}{{ev.Source, &e.Source}, {ev.Destination, &e.Destination}} {
		if x.from != nil {
			*x.to = accesslog.Peer{Workload: x.from.Workload, Namespace: x.from.Namespace, Principal: x.from.Principal}
		}
	}
}
