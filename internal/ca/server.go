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
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
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

// GetTrustBundle implements caapi.BundleHandler: it records what the
// caller uses (for the root rotation's checks) and answers the bundle,
// and whether to renew now.
func (s *Service) GetTrustBundle(ctx context.Context, req *caapi.BundleRequest) (*caapi.BundleResponse, error) {
	tok, err := caapi.BearerToken(ctx)
	if err != nil {
		return nil, err
	}
	caller, ok := s.tokens.Lookup(tok)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown bootstrap token: the instance may have been stopped or the mesh restarted")
	}
	renew := s.ca.Report(caller.Instance, req.CertChain, req.BundleSerials)
	return &caapi.BundleResponse{TrustBundle: s.ca.TrustBundlePEM(), Renew: renew}, nil
}

// RequireClientCert refuses every call on the CA port except the
// certificate API's unless the caller presented a client certificate
// that verified against the trust bundle: xDS on 15012 is for sidecars
// with an SVID. Use it as both interceptors of the port's gRPC server.
func RequireClientCert() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) error {
		if strings.HasPrefix(method, "/"+caapi.ServiceName+"/") {
			return nil
		}
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				return nil
			}
		}
		return status.Errorf(codes.Unauthenticated, "%s on the CA port needs a client certificate from the mesh's CA (a sidecar's SVID); "+
			"proxyless clients and tools use the plaintext xDS port (15010)", method)
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
	return unary, stream
}

// serverCert is the CA port's own TLS certificate.
type serverCert struct {
	cert    *tls.Certificate
	issuer  *x509.Certificate // the signing certificate of the moment
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
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.serverCertificate() },
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      a.Roots(),
		NextProtos:     []string{"h2"},
	}
	// Client certificates verify against the bundle of the moment, so a
	// root rotation applies to the next handshake.
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = a.Roots()
		return c, nil
	}
	return cfg
}

func (a *Authority) serverCertificate() (*tls.Certificate, error) {
	a.serverMu.Lock()
	defer a.serverMu.Unlock()
	a.rmu.RLock()
	signCert, signer := a.signCert, a.signer
	a.rmu.RUnlock()
	now := time.Now()
	if a.serverCert != nil && now.Before(a.serverCert.renewAt) && a.serverCert.issuer == signCert {
		return a.serverCert.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(serverCertTTL)
	if notAfter.After(signCert.NotAfter) {
		notAfter = signCert.NotAfter
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signCert, key.Public(), signer)
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
	a.serverCert = &serverCert{cert: c, issuer: signCert, renewAt: leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)}
	return c, nil
}
