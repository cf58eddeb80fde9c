package identity_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/spiffeid"
)

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type caServer struct {
	ca       *ca.Authority
	tokens   *ca.Tokens
	addr     string
	srv      *grpc.Server
	rootFile string
}

// startCA runs a real CA on a loopback port (addr "" picks one).
func startCA(t *testing.T, leafTTL time.Duration, addr string) *caServer {
	t.Helper()
	a, err := ca.New(ca.Options{Dir: t.TempDir(), LeafTTL: leafTTL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s := &caServer{ca: a, tokens: ca.NewTokens(), rootFile: a.TrustBundleFile()}
	s.serve(t, addr)
	return s
}

func (s *caServer) serve(t *testing.T, addr string) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(s.ca.ServerTLSConfig())))
	caapi.Register(s.srv, ca.NewService(s.ca, s.tokens))
	go s.srv.Serve(ln)
	t.Cleanup(s.srv.Stop)
}

// client makes an identity client for id with a token file holding a
// token the CA issued for it.
func (s *caServer) client(t *testing.T, id spiffeid.ID, log io.Writer) *identity.Client {
	t.Helper()
	tok, err := s.tokens.Issue("reviews-0.default", id)
	if err != nil {
		t.Fatal(err)
	}
	return s.clientWithToken(t, id, tok, log)
}

func (s *caServer) clientWithToken(t *testing.T, id spiffeid.ID, tok string, log io.Writer) *identity.Client {
	t.Helper()
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = io.Discard
	}
	c, err := identity.New(identity.Options{
		Addr: s.addr, RootFile: s.rootFile, TokenFile: tokFile, ID: id,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func run(t *testing.T, c *identity.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func waitReady(t *testing.T, c *identity.Client, d time.Duration) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(d):
		t.Fatalf("no certificate within %s", d)
	}
}

// poll waits for cond, failing after d.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var reviews = spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "reviews"}

// TestClientGetsSVID gets a leaf from a real CA over TLS and checks its
// identity and chain.
func TestClientGetsSVID(t *testing.T) {
	s := startCA(t, time.Hour, "")
	c := s.client(t, reviews, nil)
	run(t, c)
	waitReady(t, c, 10*time.Second)
	svid := c.Current()
	if len(svid.Leaf.URIs) != 1 || svid.Leaf.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("URI SANs %v", svid.Leaf.URIs)
	}
	if _, err := svid.Leaf.Verify(x509.VerifyOptions{Roots: c.TrustBundle(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("leaf does not verify against the bundle: %v", err)
	}
	life := svid.Leaf.NotAfter.Sub(svid.Leaf.NotBefore)
	if at := svid.RenewAt.Sub(svid.Leaf.NotBefore); at < life/2 || at > life*8/10 {
		t.Errorf("renewal planned at %s of a %s lifetime, want between 50 and 80 %%", at, life)
	}
	info, ok := c.Info()
	if !ok || info.SPIFFEID != reviews.String() || info.Serial == "" || len(info.TrustBundle) != 1 {
		t.Errorf("Info() = %+v, %v", info, ok)
	}
	if got := s.ca.Status().Leaves; len(got) != 1 || got[0].SPIFFEID != reviews.String() {
		t.Errorf("CA's leaves: %+v", got)
	}
}

// TestRenewalIsHitless renews a leaf with a lifetime of a few seconds and
// checks that the renewal happens between 50 and 80 % of it, that a TLS
// server using the getter serves the new leaf to new connections, and
// that a connection made before keeps working.
func TestRenewalIsHitless(t *testing.T) {
	const ttl = 5 * time.Second
	s := startCA(t, ttl, "")
	c := s.client(t, reviews, nil)
	run(t, c)
	waitReady(t, c, 10*time.Second)
	first := c.Current()
	addr := echoServer(t, &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS13})

	dial := func() (*tls.Conn, string) {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{
			RootCAs: first.Bundle, MinVersion: tls.VersionTLS13,
			// SVIDs carry no DNS name: check the SPIFFE ID instead.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				inter := x509.NewCertPool()
				for _, ic := range cs.PeerCertificates[1:] {
					inter.AddCert(ic)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: first.Bundle, Intermediates: inter})
				return err
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return conn, conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old, oldSerial := dial()
	defer old.Close()
	if oldSerial != first.Leaf.SerialNumber.String() {
		t.Fatalf("server presented serial %s, want %s", oldSerial, first.Leaf.SerialNumber)
	}
	echo(t, old, "before")

	poll(t, 2*ttl, "a renewed certificate", func() bool { return c.Renewals() >= 2 })
	renewedAt := time.Now()
	second := c.Current()
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	lo, hi := first.Leaf.NotBefore.Add(life/2), first.Leaf.NotBefore.Add(life*8/10)
	if first.RenewAt.Before(lo) || first.RenewAt.After(hi) {
		t.Errorf("renewal planned at %s, want between %s and %s", first.RenewAt, lo, hi)
	}
	if renewedAt.Before(lo) || renewedAt.After(first.Leaf.NotAfter) {
		t.Errorf("renewed at %s, want after 50 %% (%s) and before expiry (%s)", renewedAt, lo, first.Leaf.NotAfter)
	}
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("renewal kept the serial number")
	}
	if second.Certificate.PrivateKey == first.Certificate.PrivateKey {
		t.Error("renewal kept the key")
	}

	fresh, freshSerial := dial()
	defer fresh.Close()
	if freshSerial != second.Leaf.SerialNumber.String() {
		t.Errorf("new connection got serial %s, want the renewed %s", freshSerial, second.Leaf.SerialNumber)
	}
	echo(t, fresh, "new")
	echo(t, old, "after") // the connection made before the renewal is still up
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != oldSerial {
		t.Errorf("old connection's certificate changed to %s", got)
	}
}

// TestCAUnreachable starts the client before the CA (it retries), then
// stops the CA and checks that the log says the leaf is near expiry and
// cannot be renewed.
func TestCAUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a, err := ca.New(ca.Options{Dir: t.TempDir(), LeafTTL: 3 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s := &caServer{ca: a, tokens: ca.NewTokens(), rootFile: a.TrustBundleFile(), addr: addr}
	var logs logBuffer
	c := s.client(t, reviews, &logs)
	run(t, c)
	poll(t, 10*time.Second, "a retry logged", func() bool { return strings.Contains(logs.String(), "cannot get a certificate yet") })
	s.serve(t, addr)
	waitReady(t, c, 10*time.Second)
	s.srv.Stop()
	poll(t, 10*time.Second, "the near-expiry error", func() bool {
		return strings.Contains(logs.String(), "certificate expires soon and cannot be renewed")
	})
}

// TestWrongToken checks that a client with a token for nobody gets no
// certificate and logs the CA's reason.
func TestWrongToken(t *testing.T) {
	s := startCA(t, time.Hour, "")
	var logs logBuffer
	c := s.clientWithToken(t, reviews, "made-up", &logs)
	run(t, c)
	poll(t, 10*time.Second, "the refusal logged", func() bool { return strings.Contains(logs.String(), "unknown bootstrap token") })
	if c.Current() != nil {
		t.Error("got a certificate with a made-up token")
	}
	if _, err := c.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before any certificate: no error")
	}
}

func TestRenewAt(t *testing.T) {
	nb := time.Unix(1000, 0)
	na := nb.Add(100 * time.Second)
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{0, 50 * time.Second}, {0.5, 65 * time.Second}, {0.999999, 80 * time.Second}} {
		got := identity.RenewAt(nb, na, tc.u).Sub(nb).Round(time.Second)
		if got != tc.want {
			t.Errorf("RenewAt(u=%v) = +%s, want +%s", tc.u, got, tc.want)
		}
	}
}

// echoServer serves TLS on loopback and echoes lines back.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(t *testing.T, conn *tls.Conn, msg string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		t.Fatalf("writing %q: %v", msg, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("echo of %q: %q, %v", msg, line, err)
	}
}

// TestSPIFFEControlPlaneTLS: with the SPIFFE Workload API as source, the
// control plane's certificate (from the built-in CA, not SPIRE) is
// checked against the root file, read again at every handshake, so a
// root the CA writes there later (a root rotation) is trusted without a
// restart; a certificate from another root is refused.
func TestSPIFFEControlPlaneTLS(t *testing.T) {
	first, second := startCA(t, time.Hour, ""), startCA(t, time.Hour, "")
	rootFile := filepath.Join(t.TempDir(), "trust-bundle.pem")
	if err := os.WriteFile(rootFile, first.ca.TrustBundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := identity.New(identity.Options{Source: identity.SourceSPIFFE, SPIFFESocket: "unix:///run/spire/agent.sock", RootFile: rootFile,
		ID: spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "reviews"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(addr string) error {
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, c.ControlPlaneTLS(false))
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(first.addr); err != nil {
		t.Errorf("control plane with the root file's root: %v", err)
	}
	if err := dial(second.addr); err == nil || !strings.Contains(err.Error(), "the control plane's certificate") {
		t.Errorf("control plane of another root: %v, want refused naming its certificate", err)
	}
	if err := os.WriteFile(rootFile, append(first.ca.TrustBundlePEM(), second.ca.TrustBundlePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := dial(second.addr); err != nil {
		t.Errorf("control plane of a root added to the root file: %v", err)
	}
}
