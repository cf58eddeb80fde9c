package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/spiffesource"
)

// identitySource is Config.IdentitySource with its default: the CA when
// CAAddr is set, else none ("").
func (cfg *Config) identitySource() string {
	if cfg.IdentitySource == "" && cfg.CAAddr != "" {
		return identity.SourceCA
	}
	return cfg.IdentitySource
}

// checkIdentityFlags fills in the identity source's defaults and checks
// that the flags given fit it.
func checkIdentityFlags(cfg *Config) error {
	if cfg.IdentitySource == "" && cfg.SPIFFESocket != "" {
		cfg.IdentitySource = identity.SourceSPIFFE
	}
	cfg.IdentitySource = cfg.identitySource()
	switch cfg.IdentitySource {
	case "":
	case identity.SourceCA:
		if cfg.CAAddr == "" || cfg.CARootFile == "" || cfg.BootstrapTokenFile == "" {
			return errors.New("--identity-source=ca needs --ca-addr, --ca-root-file and --bootstrap-token-file")
		}
		if cfg.SPIFFESocket != "" {
			return errors.New("--spiffe-socket is for --identity-source=spiffe; with the CA the proxy needs none")
		}
	case identity.SourceSPIFFE:
		if cfg.SPIFFESocket == "" {
			cfg.SPIFFESocket = os.Getenv(spiffesource.SocketEnv)
		}
		if cfg.SPIFFESocket == "" {
			return errors.New("--identity-source=spiffe needs --spiffe-socket (or " + spiffesource.SocketEnv + "), e.g. unix:///run/spire/agent.sock")
		}
		if err := spiffesource.CheckAddr("--spiffe-socket", cfg.SPIFFESocket); err != nil {
			return err
		}
		if cfg.BootstrapTokenFile != "" {
			return errors.New("--bootstrap-token-file is for --identity-source=ca; the SPIFFE Workload API attests the proxy's process instead")
		}
		if cfg.CAAddr != "" && cfg.CARootFile == "" {
			return errors.New("--ca-addr needs --ca-root-file (the roots of the control plane's TLS certificate) for xDS over mTLS")
		}
	default:
		return fmt.Errorf("--identity-source %q: want %s or %s", cfg.IdentitySource, identity.SourceCA, identity.SourceSPIFFE)
	}
	return nil
}

// newIdentity builds the client that gets and renews the proxy's SVID
// from its identity source.
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
		Source: cfg.identitySource(), SPIFFESocket: cfg.SPIFFESocket,
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
// when the proxy runs without one (no identity source). Its GetCertificate and
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
