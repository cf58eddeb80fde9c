package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/spiffesource"
)

// Identity sources, as GET /api/v1/ca reports them.
const (
	// IdentitySourceCA: the built-in CA signs the sidecars' certificates.
	IdentitySourceCA = "ca"
	// IdentitySourceSPIFFE: the SPIFFE Workload API (a SPIRE agent) issues
	// them; the built-in CA signs only the control plane's own TLS
	// certificate.
	IdentitySourceSPIFFE = "spiffe"
)

// IdentityStatus says where the mesh's workload certificates come from
// (`weft ca status`).
type IdentityStatus struct {
	// Source is IdentitySourceCA or IdentitySourceSPIFFE.
	Source string `json:"source"`
	// SPIFFESocket is the Workload API's address (source spiffe).
	SPIFFESocket string `json:"spiffeSocket,omitempty"`
	// ControlPlaneID is the control plane's own SVID's SPIFFE ID, from the
	// Workload API; empty until it answered.
	ControlPlaneID string `json:"controlPlaneId,omitempty"`
	// Bundle are the trust domain's roots from the Workload API, which
	// the CA port trusts for sidecars' client certificates; empty until
	// it answered.
	Bundle []ca.CertInfo `json:"bundle,omitempty"`
	// Updated is when the Workload API last sent them.
	Updated time.Time `json:"updated,omitzero"`
}

// CAStatus is GET /api/v1/ca: the built-in CA's status and where
// workload certificates come from.
type CAStatus struct {
	ca.Status
	// Identity says where the sidecars' certificates come from.
	Identity IdentityStatus `json:"identity"`
}

// spiffeTrust keeps the trust bundle of the SPIFFE Workload API (a SPIRE
// agent) up to date, so that the CA port accepts the client certificates
// of sidecars whose SVIDs SPIRE issued. The control plane is itself a
// workload of the agent: it needs a registration entry.
type spiffeTrust struct {
	addr        string
	trustDomain string // the mesh's; the Workload API's must equal it
	log         *slog.Logger
	state       atomic.Pointer[spiffeState]
}

// spiffeState is one update from the Workload API. It is immutable.
type spiffeState struct {
	id      string
	roots   []*x509.Certificate
	updated time.Time
}

// run follows the Workload API until ctx ends. A control plane SVID of
// another trust domain than the mesh's is fatal: sidecars' SAN checks and
// authorization principals name the mesh's trust domain.
func (t *spiffeTrust) run(ctx context.Context) error {
	t.log.Info("reading the SPIFFE trust bundle from the Workload API", "socket", t.addr, "trust_domain", t.trustDomain)
	src, err := spiffesource.Open(ctx, t.addr, t.log, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer src.Close()
	for {
		sv, err := src.GetX509SVID()
		if err != nil {
			return fmt.Errorf("SPIFFE Workload API at %s: %w", t.addr, err)
		}
		if td := sv.ID.TrustDomain().Name(); td != t.trustDomain {
			return fmt.Errorf("trust domain mismatch: the SPIFFE Workload API at %s issued the control plane %s, in trust domain %q, but the mesh's trust domain is %q (--trust-domain): "+
				"run the mesh with --trust-domain %s, or use an agent of trust domain %s", t.addr, sv.ID, td, t.trustDomain, td, t.trustDomain)
		}
		b, err := src.GetX509BundleForTrustDomain(sv.ID.TrustDomain())
		switch {
		case err != nil:
			t.log.Error("the SPIFFE Workload API sent no trust bundle for the mesh's trust domain; keeping the last one", "trust_domain", t.trustDomain, "error", err)
		default:
			next := &spiffeState{id: sv.ID.String(), roots: b.X509Authorities(), updated: time.Now()}
			prev := t.state.Swap(next)
			if prev == nil || !sameRoots(prev.roots, next.roots) {
				serials := make([]string, len(next.roots))
				for i, r := range next.roots {
					serials[i] = fmt.Sprintf("%x", r.SerialNumber)
				}
				t.log.Info("SPIFFE trust bundle in force on the CA port", "trust_domain", t.trustDomain, "roots", serials, "control_plane_id", next.id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-src.Updated():
		}
	}
}

func sameRoots(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// roots are the Workload API's roots of the moment, nil before the first
// answer.
func (t *spiffeTrust) roots() []*x509.Certificate {
	if st := t.state.Load(); st != nil {
		return st.roots
	}
	return nil
}

// withSPIFFERoots makes a CA port TLS config also accept client
// certificates that verify against the Workload API's bundle of the
// moment (read on every handshake, so SPIRE's own CA rotation applies to
// the next connection).
func (t *spiffeTrust) withSPIFFERoots(cfg *tls.Config) *tls.Config {
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg
		if inner != nil {
			var err error
			if c, err = inner(hi); err != nil || c == nil {
				return c, err
			}
		}
		c = c.Clone()
		c.GetConfigForClient = nil
		pool := x509.NewCertPool()
		if c.ClientCAs != nil {
			pool = c.ClientCAs.Clone()
		}
		for _, r := range t.roots() {
			pool.AddCert(r)
		}
		c.ClientCAs = pool
		return c, nil
	}
	return cfg
}

func (t *spiffeTrust) status() IdentityStatus {
	st := IdentityStatus{Source: IdentitySourceSPIFFE, SPIFFESocket: t.addr}
	if s := t.state.Load(); s != nil {
		st.ControlPlaneID, st.Updated = s.id, s.updated.UTC()
		for _, r := range s.roots {
			st.Bundle = append(st.Bundle, ca.CertInfo{Subject: r.Subject.String(), Issuer: r.Issuer.String(),
				Serial: fmt.Sprintf("%x", r.SerialNumber), NotBefore: r.NotBefore.UTC(), NotAfter: r.NotAfter.UTC()})
		}
	}
	return st
}

// newSPIFFETrust checks the control plane's Workload API settings; nil
// when none is set.
func newSPIFFETrust(o CAOptions, log *slog.Logger) (*spiffeTrust, error) {
	if o.SPIFFESocket == "" {
		return nil, nil
	}
	if o.Dir == "" && o.PluginDir == "" {
		return nil, fmt.Errorf("--spiffe-socket needs the CA port, where sidecars get xDS over mTLS: pass --ca-dir (the built-in CA then signs only the control plane's TLS certificate)")
	}
	if err := spiffesource.CheckAddr("--spiffe-socket", o.SPIFFESocket); err != nil {
		return nil, err
	}
	td := o.TrustDomain
	if td == "" {
		td = spiffeid.DefaultTrustDomain
	}
	return &spiffeTrust{addr: o.SPIFFESocket, trustDomain: td, log: log.With("component", "spiffe")}, nil
}
