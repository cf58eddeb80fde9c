package xdstranslate

import (
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/xdsmeta"
)

// TCP peer metadata exchange, as Istio's "istio-peer-exchange": on TCP
// ports, sidecars negotiate xdsmeta.PeerExchangeALPN on their mTLS
// connections and then exchange a metadata frame (peermeta) before the
// payload. The config says where it is offered and accepted, in the ALPN
// fields Envoy has for it (CommonTlsContext.alpn_protocols):
//
//   - the mesh mTLS sockets (SDS "default") of an outbound cluster of a
//     TCP port offer it first, before any protocol already listed;
//   - the mTLS chain of an inbound listener of a TCP port accepts it.
//
// HTTP ports carry the metadata in a header instead, and their sockets
// are left as they are. This runs after applyMeshTLS and
// applyInboundMTLS, on what they built.

// offerPeerExchange adds the exchange to the ALPN of c's mesh mTLS
// sockets. c is an outbound cluster of a TCP port.
func offerPeerExchange(c *cluster.Cluster) {
	c.TransportSocket = withPeerExchange(c.TransportSocket, false)
	for _, m := range c.TransportSocketMatches {
		m.TransportSocket = withPeerExchange(m.TransportSocket, false)
	}
}

// acceptPeerExchange adds the exchange to the ALPN of the mTLS chains of
// l, an inbound listener of a TCP port.
func acceptPeerExchange(l *listener.Listener) {
	for _, fc := range l.FilterChains {
		fc.TransportSocket = withPeerExchange(fc.TransportSocket, true)
	}
}

// withPeerExchange returns ts with the exchange first in its ALPN when ts
// is a TLS socket (downstream: DownstreamTlsContext, else
// UpstreamTlsContext) that uses the mesh certificate (SDS "default"); any
// other socket is returned as it is.
func withPeerExchange(ts *core.TransportSocket, downstream bool) *core.TransportSocket {
	var m interface {
		proto.Message
		GetCommonTlsContext() *tlsv3.CommonTlsContext
	} = &tlsv3.UpstreamTlsContext{}
	if downstream {
		m = &tlsv3.DownstreamTlsContext{}
	}
	if ts.GetName() != tlsSocketName || ts.GetTypedConfig().UnmarshalTo(m) != nil {
		return ts
	}
	ct := m.GetCommonTlsContext()
	if !slices.ContainsFunc(ct.GetTlsCertificateSdsSecretConfigs(), func(s *tlsv3.SdsSecretConfig) bool { return s.GetName() == SDSCert }) ||
		slices.Contains(ct.GetAlpnProtocols(), xdsmeta.PeerExchangeALPN) {
		return ts
	}
	ct.AlpnProtocols = append([]string{xdsmeta.PeerExchangeALPN}, ct.AlpnProtocols...)
	return &core.TransportSocket{Name: ts.Name, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}
