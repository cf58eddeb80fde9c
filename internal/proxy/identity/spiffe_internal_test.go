package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/spiffeid"
)

// testCA is a root that signs SVIDs the way a SPIRE server does: one URI
// SAN, client and server auth.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// svid signs a leaf for uri (no SAN when uri is empty) and returns it
// with its key.
func (c *testCA) svid(t *testing.T, uri string, usages ...x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if usages == nil {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, key
}

// TestSVIDFromSPIFFE checks what the proxy accepts from the SPIFFE
// Workload API: its own ID in its trust domain, with its key, verifying
// against the bundle for both TLS roles; anything else is refused with
// an error that names what is wrong.
func TestSVIDFromSPIFFE(t *testing.T) {
	want := spiffeid.ID{TrustDomain: "example.org", Namespace: "default", ServiceAccount: "sleep"}
	const source = "the SPIFFE Workload API at unix:///tmp/agent.sock"
	root, other := newTestCA(t, "spire root"), newTestCA(t, "another root")
	good, goodKey := root.svid(t, want.String())
	_, strangerKey := root.svid(t, want.String())
	foreignTD, foreignKey := root.svid(t, "spiffe://cluster.local/ns/default/sa/sleep")
	otherSA, otherSAKey := root.svid(t, "spiffe://example.org/ns/default/sa/httpbin")
	notWeft, notWeftKey := root.svid(t, "spiffe://example.org/web")
	fromOther, fromOtherKey := other.svid(t, want.String())
	serverOnly, serverOnlyKey := root.svid(t, want.String(), x509.ExtKeyUsageServerAuth)

	for _, tc := range []struct {
		name  string
		leaf  *x509.Certificate
		key   crypto.Signer
		roots []*x509.Certificate
		// wantErr are words the error must hold; none: accepted.
		wantErr []string
		// trustDomain: the error is a *TrustDomainError.
		trustDomain bool
	}{
		{name: "own ID", leaf: good, key: goodKey, roots: []*x509.Certificate{root.cert}},
		{name: "bundle with two roots", leaf: good, key: goodKey, roots: []*x509.Certificate{other.cert, root.cert}},
		{name: "other trust domain", leaf: foreignTD, key: foreignKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{`"cluster.local"`, `"example.org"`, "trust domain mismatch", source}, trustDomain: true},
		{name: "other service account", leaf: otherSA, key: otherSAKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{"spiffe://example.org/ns/default/sa/httpbin", "spiffe://example.org/ns/default/sa/sleep", "registration entry"}},
		{name: "not a Weft workload ID", leaf: notWeft, key: notWeftKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{"cannot use", "register the workload as spiffe://example.org/ns/default/sa/sleep"}},
		{name: "key of another certificate", leaf: good, key: strangerKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{"not the key of"}},
		{name: "no bundle", leaf: good, key: goodKey,
			wantErr: []string{"no trust bundle for trust domain example.org"}},
		{name: "signed by a root not in the bundle", leaf: fromOther, key: fromOtherKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{"does not verify against its trust bundle"}},
		{name: "server auth only", leaf: serverOnly, key: serverOnlyKey, roots: []*x509.Certificate{root.cert},
			wantErr: []string{"does not verify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := svidFromSPIFFE(want, source, []*x509.Certificate{tc.leaf}, tc.key, tc.roots)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if s.ID != want || s.Certificate.Leaf != tc.leaf || s.Certificate.PrivateKey != tc.key || len(s.BundleCerts) != len(tc.roots) || !s.RenewAt.IsZero() {
					t.Errorf("SVID = %+v", s)
				}
				if _, err := tc.leaf.Verify(x509.VerifyOptions{Roots: s.Bundle, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
					t.Errorf("the SVID's bundle does not verify it: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error with %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var tde *TrustDomainError
			if got := errors.As(err, &tde); got != tc.trustDomain {
				t.Errorf("a *TrustDomainError: %v, want %v (%v)", got, tc.trustDomain, err)
			}
		})
	}
}
