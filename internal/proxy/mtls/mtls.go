// Package mtls turns the proxy's validated TLS contexts
// (proxyconfig.UpstreamTLS, proxyconfig.DownstreamTLS) into tls.Configs,
// with certificates from the proxy's identity (SDS names "default" and
// "ROOTCA") or from files, and verifies peers the way Weft's mesh needs:
// workload certificates (SVIDs) carry no DNS name, so a peer's chain is
// verified against the trust bundle and its SPIFFE ID (the one URI SAN)
// is compared with the identities the control plane expects.
//
// Configs call the identity on every handshake, so a renewed certificate
// or trust bundle is used by the next connection while established ones
// keep theirs: rotation drops nothing.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/spiffeid"
)

// Identity supplies the proxy's workload certificate and the trust bundle
// (*identity.Client implements it). Its methods are safe for concurrent
// use and must not block.
type Identity interface {
	// GetCertificate serves the current certificate to a TLS server.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// GetClientCertificate serves it to a TLS client.
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// TrustBundle is the pool that verifies peers; nil before the first
	// certificate.
	TrustBundle() *x509.CertPool
}

// ErrNoIdentity is returned for a context that uses the proxy's identity
// when the proxy has none (it was started with no identity source).
var ErrNoIdentity = errors.New("mTLS needs the proxy's workload certificate, and this proxy has none (start it with --ca-addr or --identity-source=spiffe)")

// ClientConfig builds the config for connections to an upstream. alpn, if
// set, replaces the context's ALPN list (the proxy offers the protocol its
// connection pool speaks).
func ClientConfig(t *proxyconfig.UpstreamTLS, id Identity, alpn []string) (*tls.Config, error) {
	if t.UsesSDS() && id == nil {
		return nil, ErrNoIdentity
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         t.MaxVersion,
		CipherSuites:       t.CipherSuites,
		ServerName:         t.SNI,
		NextProtos:         t.ALPN,
		InsecureSkipVerify: true, // verified in VerifyConnection, below
	}
	if alpn != nil {
		cfg.NextProtos = alpn
	}
	if t.MinVersion != 0 {
		cfg.MinVersion = t.MinVersion
	}
	switch {
	case t.CertSDS != "":
		cfg.GetClientCertificate = id.GetClientCertificate
	case t.CertFile != "":
		fc, err := loadFileCert(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return fc.current(), nil }
	}
	roots, err := rootsOf(&t.TLSCommon, id)
	if err != nil {
		return nil, err
	}
	common := &t.TLSCommon
	sni := t.SNI
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		pool := roots()
		if common.CASDS != "" {
			pool = id.TrustBundle()
			if pool == nil {
				return errors.New("no trust bundle yet")
			}
		}
		leaf, err := verifyChain(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if len(common.URISANs)+len(common.DNSSANs) > 0 {
			return checkSANs(leaf, common)
		}
		if common.CASDS == "" && sni != "" {
			// TLS to a service outside the mesh: the usual host name
			// check, against the SNI.
			return leaf.VerifyHostname(sni)
		}
		if common.CASDS != "" {
			// A mesh peer must at least have a SPIFFE ID of this trust
			// bundle's mesh.
			if _, err := spiffeid.FromCertificate(leaf); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
		}
		return nil
	}
	return cfg, nil
}

// ServerConfig builds the config that terminates TLS on a filter chain.
// A client that offers none of the context's ALPN protocols is served
// without ALPN (as Envoy does), not refused.
func ServerConfig(t *proxyconfig.DownstreamTLS, id Identity) (*tls.Config, error) {
	if t.UsesSDS() && id == nil {
		return nil, ErrNoIdentity
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: t.MaxVersion, CipherSuites: t.CipherSuites, NextProtos: t.ALPN}
	if t.MinVersion != 0 {
		cfg.MinVersion = t.MinVersion
	}
	switch {
	case t.CertSDS != "":
		cfg.GetCertificate = id.GetCertificate
	case t.CertFile != "":
		fc, err := loadFileCert(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return fc.current(), nil }
	}
	if t.CASDS == "" && t.CAFile == "" {
		return cfg, nil // no client certificates asked for
	}
	roots, err := rootsOf(&t.TLSCommon, id)
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.RequestClientCert
	if t.RequireClientCert {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	common := &t.TLSCommon
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // only reached when the certificate is optional
		}
		pool := roots()
		if common.CASDS != "" {
			pool = id.TrustBundle()
			if pool == nil {
				return errors.New("no trust bundle yet")
			}
		}
		leaf, err := verifyChain(cs.PeerCertificates, pool, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		if len(common.URISANs)+len(common.DNSSANs) > 0 {
			return checkSANs(leaf, common)
		}
		return nil
	}
	lenientALPN(cfg)
	return cfg, nil
}

// lenientALPN makes a server with an ALPN list accept a client that
// offers none of its protocols, without ALPN, as Envoy does: crypto/tls
// would refuse the handshake. A client that offers one of them gets it.
func lenientALPN(cfg *tls.Config) {
	if len(cfg.NextProtos) == 0 {
		return
	}
	protos := cfg.NextProtos
	without := cfg.Clone()
	without.NextProtos = nil
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		for _, p := range hello.SupportedProtos {
			if slices.Contains(protos, p) {
				return nil, nil
			}
		}
		return without, nil
	}
}

func rootsOf(t *proxyconfig.TLSCommon, _ Identity) (func() *x509.CertPool, error) {
	if t.CAFile == "" {
		if t.CASDS == "" {
			// No validation context: system roots (TLS origination to
			// services outside the mesh without caCertificates).
			pool, err := x509.SystemCertPool()
			return func() *x509.CertPool { return pool }, err
		}
		return func() *x509.CertPool { return nil }, nil
	}
	fr, err := loadFileRoots(t.CAFile)
	if err != nil {
		return nil, err
	}
	return fr.current, nil
}

// verifyChain verifies the peer's chain against roots for the usage and
// returns the leaf.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("none presented")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, describe(leaf, err)
	}
	return leaf, nil
}

// describe names the certificate in a verification error, so an expired
// or not yet valid certificate says which.
func describe(c *x509.Certificate, err error) error {
	name := c.Subject.String()
	if id, e := spiffeid.FromCertificate(c); e == nil {
		name = id.String()
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return fmt.Errorf("certificate of %s (serial %x) is expired or not yet valid (valid %s to %s): %w",
			name, c.SerialNumber, c.NotBefore.UTC().Format("2006-01-02T15:04:05Z"), c.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), err)
	}
	return fmt.Errorf("certificate of %s (serial %x): %w", name, c.SerialNumber, err)
}

func checkSANs(leaf *x509.Certificate, t *proxyconfig.TLSCommon) error {
	for _, u := range leaf.URIs {
		if slices.Contains(t.URISANs, u.String()) {
			return nil
		}
	}
	for _, d := range t.DNSSANs {
		if leaf.VerifyHostname(d) == nil {
			return nil
		}
	}
	got := "no URI SAN"
	if id, err := spiffeid.FromCertificate(leaf); err == nil {
		got = id.String()
	}
	return fmt.Errorf("peer identity %s is not one of those expected (%v %v)", got, t.URISANs, t.DNSSANs)
}

// PeerID returns the SPIFFE ID of a connection's verified peer, "" when it
// presented none or not one SPIFFE URI SAN.
func PeerID(cs *tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, err := spiffeid.FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}

// Conn is a TLS connection whose peer was verified; listeners and pools
// hand it on so that later stages can read the peer's identity.
type Conn struct {
	*tls.Conn
	// Peer is the peer's SPIFFE ID, "" when it has none.
	Peer string
}

// ProtocolOf returns the application protocol a TLS connection made or
// accepted with this package negotiated (ALPN), "" when none or for any
// other connection.
func ProtocolOf(c net.Conn) string {
	for {
		switch x := c.(type) {
		case *Conn:
			return x.ConnectionState().NegotiatedProtocol
		case *tls.Conn:
			return x.ConnectionState().NegotiatedProtocol
		case interface{ Unwrap() net.Conn }:
			c = x.Unwrap()
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return ""
		}
	}
}

// PeerOf returns the verified peer SPIFFE ID of a connection made or
// accepted with this package, "" for any other connection.
func PeerOf(c net.Conn) string {
	for {
		switch x := c.(type) {
		case *Conn:
			return x.Peer
		case interface{ Unwrap() net.Conn }:
			c = x.Unwrap()
		default:
			return ""
		}
	}
}
