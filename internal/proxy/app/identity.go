package app

import (
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/spiffeid"
)

// newIdentity builds the client that gets and renews the proxy's SVID
// from Config.CAAddr.
func newIdentity(cfg Config, log *slog.Logger) (*identity.Client, error) {
	td := cfg.TrustDomain
	if td == "" {
		td = spiffeid.DefaultTrustDomain
	}
	sa := cfg.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	id, err := spiffeid.New(td, cfg.Namespace, sa)
	if err != nil {
		return nil, fmt.Errorf("workload identity from --trust-domain, --namespace and --service-account: %w", err)
	}
	return identity.New(identity.Options{
		Addr: cfg.CAAddr, RootFile: cfg.CARootFile, TokenFile: cfg.BootstrapTokenFile, ID: id,
		BundlePoll: cfg.CAPollInterval,
		Logger:     log.With("component", "identity"),
	})
}

// xdsDialOptions makes the ADS stream run over mTLS when the proxy has an
// identity and its xDS address is the CA's (the control plane's 15012):
// the proxy presents its SVID and verifies the control plane's
// certificate against the trust bundle. Otherwise xDS is plaintext
// (15010).
func (p *Proxy) xdsDialOptions() []grpc.DialOption {
	if p.ident == nil || p.cfg.XDSAddr != p.cfg.CAAddr {
		return nil
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(p.ident.ControlPlaneTLS(true)))}
}

// Identity is the client holding the proxy's workload certificate, or nil
// when the proxy runs without one (no --ca-addr). Its GetCertificate and
// GetClientCertificate fit tls.Config; TrustBundle verifies peers.
func (p *Proxy) Identity() *identity.Client { return p.ident }

// meshIdentity wires the proxy's identity into mesh mTLS: the upstream
// pools and the listeners get it as their certificate source, and the
// metrics and the tap learn the proxy's own principal. It returns nil (a
// nil interface, not a nil client) when the proxy has no identity.
func (p *Proxy) meshIdentity() mtls.Identity {
	if p.ident == nil {
		return nil
	}
	principal := p.ident.ID().String()
	p.metrics.SetPrincipal(principal)
	p.tap.SetPrincipal(principal)
	p.clusters.SetIdentity(p.ident)
	return p.ident
}

// logTLSNotes logs, once each, the clusters whose sidecar endpoints are
// reached in plaintext because the proxy has no identity.
func (p *Proxy) logTLSNotes(clusters map[string]*upstream.Cluster) {
	for _, c := range clusters {
		if n := c.TLSNote(); n != "" && !p.logged[n] {
			p.logged[n] = true
			p.log.Warn("mTLS not possible", "what", n)
		}
	}
}
