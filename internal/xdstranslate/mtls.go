package xdstranslate

import (
	"fmt"
	"sort"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/model"
)

// Mesh mTLS in xDS, as Envoy and Istio express it:
//
//   - Endpoints that have a sidecar carry
//     metadata.filter_metadata["envoy.transport_socket_match"] = {tlsMode: istio}.
//   - Clients: the cluster of a service with sidecar endpoints and no
//     DestinationRule TLS setting (auto mTLS) gets transport_socket_matches:
//     "tlsMode-istio" ({tlsMode: istio} -> mesh mTLS) then "tlsMode-disabled"
//     (anything else -> raw_buffer). ISTIO_MUTUAL sets the mesh mTLS socket
//     as the cluster's transport_socket (every endpoint); DISABLE sets
//     nothing (plaintext); SIMPLE and MUTUAL keep their file-based socket
//     (applyTLS).
//   - The mesh mTLS socket is an UpstreamTlsContext whose certificate is
//     the SDS secret "default" (the workload SVID) and whose validation
//     context is combined: the SDS secret "ROOTCA" (the trust bundle) and
//     match_typed_subject_alt_names with the URI SAN of every service
//     account behind the service. SNI is
//     "outbound_.<port>_.<subset>_.<host>"; ALPN is set by the proxy from
//     the protocol of its pool (h2 or http/1.1).
//   - Servers: each inbound listener gets filter chains by
//     PeerAuthentication mode: STRICT, one chain with
//     filter_chain_match.transport_protocol "tls" and a
//     DownstreamTlsContext (SDS "default", validation SDS "ROOTCA",
//     require_client_certificate, ALPN h2 and http/1.1 on HTTP ports);
//     PERMISSIVE, that chain plus a "raw_buffer" one with the same filters,
//     and the tls_inspector listener filter; DISABLE, the plaintext chain
//     alone.
//
// The secrets are not served over xDS: Weft's proxy provides both names
// from its own identity client (a stock Envoy would need an SDS server).

// Names of the mesh mTLS contract.
const (
	// TLSModeLabel is the transport socket match key on endpoints, and
	// TLSModeIstio its value on endpoints with a sidecar.
	TLSModeLabel = "tlsMode"
	TLSModeIstio = "istio"
	// TransportSocketMatchKey is the filter_metadata key of the endpoint
	// metadata that transport_socket_matches compare.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	// SDSCert and SDSRoot are the SDS names of the workload certificate and
	// of the trust bundle.
	SDSCert = "default"
	SDSRoot = "ROOTCA"
	// TLSInspectorName is the listener filter that finds the transport
	// protocol of a connection.
	TLSInspectorName = "envoy.filters.listener.tls_inspector"
	tlsSocketName    = "envoy.transport_sockets.tls"
	rawSocketName    = "envoy.transport_sockets.raw_buffer"
	defaultTrustDom  = "cluster.local"
)

// permissiveDetectTimeout is listener_filters_timeout on PERMISSIVE inbound
// listeners: how long the proxy waits for a first byte that tells TLS from
// plaintext.
const permissiveDetectTimeout = time.Second

// tlsModeMetadata is the endpoint metadata of endpoints with a sidecar.
func tlsModeMetadata() *core.Metadata {
	return &core.Metadata{FilterMetadata: map[string]*structpb.Struct{
		TransportSocketMatchKey: {Fields: map[string]*structpb.Value{TLSModeLabel: structpb.NewStringValue(TLSModeIstio)}},
	}}
}

func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}

// meshPrincipals are the identities a service's endpoints may present
// under mesh mTLS, sorted: the SPIFFE IDs of the service accounts behind
// its endpoints that have a sidecar, and its ServiceEntry's
// subjectAltNames.
func meshPrincipals(svc *model.Service, trustDomain string) []string {
	if trustDomain == "" {
		trustDomain = defaultTrustDom
	}
	seen := map[string]bool{}
	var out []string
	for _, ep := range svc.Endpoints {
		if !ep.Sidecar {
			continue
		}
		ns, sa := ep.Namespace, ep.ServiceAccount
		if ns == "" {
			ns = svc.Namespace
		}
		if sa == "" {
			sa = "default"
		}
		id := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, ns, sa)
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, san := range svc.SubjectAltNames {
		if !seen[san] {
			seen[san] = true
			out = append(out, san)
		}
	}
	sort.Strings(out)
	return out
}

func hasSidecarEndpoint(svc *model.Service) bool {
	for _, ep := range svc.Endpoints {
		if ep.Sidecar {
			return true
		}
	}
	return false
}

// sanMatcher matches a subject alternative name a DestinationRule or
// ServiceEntry lists: a SPIFFE ID (or other URI) as a URI SAN, anything
// else as a DNS name.
func sanMatcher(san string) *tlsv3.SubjectAltNameMatcher {
	typ := tlsv3.SubjectAltNameMatcher_DNS
	if strings.Contains(san, "://") {
		typ = tlsv3.SubjectAltNameMatcher_URI
	}
	return &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: exactMatcher(san)}
}

// meshTLSSocket is the mesh mTLS transport socket of a cluster.
func meshTLSSocket(sni string, sans []string) *core.TransportSocket {
	vc := &tlsv3.CertificateValidationContext{}
	for _, s := range sans {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, sanMatcher(s))
	}
	up := &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(SDSCert)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         vc,
					ValidationContextSdsSecretConfig: sdsConfig(SDSRoot),
				},
			},
		},
	}
	return &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(up)}}
}

func rawSocket() *core.TransportSocket {
	return &core.TransportSocket{Name: rawSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbuffer.RawBuffer{})}}
}

// applyMeshTLS adds mesh mTLS to an outbound cluster (see the contract
// above); applyTLS has already handled SIMPLE and MUTUAL.
func applyMeshTLS(c *cluster.Cluster, svc *model.Service, port model.Port, subset string, tls *networking.ClientTLSSettings, trustDomain string) {
	sni := fmt.Sprintf("outbound_.%d_.%s_.%s", port.Number, subset, svc.Hostname)
	switch {
	case tls == nil:
		if svc.Resolution == model.ResolutionNone || !hasSidecarEndpoint(svc) {
			return
		}
		c.TransportSocketMatches = []*cluster.Cluster_TransportSocketMatch{
			{
				Name:            "tlsMode-istio",
				Match:           &structpb.Struct{Fields: map[string]*structpb.Value{TLSModeLabel: structpb.NewStringValue(TLSModeIstio)}},
				TransportSocket: meshTLSSocket(sni, meshPrincipals(svc, trustDomain)),
			},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawSocket()},
		}
	case tls.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL:
		sans := tls.GetSubjectAltNames()
		if len(sans) == 0 {
			sans = meshPrincipals(svc, trustDomain)
		}
		if tls.GetSni() != "" {
			sni = tls.GetSni()
		}
		c.TransportSocket = meshTLSSocket(sni, sans)
	}
}

// peerAuthMode is the PeerAuthentication mode in force on one port.
type peerAuthMode = security.PeerAuthentication_MutualTLS_Mode

// peerAuthFor returns the mode of each port of an instance, by Istio's
// precedence: the mesh-wide policy (root namespace, no selector), then the
// namespace's (no selector), then the first (by namespace and name) that
// selects the workload, then that one's portLevelMtls for the port; UNSET
// at any level inherits. With nothing set the mode is PERMISSIVE.
func (t *Translator) peerAuthFor(inst *model.Instance) func(port uint32) peerAuthMode {
	if inst == nil {
		return nil
	}
	root := t.snap.MeshTelemetry.Root()
	var mesh, ns, wl *model.PeerAuthentication
	for _, pa := range t.snap.PeerAuthentications {
		sel := pa.Spec.GetSelector().GetMatchLabels()
		switch {
		case len(sel) == 0 && pa.Namespace == root && mesh == nil:
			mesh = pa
		case len(sel) == 0 && pa.Namespace == inst.Namespace && pa.Namespace != root && ns == nil:
			ns = pa
		case len(sel) > 0 && pa.Namespace == inst.Namespace && wl == nil && model.LabelsMatch(sel, inst.Labels):
			wl = pa
		}
	}
	mode := security.PeerAuthentication_MutualTLS_PERMISSIVE
	for _, pa := range []*model.PeerAuthentication{mesh, ns, wl} {
		if pa != nil && pa.Spec.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
			mode = pa.Spec.GetMtls().GetMode()
		}
	}
	return func(port uint32) peerAuthMode {
		if wl != nil {
			if pl := wl.Spec.GetPortLevelMtls()[port]; pl != nil && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
				return pl.GetMode()
			}
		}
		return mode
	}
}

// applyInboundMTLS turns an inbound listener's single plaintext chain
// into the chains of the mode.
func applyInboundMTLS(l *listener.Listener, mode peerAuthMode, http bool) {
	if mode == security.PeerAuthentication_MutualTLS_DISABLE || len(l.FilterChains) != 1 {
		return
	}
	plain := l.FilterChains[0]
	dn := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(SDSCert)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
					ValidationContextSdsSecretConfig: sdsConfig(SDSRoot),
				},
			},
		},
	}
	if http {
		dn.CommonTlsContext.AlpnProtocols = []string{"h2", "http/1.1"}
	}
	secure := &listener.FilterChain{
		Name:             "mtls",
		FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "tls"},
		Filters:          plain.Filters,
		TransportSocket:  &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(dn)}},
	}
	l.ListenerFilters = []*listener.ListenerFilter{{Name: TLSInspectorName, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})}}}
	if mode == security.PeerAuthentication_MutualTLS_STRICT {
		l.FilterChains = []*listener.FilterChain{secure}
		return
	}
	raw := proto.Clone(plain).(*listener.FilterChain)
	raw.Name = "plaintext"
	raw.FilterChainMatch = &listener.FilterChainMatch{TransportProtocol: "raw_buffer"}
	l.FilterChains = []*listener.FilterChain{secure, raw}
	l.ListenerFiltersTimeout = durationpb.New(permissiveDetectTimeout)
}

// withoutMeshTLS returns the clusters of a proxyless gRPC client: gRPC's
// xDS client refuses transport_socket_matches and has no "default" and
// "ROOTCA" secrets, so mesh mTLS sockets are left out and such clients
// talk plaintext (served by PERMISSIVE sidecars, refused by STRICT ones).
// Clusters without mesh mTLS are shared as they are.
func withoutMeshTLS(cs []*cluster.Cluster, hashes []uint64) ([]*cluster.Cluster, []uint64, uint64) {
	out, outH, _ := rewriteClusters(cs, hashes, func(c *cluster.Cluster) *cluster.Cluster {
		if len(c.TransportSocketMatches) == 0 && !usesMeshSDS(c.TransportSocket) {
			return nil
		}
		cc := proto.Clone(c).(*cluster.Cluster)
		cc.TransportSocketMatches = nil
		if usesMeshSDS(cc.TransportSocket) {
			cc.TransportSocket = nil
		}
		return cc
	})
	return out, outH, combine(outH)
}

// rewriteClusters applies edit to each of cs: edit returns the cluster to
// use instead (a clone it changed), or nil to keep it. It returns the
// clusters and their hashes, cs and hashes themselves (shared) when edit
// kept every one, and whether any changed.
func rewriteClusters(cs []*cluster.Cluster, hashes []uint64, edit func(*cluster.Cluster) *cluster.Cluster) ([]*cluster.Cluster, []uint64, bool) {
	var out []*cluster.Cluster
	var outH []uint64
	for i, c := range cs {
		cc := edit(c)
		if cc == nil {
			if out != nil {
				out, outH = append(out, c), append(outH, hashes[i])
			}
			continue
		}
		if out == nil {
			out, outH = append([]*cluster.Cluster(nil), cs[:i]...), append([]uint64(nil), hashes[:i]...)
		}
		out, outH = append(out, cc), append(outH, hashMessage(cc))
	}
	if out == nil {
		return cs, hashes, false
	}
	return out, outH, true
}

// withProviderTLS returns the clusters of a proxyless gRPC client whose
// bootstrap declares the certificate provider instance named provider
// (node metadata xdsmeta.MetaCertProvider; gRFC A29): the mesh mTLS socket
// of a cluster (its "tlsMode-istio" transport socket match under auto
// mTLS, or its transport_socket under ISTIO_MUTUAL) becomes the cluster's
// transport_socket, an UpstreamTlsContext that takes the certificate and
// the trust bundle from that provider (tls_certificate_provider_instance,
// validation_context.ca_certificate_provider_instance) and checks the
// server's SPIFFE ID (match_subject_alt_names, the form gRPC reads). gRPC
// has no per-endpoint sockets, so a service with endpoints with and
// without a sidecar gets mTLS to all of them. Other clusters are shared
// as they are.
func withProviderTLS(cs []*cluster.Cluster, hashes []uint64, provider string) ([]*cluster.Cluster, []uint64, uint64) {
	out, outH, _ := rewriteClusters(cs, hashes, func(c *cluster.Cluster) *cluster.Cluster {
		mesh := c.GetTransportSocket()
		if !usesMeshSDS(mesh) {
			mesh = nil
			for _, m := range c.GetTransportSocketMatches() {
				if usesMeshSDS(m.GetTransportSocket()) {
					mesh = m.GetTransportSocket()
				}
			}
		}
		if mesh == nil && len(c.GetTransportSocketMatches()) == 0 {
			return nil
		}
		cc := proto.Clone(c).(*cluster.Cluster)
		cc.TransportSocketMatches, cc.TransportSocket = nil, nil
		if mesh != nil {
			cc.TransportSocket = providerTLSSocket(mesh, provider)
		}
		return cc
	})
	return out, outH, combine(outH)
}

// providerTLSSocket is the mesh mTLS socket mesh (SDS names) for a client
// with a certificate provider instance: same SNI and peer identities.
func providerTLSSocket(mesh *core.TransportSocket, provider string) *core.TransportSocket {
	up := &tlsv3.UpstreamTlsContext{}
	_ = mesh.GetTypedConfig().UnmarshalTo(up) // usesMeshSDS unmarshalled it
	vc := &tlsv3.CertificateValidationContext{
		CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: provider, CertificateName: SDSRoot},
	}
	// gRPC matches these against SANs of every type (URI and DNS alike).
	for _, m := range up.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		vc.MatchSubjectAltNames = append(vc.MatchSubjectAltNames, m.GetMatcher())
	}
	out := &tlsv3.UpstreamTlsContext{
		Sni: up.GetSni(),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: provider, CertificateName: SDSCert},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
		},
	}
	return &core.TransportSocket{Name: tlsSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(out)}}
}

func usesMeshSDS(ts *core.TransportSocket) bool {
	if ts == nil {
		return false
	}
	up := &tlsv3.UpstreamTlsContext{}
	if ts.GetTypedConfig().UnmarshalTo(up) != nil {
		return false
	}
	return len(up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) > 0
}
