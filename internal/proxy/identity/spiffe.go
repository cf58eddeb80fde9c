package identity

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/spiffesource"
)

// Sources of the proxy's SVID.
const (
	// SourceCA is the control plane's CA: the proxy makes a key and a
	// CSR and renews the certificate itself.
	SourceCA = "ca"
	// SourceSPIFFE is the SPIFFE Workload API (a SPIRE agent): the agent
	// attests the proxy's process, hands it an SVID and its key, and
	// pushes new ones before they expire.
	SourceSPIFFE = "spiffe"
)

// TrustDomainError is returned when the identity source issues an SVID in
// another trust domain than the proxy's: SAN checks and authorization
// principals would never match, so the proxy stops with it.
type TrustDomainError struct {
	// Source names the identity source, e.g. "the SPIFFE Workload API at
	// unix:///run/spire/agent.sock".
	Source string
	// Issued is the SPIFFE ID the source issued.
	Issued string
	// Got is its trust domain; Want the proxy's.
	Got, Want string
}

func (e *TrustDomainError) Error() string {
	return fmt.Sprintf("trust domain mismatch: %s issued %s, in trust domain %q, but this proxy's trust domain is %q (--trust-domain): "+
		"run the mesh with --trust-domain %s, or use an agent of trust domain %s", e.Source, e.Issued, e.Got, e.Want, e.Got, e.Want)
}

// sourceName says where the certificate comes from, for logs and errors.
func (c *Client) sourceName() string {
	if c.opts.Source == SourceSPIFFE {
		return "the SPIFFE Workload API at " + c.opts.SPIFFESocket
	}
	return "the CA at " + c.opts.Addr
}

// runSPIFFE takes the proxy's SVID and trust bundle from the SPIFFE
// Workload API (go-spiffe's X509Source) and installs every update the
// agent pushes, until ctx ends. An SVID of another trust domain is fatal
// before the first certificate; any other unusable update is logged and
// the certificate in force kept.
func (c *Client) runSPIFFE(ctx context.Context) error {
	c.log.Info("asking the SPIFFE Workload API for the workload certificate", "socket", c.opts.SPIFFESocket, "id", c.opts.ID.String())
	src, err := spiffesource.Open(ctx, c.opts.SPIFFESocket, c.log, c.pickSVID)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer src.Close()
	for {
		if err := c.installSPIFFE(src); err != nil {
			var tde *TrustDomainError
			if errors.As(err, &tde) && c.current.Load() == nil {
				return err
			}
			if c.current.Load() == nil {
				c.log.Error("unusable SVID from the SPIFFE Workload API; waiting for another (the proxy is not ready)", "error", err)
			} else {
				c.log.Error("unusable update from the SPIFFE Workload API; keeping the certificate in force", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-src.Updated():
		}
	}
}

// pickSVID picks the SVID for the proxy's own ID when the agent sends
// several, else the first (the agent's default).
func (c *Client) pickSVID(svids []*x509svid.SVID) *x509svid.SVID {
	want := c.opts.ID.String()
	for _, s := range svids {
		if s.ID.String() == want {
			return s
		}
	}
	return svids[0]
}

// installSPIFFE installs the source's SVID and bundle unless both are
// the ones in force.
func (c *Client) installSPIFFE(src *workloadapi.X509Source) error {
	sv, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	var roots []*x509.Certificate
	if b, err := src.GetX509BundleForTrustDomain(sv.ID.TrustDomain()); err == nil {
		roots = b.X509Authorities()
	}
	next, err := svidFromSPIFFE(c.opts.ID, c.sourceName(), sv.Certificates, sv.PrivateKey, roots)
	if err != nil {
		return err
	}
	cur := c.current.Load()
	if cur != nil && cur.Leaf.Equal(next.Leaf) {
		if sameCerts(cur.BundleCerts, next.BundleCerts) {
			return nil
		}
		c.current.Store(next)
		serials := make([]string, len(next.BundleCerts))
		for i, r := range next.BundleCerts {
			serials[i] = serial(r)
		}
		c.log.Info("trust bundle updated", "id", c.opts.ID.String(), "roots", serials, "source", c.sourceName())
		return nil
	}
	c.install(next)
	return nil
}

// svidFromSPIFFE checks an SVID handed over by the Workload API and makes
// it the proxy's: its ID must be want (a Weft workload ID in the proxy's
// trust domain), and its chain must verify against the trust domain's
// bundle for both TLS client and server use.
func svidFromSPIFFE(want spiffeid.ID, source string, certs []*x509.Certificate, key crypto.Signer, roots []*x509.Certificate) (*SVID, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s sent an SVID with no certificate", source)
	}
	leaf := certs[0]
	if len(leaf.URIs) == 1 && leaf.URIs[0].Scheme == "spiffe" && leaf.URIs[0].Host != want.TrustDomain {
		return nil, &TrustDomainError{Source: source, Issued: leaf.URIs[0].String(), Got: leaf.URIs[0].Host, Want: want.TrustDomain}
	}
	id, err := spiffeid.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s issued a certificate Weft cannot use: %w; register the workload as %s", source, err, want)
	}
	if id != want {
		return nil, fmt.Errorf("%s issued %s, but this proxy is %s (--namespace %s, --service-account %s): fix the registration entry's SPIFFE ID or the proxy's flags",
			source, id, want, want.Namespace, want.ServiceAccount)
	}
	if key == nil || !publicKeyMatches(key.Public(), leaf.PublicKey) {
		return nil, fmt.Errorf("%s sent a key that is not the key of %s", source, id)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s sent no trust bundle for trust domain %s", source, want.TrustDomain)
	}
	bundle := x509.NewCertPool()
	for _, r := range roots {
		bundle.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: bundle, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, fmt.Errorf("the SVID %s (serial %s) from %s does not verify against its trust bundle: %w", id, serial(leaf), source, err)
		}
	}
	raw := make([][]byte, len(certs))
	for i, ch := range certs {
		raw[i] = ch.Raw
	}
	return &SVID{
		ID:          id,
		Certificate: &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		Leaf:        leaf,
		Chain:       certs,
		Bundle:      bundle,
		BundleCerts: roots,
	}, nil
}

func publicKeyMatches(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
