// Package xdsmeta holds the names both ends of Weft's xDS contract agree
// on: node metadata keys, listener and route names, and node ID parsing.
// It is imported by the control plane and by the sidecar, so it must stay
// free of Istio, Kubernetes and control-plane dependencies.
//
// The contract itself is described in docs/architecture.md ("The xDS
// contract").
package xdsmeta

import (
	"fmt"
	"strings"
)

// Node metadata keys. The first four are Istio's, so proxyless gRPC clients
// configured for Istio work unchanged.
const (
	// MetaNamespace is the proxy's namespace.
	MetaNamespace = "NAMESPACE"
	// MetaName is the instance name ("reviews-v2-0").
	MetaName = "NAME"
	// MetaLabels is a struct of the workload's labels.
	MetaLabels = "LABELS"
	// MetaServiceAccount is the workload's service account.
	MetaServiceAccount = "SERVICE_ACCOUNT"
	// MetaWorkloadName is the workload's name ("reviews-v2").
	MetaWorkloadName = "WORKLOAD_NAME"
	// MetaProxyType is "sidecar" or "gateway" for Weft proxies. A node
	// without it is served as a proxyless gRPC client.
	MetaProxyType = "WEFT_PROXY"
	// MetaCertProvider, on a proxyless gRPC client, names the certificate
	// provider instance of its bootstrap ("certificate_providers", e.g. a
	// file_watcher) that holds its workload certificate and the mesh's
	// trust bundle; its clusters to sidecars then use mTLS (gRFC A29).
	MetaCertProvider = "WEFT_CERT_PROVIDER"
)

// Traffic capture. A sidecar whose node metadata has MetaInterceptionMode
// = InterceptionRedirect runs behind iptables REDIRECT rules: its
// virtualOutbound is transparent (use_original_dst) and passes traffic for
// unknown destinations through ClusterPassthrough (or, under a Sidecar's
// outboundTrafficPolicy REGISTRY_ONLY, closes it: ClusterBlackHole);
// virtualInbound receives
// its inbound traffic the same way. `weft up` does not set
// it: local mode has no iptables.
const (
	// MetaInterceptionMode is Istio's key for how traffic reaches the proxy.
	MetaInterceptionMode = "INTERCEPTION_MODE"
	// InterceptionRedirect is iptables REDIRECT capture.
	InterceptionRedirect = "REDIRECT"
	// ClusterPassthrough is the ORIGINAL_DST cluster of captured traffic
	// to destinations the mesh does not know (Istio's ALLOW_ANY).
	ClusterPassthrough = "PassthroughCluster"
	// ClusterBlackHole is the cluster without endpoints that a captured
	// sidecar under outboundTrafficPolicy REGISTRY_ONLY sends connections
	// to destinations the mesh does not know to: they are closed (Istio's
	// BlackHoleCluster).
	ClusterBlackHole = "BlackHoleCluster"
	// VirtualHostBlockAll is the catch-all virtual host a sidecar under
	// REGISTRY_ONLY gets in every outbound route configuration: requests
	// for hosts the mesh does not know are answered 502 (Istio's
	// block_all).
	VirtualHostBlockAll = "block_all"
)

// Proxy types carried in MetaProxyType.
const (
	ProxyTypeSidecar = "sidecar"
	ProxyTypeGateway = "gateway"
)

// Listener names emitted for Weft proxies.
const (
	// ListenerOutbound is the sidecar's outbound listener (HTTP proxy mode
	// and CONNECT). Its filter chains are selected by destination port and,
	// for TCP services, by host name (server_names) or VIP (prefix_ranges).
	ListenerOutbound = "virtualOutbound"
	// ListenerInboundCapture is the inbound listener of a sidecar behind
	// iptables REDIRECT (port 15006), transparent, with the chains of its
	// inbound listeners matched by the app port the client dialled.
	ListenerInboundCapture = "virtualInbound"
	// ListenerInboundPrefix starts the names of inbound listeners, one per
	// service port: "inbound|9080".
	ListenerInboundPrefix = "inbound|"
	// ListenerUpstreamPrefix starts the names of explicit local upstream
	// listeners, one per upstream a Workload declares:
	// "outbound|<local port>|<fqdn>:<service port>". They are not in HTTP
	// proxy mode: each has one filter chain, matched by no destination
	// port, for the one service port it stands for.
	ListenerUpstreamPrefix = "outbound|"
)

// InboundListenerName names the inbound listener for a service port.
func InboundListenerName(port uint32) string { return fmt.Sprintf("%s%d", ListenerInboundPrefix, port) }

// UpstreamListenerName names the listener on a local port that stands for
// one service port: "outbound|15101|reviews.default.svc.cluster.local:9080".
func UpstreamListenerName(localPort uint32, host string, port uint32) string {
	return fmt.Sprintf("%s%d|%s:%d", ListenerUpstreamPrefix, localPort, host, port)
}

// InboundClusterName names the cluster that reaches the local app behind a
// service port: "inbound|9080||".
func InboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// OutboundRouteName names the outbound route configuration of a port: "9080".
func OutboundRouteName(port uint32) string { return fmt.Sprintf("%d", port) }

// GatewayRouteName names the route configuration of a gateway port: "http.8080".
func GatewayRouteName(port uint32) string { return fmt.Sprintf("http.%d", port) }

// GatewayHTTPSRouteName names the route configuration of one HTTPS server
// of a gateway port, server being "namespace.gateway.index":
// "https.8443.default.gw.0".
func GatewayHTTPSRouteName(port uint32, server string) string {
	return fmt.Sprintf("https.%d.%s", port, server)
}

// NodeID builds an Istio-style node ID:
// "<type>~<ip>~<name>.<namespace>~<namespace>.svc.cluster.local".
// type is "sidecar" for sidecars and "router" for gateways.
func NodeID(typ, ip, name, namespace string) string {
	return fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", typ, ip, name, namespace, namespace)
}

// NodeInfo is what a node ID says about a proxy.
type NodeInfo struct {
	// Type is "sidecar", "router", or whatever the ID's first field says.
	Type string
	// IP is the proxy's address.
	IP string
	// Name is the instance name.
	Name string
	// Namespace is the proxy's namespace.
	Namespace string
}

// ParseNodeID parses an Istio-style node ID. IDs of another shape return
// ok=false; callers then fall back to metadata and defaults.
func ParseNodeID(id string) (NodeInfo, bool) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return NodeInfo{}, false
	}
	name, ns, ok := strings.Cut(parts[2], ".")
	if !ok || name == "" || ns == "" {
		return NodeInfo{}, false
	}
	return NodeInfo{Type: parts[0], IP: parts[1], Name: name, Namespace: ns}, true
}

// ClusterInboundPrefix starts the names of inbound clusters ("inbound|9080||").
// The sidecar reports traffic through them as the destination's
// (reporter=destination in its metrics).
const ClusterInboundPrefix = "inbound|"

// Metadata that the control plane puts on resources for Weft proxies, in
// metadata.filter_metadata[MetaFilter].
const (
	// MetaFilter is the filter_metadata key of Weft's own metadata.
	MetaFilter = "weft"
	// MetaService, on an inbound cluster, is the host name of the service
	// the instance serves on that port ("reviews.default.svc.cluster.local");
	// the sidecar's metrics report it as destination_service.
	MetaService = "service"
	// MetaPort, on an inbound cluster, is the service port number.
	MetaPort = "port"
)

// PeerExchangeALPN is the application protocol (ALPN) of the TCP peer
// metadata exchange between sidecars, as Istio's "istio-peer-exchange".
// The control plane puts it first in the ALPN of the mesh mTLS socket of
// outbound clusters of TCP ports, and in the DownstreamTlsContext of the
// mTLS chain of inbound TCP ports. When a connection negotiates it, each
// sidecar writes a peermeta frame right after the handshake and reads the
// other's before the payload; when it does not (a client or server that
// does not offer it), the bytes pass untouched.
const PeerExchangeALPN = "weft-peer-exchange"
