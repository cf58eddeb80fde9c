package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/spiffeid"
)

// spiffeRoot is a root standing in for a SPIRE server's CA in the TLS
// tests below: it signs client SVIDs as SPIRE does (one URI SAN, client
// and server auth).
type spiffeRoot struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newSPIFFERoot(t *testing.T) *spiffeRoot {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"SPIFFE"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &spiffeRoot{cert: cert, key: key}
}

func (r *spiffeRoot) clientCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(8), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.cert, key.Public(), r.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCAPortTrustsSPIFFEBundle checks the CA port's TLS config with a
// SPIFFE Workload API source: over real TLS handshakes on loopback, a
// client certificate from the built-in CA still verifies, one from the
// Workload API's bundle verifies once that bundle is known (and again
// after it changed), and one from neither is refused.
func TestCAPortTrustsSPIFFEBundle(t *testing.T) {
	a, err := ca.New(ca.Options{Dir: t.TempDir(), TrustDomain: "example.org", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	trust, err := newSPIFFETrust(CAOptions{Dir: "x", TrustDomain: "example.org", SPIFFESocket: "unix:///run/spire/agent.sock"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", trust.withSPIFFERoots(a.ServerTLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server answers "verified" or "unverified" for each connection.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				if len(tc.ConnectionState().VerifiedChains) > 0 {
					_, _ = io.WriteString(tc, "verified\n")
				} else {
					_, _ = io.WriteString(tc, "unverified\n")
				}
			}()
		}
	}()
	dial := func(cert tls.Certificate) (string, error) {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(a.TrustBundlePEM())
		d := &net.Dialer{Timeout: 10 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{ServerName: "localhost", RootCAs: roots, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if len(b) == 0 && err == nil {
			err = errors.New("connection closed with no answer")
		}
		return strings.TrimSpace(string(b)), err
	}

	// A sidecar with a certificate from the built-in CA.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := spiffeid.ID{TrustDomain: "example.org", Namespace: "default", ServiceAccount: "ca-client"}
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	iss, err := a.Sign(ca.Caller{ID: id, Instance: "ca-client-0.default"}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCert := tls.Certificate{Certificate: [][]byte{iss.Leaf.Raw}, PrivateKey: key}
	if got, err := dial(caCert); got != "verified" {
		t.Errorf("client certificate from the built-in CA: %q %v, want verified", got, err)
	}

	spire, next := newSPIFFERoot(t), newSPIFFERoot(t)
	spireCert := spire.clientCert(t, "spiffe://example.org/ns/default/sa/sleep")
	if got, err := dial(spireCert); got == "verified" {
		t.Errorf("SPIRE client certificate before the Workload API answered: %q %v, want refused", got, err)
	}
	trust.state.Store(&spiffeState{id: "spiffe://example.org/ns/istio-system/sa/weft-controlplane", roots: []*x509.Certificate{spire.cert}, updated: time.Now()})
	if got, err := dial(spireCert); got != "verified" {
		t.Errorf("SPIRE client certificate: %q %v, want verified", got, err)
	}
	if got, err := dial(caCert); got != "verified" {
		t.Errorf("client certificate from the built-in CA beside SPIRE's bundle: %q %v, want verified", got, err)
	}
	// SPIRE's own CA rotation: the next handshake uses the new bundle.
	trust.state.Store(&spiffeState{roots: []*x509.Certificate{next.cert}, updated: time.Now()})
	if got, err := dial(next.clientCert(t, "spiffe://example.org/ns/default/sa/sleep")); got != "verified" {
		t.Errorf("certificate from SPIRE's next root: %q %v, want verified", got, err)
	}
	if got, err := dial(spireCert); got == "verified" {
		t.Errorf("certificate from SPIRE's retired root: %q %v, want refused", got, err)
	}
	if got, err := dial(newSPIFFERoot(t).clientCert(t, "spiffe://example.org/ns/default/sa/sleep")); got == "verified" {
		t.Errorf("certificate from an unknown root: %q %v, want refused", got, err)
	}

	st := trust.status()
	if st.Source != IdentitySourceSPIFFE || st.SPIFFESocket != "unix:///run/spire/agent.sock" || len(st.Bundle) != 1 || st.Bundle[0].Serial != "7" {
		t.Errorf("status = %+v", st)
	}
}

// TestSPIFFESocketChecked: a Workload API address needs the CA port and
// a valid URI; errors name the flag.
func TestSPIFFESocketChecked(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name    string
		opts    CAOptions
		wantErr string
	}{
		{name: "no CA", opts: CAOptions{SPIFFESocket: "unix:///a.sock"}, wantErr: "--spiffe-socket needs the CA port"},
		{name: "not a URI", opts: CAOptions{Dir: "x", SPIFFESocket: "/run/agent.sock"}, wantErr: `--spiffe-socket "/run/agent.sock"`},
		{name: "ok", opts: CAOptions{Dir: "x", SPIFFESocket: "unix:///run/agent.sock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSPIFFETrust(tc.opts, log)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("newSPIFFETrust: %v, want %q", err, tc.wantErr)
			}
		})
	}
	// The control plane refuses to start with it.
	_, err := New(Options{ConfigDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: log, CA: CAOptions{SPIFFESocket: "unix:///a.sock"}})
	if err == nil || !strings.Contains(err.Error(), "--ca-dir") {
		t.Errorf("New with a socket and no CA: %v", err)
	}
}
