package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/internal/caapi"
)

// Service serves the certificate API (caapi) for an Authority: it
// authenticates the caller by its bearer token and signs its CSR.
type Service struct {
	ca     *Authority
	tokens *Tokens
}

// NewService returns the certificate API of a with callers known by tokens.
func NewService(a *Authority, tokens *Tokens) *Service { return &Service{ca: a, tokens: tokens} }

// CreateCertificate implements caapi.Handler.
func (s *Service) CreateCertificate(ctx context.Context, req *caapi.Request) (*caapi.Response, error) {
	tok, err := caapi.BearerToken(ctx)
	if err != nil {
		s.ca.Rejected(ReasonNoToken)
		return nil, err
	}
	caller, ok := s.tokens.Lookup(tok)
	if !ok {
		s.ca.Rejected(ReasonBadToken)
		s.ca.log.Warn("certificate request with an unknown bootstrap token")
		return nil, status.Error(codes.Unauthenticated, "unknown bootstrap token: the instance may have been stopped or the mesh restarted; restart the sidecar with the token file weft up wrote")
	}
	iss, err := s.ca.Sign(caller, req.CSR, req.Validity)
	if err != nil {
		var re *RejectError
		if errors.As(err, &re) {
			code := codes.InvalidArgument
			if re.Reason == ReasonWrongIdentity {
				code = codes.PermissionDenied
			}
			return nil, status.Error(code, re.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &caapi.Response{CertChain: iss.ChainPEM, TrustBundle: iss.TrustBundlePEM}, nil
}

// serverCert is the CA port's own TLS certificate.
type serverCert struct {
	cert    *tls.Certificate
	renewAt time.Time
}

// serverCertTTL is the lifetime of the control plane's TLS certificate.
const serverCertTTL = 24 * time.Hour

// ServerTLSConfig is the TLS config of the control plane's 15012 port: a
// certificate signed by the CA for 127.0.0.1, ::1, localhost and
// caapi.ServerName, renewed at half its lifetime. Client certificates are
// verified against the trust bundle when given (xDS over mTLS uses them);
// the certificate API itself authenticates by token.
func (a *Authority) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.serverCertificate() },
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      a.Roots(),
		NextProtos:     []string{"h2"},
	}
}

func (a *Authority) serverCertificate() (*tls.Certificate, error) {
	a.serverMu.Lock()
	defer a.serverMu.Unlock()
	now := time.Now()
	if a.serverCert != nil && now.Before(a.serverCert.renewAt) {
		return a.serverCert.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(serverCertTTL)
	if notAfter.After(a.signCert.NotAfter) {
		notAfter = a.signCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"Weft"}, CommonName: caapi.ServerName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{caapi.ServerName, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.signCert, key.Public(), a.signer)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	for _, c := range a.intermediates {
		chain = append(chain, c.Raw)
	}
	c := &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
	a.serverCert = &serverCert{cert: c, renewAt: leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)}
	return c, nil
}
