package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/spiffeid"
)

// metricValue reads a counter's or gauge's value.
func metricValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestCA(t *testing.T, opts Options) *Authority {
	t.Helper()
	if opts.Dir == "" && opts.PluginDir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// serve runs the certificate API on a loopback port with the CA's own TLS
// certificate, and returns a client connection that verifies it.
func serve(t *testing.T, a *Authority, tokens *Tokens) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig())))
	caapi.Register(srv, NewService(a, tokens))
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: a.Roots(), ServerName: caapi.ServerName})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

type csrSpec struct {
	key    crypto.Signer
	uris   []string
	dns    []string
	ips    []net.IP
	emails []string
}

func makeCSR(t testing.TB, s csrSpec) []byte {
	t.Helper()
	key := s.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.CertificateRequest{DNSNames: s.dns, IPAddresses: s.ips, EmailAddresses: s.emails}
	for _, u := range s.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

const reviewsID = "spiffe://cluster.local/ns/default/sa/reviews"

// TestCreateCertificate runs a table of certificate requests through the
// real gRPC service over TLS.
func TestCreateCertificate(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newTestCA(t, Options{LeafTTL: time.Hour, Registerer: reg})
	tokens := NewTokens()
	id, _ := spiffeid.Parse(reviewsID)
	token, err := tokens.Issue("reviews-0.default", id)
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, a, tokens)

	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	badSig := func() []byte {
		b, _ := pem.Decode(makeCSR(t, csrSpec{uris: []string{reviewsID}}))
		b.Bytes[len(b.Bytes)-3] ^= 0xff
		return pem.EncodeToMemory(b)
	}()
	tests := []struct {
		name       string
		csr        []byte
		token      string // "-" sends none
		validity   time.Duration
		wantCode   codes.Code
		wantReason string
		wantMsg    string
		wantTTL    time.Duration
	}{
		{name: "own identity", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}}), wantTTL: time.Hour},
		{name: "shorter validity", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}}), validity: 10 * time.Minute, wantTTL: 10 * time.Minute},
		{name: "longer validity is cut", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}}), validity: 48 * time.Hour, wantTTL: time.Hour},
		{name: "DNS SAN", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}, dns: []string{"reviews"}}), wantCode: codes.InvalidArgument, wantReason: ReasonOtherSANs, wantMsg: "DNS SANs"},
		{name: "IP SAN", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}, ips: []net.IP{net.IPv4(10, 0, 0, 1)}}), wantCode: codes.InvalidArgument, wantReason: ReasonOtherSANs, wantMsg: "IP SANs"},
		{name: "email SAN", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}, emails: []string{"a@b.c"}}), wantCode: codes.InvalidArgument, wantReason: ReasonOtherSANs, wantMsg: "email SANs"},
		{name: "two URI SANs", csr: makeCSR(t, csrSpec{uris: []string{reviewsID, "spiffe://cluster.local/ns/default/sa/other"}}), wantCode: codes.InvalidArgument, wantReason: ReasonOtherSANs, wantMsg: "2 URI SANs"},
		{name: "no URI SAN", csr: makeCSR(t, csrSpec{}), wantCode: codes.InvalidArgument, wantReason: ReasonNoIdentity, wantMsg: "no URI SAN"},
		{name: "not a SPIFFE ID", csr: makeCSR(t, csrSpec{uris: []string{"https://reviews.default"}}), wantCode: codes.InvalidArgument, wantReason: ReasonBadIdentity, wantMsg: "must start with"},
		{name: "another service account", csr: makeCSR(t, csrSpec{uris: []string{"spiffe://cluster.local/ns/default/sa/ratings"}}), wantCode: codes.PermissionDenied, wantReason: ReasonWrongIdentity, wantMsg: "asks for spiffe://cluster.local/ns/default/sa/ratings"},
		{name: "another trust domain", csr: makeCSR(t, csrSpec{uris: []string{"spiffe://evil.org/ns/default/sa/reviews"}}), wantCode: codes.PermissionDenied, wantReason: ReasonWrongIdentity},
		{name: "bad signature", csr: badSig, wantCode: codes.InvalidArgument, wantReason: ReasonBadSignature, wantMsg: "signature"},
		{name: "P-224 key", csr: makeCSR(t, csrSpec{key: p224, uris: []string{reviewsID}}), wantCode: codes.InvalidArgument, wantReason: ReasonUnsupportedKey, wantMsg: "P-224"},
		{name: "not PEM", csr: []byte("hello"), wantCode: codes.InvalidArgument, wantReason: ReasonMalformed, wantMsg: "no PEM block"},
		{name: "a certificate, not a CSR", csr: a.TrustBundlePEM(), wantCode: codes.InvalidArgument, wantReason: ReasonMalformed, wantMsg: "want CERTIFICATE REQUEST"},
		{name: "wrong token", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}}), token: "not-a-token", wantCode: codes.Unauthenticated, wantReason: ReasonBadToken, wantMsg: "unknown bootstrap token"},
		{name: "no token", csr: makeCSR(t, csrSpec{uris: []string{reviewsID}}), token: "-", wantCode: codes.Unauthenticated, wantReason: ReasonNoToken, wantMsg: "no credential"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var before float64
			if tc.wantReason != "" {
				before = metricValue(t, a.metrics.rejected.WithLabelValues(tc.wantReason))
			}
			req := &caapi.Request{CSR: tc.csr, Validity: tc.validity}
			var resp *caapi.Response
			var err error
			switch tc.token {
			case "-":
				out := new(structpb.Struct)
				err = cc.Invoke(ctx, caapi.CreateCertificateMethod, caapi.EncodeRequest(req), out)
			case "":
				resp, err = caapi.CreateCertificate(ctx, cc, token, req)
			default:
				resp, err = caapi.CreateCertificate(ctx, cc, tc.token, req)
			}
			if tc.wantCode != codes.OK {
				s, _ := status.FromError(err)
				if s.Code() != tc.wantCode || !strings.Contains(s.Message(), tc.wantMsg) {
					t.Fatalf("got %v; want code %s and a message containing %q", err, tc.wantCode, tc.wantMsg)
				}
				if got := metricValue(t, a.metrics.rejected.WithLabelValues(tc.wantReason)); got != before+1 {
					t.Errorf("weft_ca_csr_rejections_total{reason=%q} = %v, want %v", tc.wantReason, got, before+1)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := checkLeaf(t, a, resp, reviewsID)
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got < tc.wantTTL || got > tc.wantTTL+tc.wantTTL/10+time.Second {
				t.Errorf("lifetime %s, want %s (plus at most 10%% backdating)", got, tc.wantTTL)
			}
		})
	}
	if got := metricValue(t, a.metrics.issued); got != 3 {
		t.Errorf("weft_ca_leaves_issued_total = %v, want 3", got)
	}
	st := a.Status()
	if len(st.Leaves) != 3 || st.Leaves[0].Instance != "reviews-0.default" || st.Leaves[0].SPIFFEID != reviewsID {
		t.Errorf("Status().Leaves = %+v", st.Leaves)
	}
}

// checkLeaf checks an issued SVID: one URI SAN, no other SAN, usages, and
// a chain that verifies against the trust bundle.
func checkLeaf(t *testing.T, a *Authority, resp *caapi.Response, wantID string) *x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	rest := resp.CertChain
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		t.Fatal("empty chain")
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID {
		t.Errorf("URI SANs %v, want [%s]", leaf.URIs, wantID)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; leaf.KeyUsage != want {
		t.Errorf("key usage %v, want %v", leaf.KeyUsage, want)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ext key usage (-want +got):\n%s", diff)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(resp.TrustBundle) {
		t.Fatal("no certificate in the trust bundle")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify against the bundle: %v", err)
	}
	return leaf
}

// TestRootPersists checks that the self-signed root is written once (key
// mode 0600) and read back on the next start.
func TestRootPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a := newTestCA(t, Options{Dir: dir})
	fi, err := os.Stat(filepath.Join(dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", RootKeyFile, fi.Mode().Perm())
	}
	if a.TrustBundleFile() != filepath.Join(dir, TrustBundleFile) {
		t.Errorf("TrustBundleFile() = %s", a.TrustBundleFile())
	}
	b := newTestCA(t, Options{Dir: dir})
	if diff := cmp.Diff(a.Status().Roots, b.Status().Roots); diff != "" {
		t.Errorf("root changed across restarts (-first +second):\n%s", diff)
	}
	root := a.Status().Roots[0]
	if root.Subject != root.Issuer || time.Until(root.NotAfter) < 9*365*24*time.Hour {
		t.Errorf("root %+v: want self-signed, valid for about 10 years", root)
	}
	// A key without its certificate is reported, never overwritten.
	if err := os.Remove(filepath.Join(dir, RootCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("New with a lone key: %v, want an error saying only one file is there", err)
	}
}

// pki builds a root and an intermediate for plug-in tests.
type pki struct {
	rootCert, interCert *x509.Certificate
	rootKey, interKey   *ecdsa.PrivateKey
}

func newPKI(t *testing.T, interTTL time.Duration) pki {
	t.Helper()
	var p pki
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.interKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corp root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rootT, rootT, p.rootKey.Public(), p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.rootCert, _ = x509.ParseCertificate(der)
	interT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mesh intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(interTTL),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err = x509.CreateCertificate(rand.Reader, interT, p.rootCert, p.interKey.Public(), p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.interCert, _ = x509.ParseCertificate(der)
	return p
}

func (p pki) write(t *testing.T, dir string, key *ecdsa.PrivateKey) {
	t.Helper()
	keyDER, _ := x509.MarshalECPrivateKey(key)
	files := map[string][]byte{
		CACertFile:    encodeCert(p.interCert),
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		RootCertFile:  encodeCert(p.rootCert),
		CertChainFile: append(encodeCert(p.interCert), encodeCert(p.rootCert)...),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPluginCA loads an intermediate from Istio's cacerts layout and
// checks that leaves chain through it to the plug-in root.
func TestPluginCA(t *testing.T) {
	p := newPKI(t, 365*24*time.Hour)
	dir := t.TempDir()
	p.write(t, dir, p.interKey)
	reg := prometheus.NewRegistry()
	a := newTestCA(t, Options{PluginDir: dir, Registerer: reg})
	st := a.Status()
	if st.Mode != "plug-in" || len(st.Roots) != 1 || st.Roots[0].Subject != "CN=corp root" || len(st.Intermediates) != 1 || st.Intermediates[0].Subject != "CN=mesh intermediate" {
		t.Fatalf("Status() = %+v", st)
	}
	if got := metricValue(t, a.metrics.expiry.WithLabelValues("intermediate", "CN=mesh intermediate", "2")); got != float64(p.interCert.NotAfter.Unix()) {
		t.Errorf("intermediate expiry gauge = %v, want %d", got, p.interCert.NotAfter.Unix())
	}
	tokens := NewTokens()
	id, _ := spiffeid.Parse(reviewsID)
	tok, _ := tokens.Issue("reviews-0.default", id)
	cc := serve(t, a, tokens) // the TLS certificate chains through the intermediate too
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := caapi.CreateCertificate(ctx, cc, tok, &caapi.Request{CSR: makeCSR(t, csrSpec{uris: []string{reviewsID}})})
	if err != nil {
		t.Fatal(err)
	}
	leaf := checkLeaf(t, a, resp, reviewsID)
	if leaf.Issuer.CommonName != "mesh intermediate" {
		t.Errorf("leaf issuer %s, want the intermediate", leaf.Issuer)
	}
	if strings.Count(string(resp.CertChain), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("chain has %d certificates, want leaf + intermediate", strings.Count(string(resp.CertChain), "BEGIN CERTIFICATE"))
	}

	t.Run("key of another certificate", func(t *testing.T) {
		dir := t.TempDir()
		p.write(t, dir, p.rootKey)
		if _, err := New(Options{PluginDir: dir, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "does not hold the key") {
			t.Errorf("New = %v, want a key mismatch error", err)
		}
	})
	t.Run("chain to another root", func(t *testing.T) {
		other := newPKI(t, time.Hour)
		dir := t.TempDir()
		p.write(t, dir, p.interKey)
		if err := os.WriteFile(filepath.Join(dir, RootCertFile), encodeCert(other.rootCert), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(Options{PluginDir: dir, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "does not chain") {
			t.Errorf("New = %v, want a chain error", err)
		}
	})
}

// TestExpiryWarning checks the log line for an intermediate that expires
// within 30 days.
func TestExpiryWarning(t *testing.T) {
	p := newPKI(t, 10*24*time.Hour)
	dir := t.TempDir()
	p.write(t, dir, p.interKey)
	var buf strings.Builder
	newTestCA(t, Options{PluginDir: dir, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &buf}, nil))})
	out := buf.String()
	if !strings.Contains(out, "CA intermediate certificate expires soon") || !strings.Contains(out, "what_to_do") {
		t.Errorf("no expiry warning in the log:\n%s", out)
	}
	if strings.Contains(out, "CA root certificate expires soon") {
		t.Errorf("warned about a root that is far from expiry:\n%s", out)
	}
}

type syncWriter struct{ w io.Writer }

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

// FuzzSign feeds arbitrary bytes as the CSR: Sign must never panic, and
// whatever it accepts carries exactly the caller's identity.
func FuzzSign(f *testing.F) {
	f.Add(makeCSR(f, csrSpec{uris: []string{reviewsID}}))
	f.Add(makeCSR(f, csrSpec{uris: []string{reviewsID}, dns: []string{"x"}}))
	f.Add(makeCSR(f, csrSpec{uris: []string{"spiffe://cluster.local/ns/default/sa/other"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	a, err := New(Options{Dir: f.TempDir(), Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	id, _ := spiffeid.Parse(reviewsID)
	caller := Caller{ID: id, Instance: "reviews-0.default"}
	f.Fuzz(func(t *testing.T, csr []byte) {
		iss, err := a.Sign(caller, csr, time.Minute)
		if err != nil {
			if _, ok := err.(*RejectError); !ok {
				t.Fatalf("Sign error is not a rejection: %v", err)
			}
			return
		}
		got, err := spiffeid.FromCertificate(iss.Leaf)
		if err != nil || got != id {
			t.Fatalf("issued %v (%v), want %v", got, err, id)
		}
		if len(iss.Leaf.DNSNames)+len(iss.Leaf.IPAddresses)+len(iss.Leaf.EmailAddresses) != 0 || iss.Leaf.IsCA {
			t.Fatalf("issued a certificate with other SANs or CA:TRUE")
		}
	})
}
