package app

import (
	"fmt"
	"log/slog"

	"weft.dev/weft/internal/proxy/identity"
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
		Logger: log.With("component", "identity"),
	})
}

// Identity is the client holding the proxy's workload certificate, or nil
// when the proxy runs without one (no --ca-addr). Its GetCertificate and
// GetClientCertificate fit tls.Config; TrustBundle verifies peers.
func (p *Proxy) Identity() *identity.Client { return p.ident }
