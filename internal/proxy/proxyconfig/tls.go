package proxyconfig

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/tlsnames"
)

// TLS transport sockets: the subset of Envoy's
// envoy.transport_sockets.tls that Weft's proxy serves.
//
// Certificates are referenced by file (SIMPLE and MUTUAL origination) or
// by SDS secret name. The proxy does not fetch secrets over SDS: it
// provides the two names Weft's control plane uses itself, from its own
// identity client (internal/proxy/identity):
//
//   - SDSDefault ("default"): the workload certificate (SVID) and its key;
//   - SDSRootCA ("ROOTCA"): the mesh's trust bundle.
//
// Any other secret name is refused.

// SDS secret names the proxy provides.
const (
	SDSDefault = "default"
	SDSRootCA  = "ROOTCA"
)

// Transport socket names and keys.
const (
	// TLSTransportSocket is the TLS transport socket's name.
	TLSTransportSocket = "envoy.transport_sockets.tls"
	// RawBufferTransportSocket is the plaintext transport socket's name.
	RawBufferTransportSocket = "envoy.transport_sockets.raw_buffer"
	// TransportSocketMatchKey is the endpoint filter_metadata key whose
	// fields transport_socket_matches compare.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	// TransportProtocolTLS and TransportProtocolRaw are the values of
	// filter_chain_match.transport_protocol.
	TransportProtocolTLS = "tls"
	TransportProtocolRaw = "raw_buffer"
)

const (
	typeUpstreamTLS   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	typeDownstreamTLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	typeRawBuffer     = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// TLSCommon is what both sides of a TLS connection are configured with.
type TLSCommon struct {
	// CertSDS is the SDS name of the proxy's own certificate (SDSDefault);
	// empty when CertFile is used or no certificate is presented.
	CertSDS string
	// CertFile and KeyFile are a PEM certificate chain and key; empty
	// when unused.
	CertFile, KeyFile string
	// CASDS is the SDS name of the roots that verify the peer
	// (SDSRootCA); empty when CAFile is used or the peer is not verified
	// against the mesh's roots.
	CASDS string
	// CAFile is a PEM file of roots that verify the peer; empty when
	// unused.
	CAFile string
	// URISANs and DNSSANs are the accepted subject alternative names of
	// the peer (exact match); the peer must have one of them when either
	// list is set. A SPIFFE peer's ID is its URI SAN.
	URISANs, DNSSANs []string
	// ALPN are the application protocols offered (client) or accepted
	// (server), in preference order; empty means none are negotiated.
	ALPN []string
	// MinVersion and MaxVersion bound the TLS versions (crypto/tls
	// values; 0: TLS 1.2 and 1.3); CipherSuites are the TLS 1.2 suites
	// allowed (nil: crypto/tls's), from tls_params.
	MinVersion, MaxVersion uint16
	CipherSuites           []uint16
}

// UsesSDS reports whether the context needs the proxy's identity.
func (t *TLSCommon) UsesSDS() bool { return t.CertSDS != "" || t.CASDS != "" }

// Key is a comparable summary of the settings, for reusing connection
// pools across config updates.
func (t *TLSCommon) Key() string {
	return strings.Join([]string{t.CertSDS, t.CertFile, t.KeyFile, t.CASDS, t.CAFile,
		strings.Join(t.URISANs, ","), strings.Join(t.DNSSANs, ","), strings.Join(t.ALPN, ","),
		fmt.Sprint(t.MinVersion, t.MaxVersion, t.CipherSuites)}, "|")
}

// UpstreamTLS is a validated UpstreamTlsContext: how the proxy originates
// TLS to an endpoint.
type UpstreamTLS struct {
	TLSCommon
	// SNI is the server name sent; empty sends none.
	SNI string
}

// Key is a comparable summary of the settings.
func (t *UpstreamTLS) Key() string { return t.TLSCommon.Key() + "|" + t.SNI }

// DownstreamTLS is a validated DownstreamTlsContext: how a listener's
// filter chain terminates TLS.
type DownstreamTLS struct {
	TLSCommon
	// RequireClientCert makes the handshake fail without a client
	// certificate that verifies (mutual TLS).
	RequireClientCert bool
	// ID sums up the settings (Key and RequireClientCert), made once:
	// equal IDs terminate TLS alike.
	ID string
}

// TLSMatch is one of a cluster's transport_socket_matches.
type TLSMatch struct {
	// Name is the match's name, for logs.
	Name string
	// Match must be a subset of the endpoint's
	// filter_metadata["envoy.transport_socket_match"]; empty matches all.
	Match map[string]string
	// TLS is the socket for matching endpoints; nil means plaintext.
	TLS *UpstreamTLS
}

// TLSFor returns how the proxy connects to an endpoint of the cluster with
// the given transport socket match metadata: the first
// transport_socket_matches entry whose match the metadata satisfies, else
// the cluster's transport_socket. nil means plaintext.
func (c *Cluster) TLSFor(meta map[string]string) *UpstreamTLS {
	for i := range c.TLSMatches {
		m := &c.TLSMatches[i]
		ok := true
		for k, v := range m.Match {
			if meta[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return m.TLS
		}
	}
	return c.TLS
}

// parseClusterTLS fills the cluster's TLS and TLSMatches.
func parseClusterTLS(c *clusterv3.Cluster, out *Cluster) error {
	var err error
	if ts := c.GetTransportSocket(); ts != nil {
		if out.TLS, err = parseUpstreamSocket(ts); err != nil {
			return fmt.Errorf("transport_socket: %w", err)
		}
	}
	for i, m := range c.GetTransportSocketMatches() {
		tm := TLSMatch{Name: m.GetName(), Match: stringFields(m.GetMatch())}
		if tm.TLS, err = parseUpstreamSocket(m.GetTransportSocket()); err != nil {
			return fmt.Errorf("transport_socket_matches[%d] %q: %w", i, m.GetName(), err)
		}
		out.TLSMatches = append(out.TLSMatches, tm)
	}
	return nil
}

// stringFields keeps the string fields of a struct; other kinds never
// match an endpoint's string metadata and are dropped.
func stringFields(s *structpb.Struct) map[string]string {
	if len(s.GetFields()) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.GetFields()))
	for k, v := range s.GetFields() {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			out[k] = sv.StringValue
		} else {
			out[k] = "\x00" + v.String() // never equal to a string value
		}
	}
	return out
}

// parseUpstreamSocket parses a cluster's transport socket; raw_buffer
// (or none) gives nil.
func parseUpstreamSocket(ts *corev3.TransportSocket) (*UpstreamTLS, error) {
	if ts == nil {
		return nil, nil
	}
	tc := ts.GetTypedConfig()
	switch {
	case tc.GetTypeUrl() == typeRawBuffer || (tc == nil && ts.GetName() == RawBufferTransportSocket):
		return nil, nil
	case tc.GetTypeUrl() == typeUpstreamTLS:
	default:
		return nil, fmt.Errorf("transport socket %q (%s) is not supported; use %s or %s", ts.GetName(), tc.GetTypeUrl(), TLSTransportSocket, RawBufferTransportSocket)
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := tc.UnmarshalTo(up); err != nil {
		return nil, err
	}
	out := &UpstreamTLS{SNI: up.GetSni()}
	if err := parseCommonTLS(up.GetCommonTlsContext(), &out.TLSCommon); err != nil {
		return nil, err
	}
	return out, nil
}

// parseDownstreamSocket parses a filter chain's transport socket;
// raw_buffer (or none) gives nil.
func parseDownstreamSocket(ts *corev3.TransportSocket) (*DownstreamTLS, error) {
	if ts == nil {
		return nil, nil
	}
	tc := ts.GetTypedConfig()
	switch {
	case tc.GetTypeUrl() == typeRawBuffer || (tc == nil && ts.GetName() == RawBufferTransportSocket):
		return nil, nil
	case tc.GetTypeUrl() == typeDownstreamTLS:
	default:
		return nil, fmt.Errorf("transport socket %q (%s) is not supported; use %s or %s", ts.GetName(), tc.GetTypeUrl(), TLSTransportSocket, RawBufferTransportSocket)
	}
	dn := &tlsv3.DownstreamTlsContext{}
	if err := tc.UnmarshalTo(dn); err != nil {
		return nil, err
	}
	out := &DownstreamTLS{RequireClientCert: dn.GetRequireClientCertificate().GetValue()}
	if err := parseCommonTLS(dn.GetCommonTlsContext(), &out.TLSCommon); err != nil {
		return nil, err
	}
	if out.CertSDS == "" && out.CertFile == "" {
		return nil, errors.New("a downstream TLS context needs a certificate (tls_certificate_sds_secret_configs or tls_certificates)")
	}
	if out.RequireClientCert && out.CASDS == "" && out.CAFile == "" {
		return nil, errors.New("require_client_certificate needs a validation context to verify client certificates with")
	}
	out.ID = out.Key()
	if out.RequireClientCert {
		out.ID += "|require"
	}
	return out, nil
}

func sdsName(s *tlsv3.SdsSecretConfig, want string) (string, error) {
	if s.GetName() != want {
		return "", fmt.Errorf("SDS secret %q: the Weft proxy provides %q (its workload certificate) and %q (the trust bundle) from its own identity, nothing else", s.GetName(), SDSDefault, SDSRootCA)
	}
	return want, nil // the constant: not a copy per cluster
}

func fileOf(ds *corev3.DataSource, what string) (string, error) {
	if ds == nil {
		return "", nil
	}
	f, ok := ds.GetSpecifier().(*corev3.DataSource_Filename)
	if !ok || f.Filename == "" {
		return "", fmt.Errorf("%s: only filename data sources are supported", what)
	}
	return f.Filename, nil
}

func parseCommonTLS(ct *tlsv3.CommonTlsContext, out *TLSCommon) error {
	out.ALPN = append([]string(nil), ct.GetAlpnProtocols()...)
	if err := parseTLSParams(ct.GetTlsParams(), out); err != nil {
		return fmt.Errorf("tls_params: %w", err)
	}
	certs := ct.GetTlsCertificates()
	sds := ct.GetTlsCertificateSdsSecretConfigs()
	switch {
	case len(certs)+len(sds) > 1:
		return errors.New("at most one certificate is supported")
	case len(sds) == 1:
		n, err := sdsName(sds[0], SDSDefault)
		if err != nil {
			return fmt.Errorf("tls_certificate_sds_secret_configs[0]: %w", err)
		}
		out.CertSDS = n
	case len(certs) == 1:
		var err error
		if out.CertFile, err = fileOf(certs[0].GetCertificateChain(), "tls_certificates[0].certificate_chain"); err != nil {
			return err
		}
		if out.KeyFile, err = fileOf(certs[0].GetPrivateKey(), "tls_certificates[0].private_key"); err != nil {
			return err
		}
		if out.CertFile == "" || out.KeyFile == "" {
			return errors.New("tls_certificates[0] needs certificate_chain and private_key")
		}
	}
	if ct.GetTlsCertificateProviderInstance() != nil || ct.GetTlsCertificateCertificateProviderInstance() != nil { //nolint:staticcheck // refused, whichever field
		return errors.New("certificate provider instances are not supported; use SDS name \"default\" or files")
	}
	var vc *tlsv3.CertificateValidationContext
	switch v := ct.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		n, err := sdsName(v.ValidationContextSdsSecretConfig, SDSRootCA)
		if err != nil {
			return fmt.Errorf("validation_context_sds_secret_config: %w", err)
		}
		out.CASDS = n
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
		if s := v.CombinedValidationContext.GetValidationContextSdsSecretConfig(); s != nil {
			n, err := sdsName(s, SDSRootCA)
			if err != nil {
				return fmt.Errorf("combined_validation_context.validation_context_sds_secret_config: %w", err)
			}
			out.CASDS = n
		}
	default:
		return errors.New("only validation_context, validation_context_sds_secret_config and combined_validation_context are supported")
	}
	if vc == nil {
		return nil
	}
	ca, err := fileOf(vc.GetTrustedCa(), "validation_context.trusted_ca")
	if err != nil {
		return err
	}
	if ca != "" && out.CASDS != "" {
		return errors.New("validation context: both trusted_ca and an SDS root; use one")
	}
	out.CAFile = ca
	for i, m := range vc.GetMatchTypedSubjectAltNames() {
		v, err := exactString(m.GetMatcher())
		if err != nil {
			return fmt.Errorf("match_typed_subject_alt_names[%d]: %w", i, err)
		}
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_URI:
			out.URISANs = append(out.URISANs, v)
		case tlsv3.SubjectAltNameMatcher_DNS:
			out.DNSSANs = append(out.DNSSANs, v)
		default:
			return fmt.Errorf("match_typed_subject_alt_names[%d]: san_type %v is not supported; use URI or DNS", i, m.GetSanType())
		}
	}
	for i, m := range vc.GetMatchSubjectAltNames() { //nolint:staticcheck // deprecated, still sent by older control planes
		v, err := exactString(m)
		if err != nil {
			return fmt.Errorf("match_subject_alt_names[%d]: %w", i, err)
		}
		if strings.Contains(v, "://") {
			out.URISANs = append(out.URISANs, v)
		} else {
			out.DNSSANs = append(out.DNSSANs, v)
		}
	}
	if len(vc.GetVerifyCertificateSpki()) > 0 || len(vc.GetVerifyCertificateHash()) > 0 || vc.GetCrl() != nil || vc.GetCustomValidatorConfig() != nil {
		return errors.New("validation context: only trusted_ca and subject alt name matches are supported")
	}
	return nil
}

func exactString(m *matcherv3.StringMatcher) (string, error) {
	e, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact)
	if !ok || m.GetIgnoreCase() {
		return "", errors.New("only exact, case-sensitive matches are supported")
	}
	return e.Exact, nil
}

// parseTLSParams reads the TLS versions and TLS 1.2 cipher suites.
func parseTLSParams(tp *tlsv3.TlsParameters, out *TLSCommon) error {
	if tp == nil {
		return nil
	}
	version := func(v tlsv3.TlsParameters_TlsProtocol, field string) (uint16, error) {
		switch v {
		case tlsv3.TlsParameters_TLS_AUTO:
			return 0, nil
		case tlsv3.TlsParameters_TLSv1_2:
			return tls.VersionTLS12, nil
		case tlsv3.TlsParameters_TLSv1_3:
			return tls.VersionTLS13, nil
		}
		return 0, fmt.Errorf("%s %v is not supported; use TLSv1_2 or TLSv1_3", field, v)
	}
	var err error
	if out.MinVersion, err = version(tp.GetTlsMinimumProtocolVersion(), "tls_minimum_protocol_version"); err != nil {
		return err
	}
	if out.MaxVersion, err = version(tp.GetTlsMaximumProtocolVersion(), "tls_maximum_protocol_version"); err != nil {
		return err
	}
	if out.MinVersion != 0 && out.MaxVersion != 0 && out.MinVersion > out.MaxVersion {
		return errors.New("tls_minimum_protocol_version is above tls_maximum_protocol_version")
	}
	if len(tp.GetCipherSuites()) > 0 {
		if out.CipherSuites, err = tlsnames.CipherSuites(tp.GetCipherSuites()); err != nil {
			return fmt.Errorf("cipher_suites: %w", err)
		}
	}
	// ecdh_curves, signature_algorithms and compliance policies only
	// narrow what crypto/tls offers by default; they are accepted and
	// crypto/tls's defaults kept (control planes set them mesh-wide).
	return nil
}
