package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/xdsmeta"
)

// TestProxyIdentityBeforeReady starts a sidecar with --ca-addr while the
// CA is down: it stays unready (and asks for no config) until the CA
// comes up and issues its certificate, which /certs then shows.
func TestProxyIdentityBeforeReady(t *testing.T) {
	a, err := ca.New(ca.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tokens := ca.NewTokens()
	id := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "bookinfo-reviews"}
	tok, err := tokens.Issue("reviews-0.default", id)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "reviews-0.default.token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	caAddr := ln.Addr().String()
	ln.Close() // the CA is down at first

	cp := proxytest.StartControlPlane(t)
	logs := &proxytest.SyncBuffer{}
	nodeID := xdsmeta.NodeID("sidecar", "127.0.0.1", "reviews-0", "default")
	p, err := app.New(app.Config{
		XDSAddr: cp.Addr, Name: "reviews-0", Namespace: "default", ServiceAccount: "bookinfo-reviews", NodeID: nodeID,
		AdminAddr: "127.0.0.1:0", XDSBackoffBase: 20 * time.Millisecond, XDSBackoffMax: 200 * time.Millisecond,
		CAAddr: caAddr, CARootFile: a.TrustBundleFile(), BootstrapTokenFile: tokFile,
	}, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	}()
	cp.Set(t, nodeID,
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
		proxytest.RouteConfig("80", proxytest.VirtualHost("x", []string{"*"}, proxytest.PrefixRoute("/", "c"))),
		proxytest.StaticCluster("c", "127.0.0.1:1"),
	)
	proxytest.Eventually(t, 10*time.Second, "a logged retry", func() bool { return strings.Contains(logs.String(), "cannot get a certificate yet") })
	code, body := adminGetCode(t, p.AdminAddr(), "/certs")
	if code != http.StatusServiceUnavailable || p.Ready() {
		t.Fatalf("before the CA is up: /certs = %d %s, ready = %v; want 503 and not ready", code, body, p.Ready())
	}

	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig())))
	caapi.Register(srv, ca.NewService(a, tokens))
	ln, err = net.Listen("tcp", caAddr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	select {
	case <-p.ReadyCh():
	case <-ctx.Done():
		t.Fatalf("proxy not ready; logs:\n%s", logs.String())
	}
	code, body = adminGetCode(t, p.AdminAddr(), "/certs")
	if code != http.StatusOK {
		t.Fatalf("/certs = %d %s", code, body)
	}
	var info identity.Info
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	leaf := p.Identity().Current().Leaf
	if info.SPIFFEID != "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" || info.Serial != leaf.SerialNumber.Text(16) ||
		!info.NotAfter.Equal(leaf.NotAfter) || !strings.Contains(info.Issuer, "Weft root CA") || len(info.TrustBundle) != 1 {
		t.Errorf("/certs = %s", body)
	}
	if strings.Contains(body, "PRIVATE") || strings.Contains(body, "key") {
		t.Errorf("/certs mentions a key:\n%s", body)
	}
}

func adminGetCode(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestParseFlagsIdentity(t *testing.T) {
	if _, err := app.ParseFlags([]string{"--ca-addr", "127.0.0.1:15012"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--ca-root-file") {
		t.Errorf("--ca-addr alone: %v, want an error naming --ca-root-file", err)
	}
	cfg, err := app.ParseFlags([]string{"--ca-addr", "127.0.0.1:15012", "--ca-root-file", "r.pem", "--bootstrap-token-file", "t", "--trust-domain", "example.org"}, io.Discard)
	if err != nil || cfg.CAAddr != "127.0.0.1:15012" || cfg.TrustDomain != "example.org" || cfg.BootstrapTokenFile != "t" || cfg.CARootFile != "r.pem" {
		t.Errorf("ParseFlags = %+v, %v", cfg, err)
	}
}

// TestParseFlagsIdentitySource covers --identity-source and the flags
// each source needs or refuses.
func TestParseFlagsIdentitySource(t *testing.T) {
	ca := []string{"--ca-addr", "127.0.0.1:15012", "--ca-root-file", "r.pem"}
	for _, tc := range []struct {
		name string
		args []string
		env  string // SPIFFE_ENDPOINT_SOCKET
		// wantSource and wantSocket when accepted; wantErr words when not.
		wantSource, wantSocket string
		wantErr                string
	}{
		{name: "none", args: nil, wantSource: ""},
		{name: "ca by default with --ca-addr", args: append(ca, "--bootstrap-token-file", "t"), wantSource: "ca"},
		{name: "spiffe by --spiffe-socket", args: []string{"--spiffe-socket", "unix:///run/spire/agent.sock"}, wantSource: "spiffe", wantSocket: "unix:///run/spire/agent.sock"},
		{name: "spiffe from the environment", args: []string{"--identity-source", "spiffe"}, env: "unix:///tmp/agent.sock", wantSource: "spiffe", wantSocket: "unix:///tmp/agent.sock"},
		{name: "the environment alone turns nothing on", args: nil, env: "unix:///tmp/agent.sock", wantSource: ""},
		{name: "spiffe with xDS over mTLS", args: append([]string{"--identity-source=spiffe", "--spiffe-socket", "unix:///a.sock"}, ca...), wantSource: "spiffe", wantSocket: "unix:///a.sock"},
		{name: "spiffe without a socket", args: []string{"--identity-source", "spiffe"}, wantErr: "needs --spiffe-socket (or SPIFFE_ENDPOINT_SOCKET)"},
		{name: "spiffe socket not a URI", args: []string{"--spiffe-socket", "/run/spire/agent.sock"}, wantErr: `--spiffe-socket "/run/spire/agent.sock"`},
		{name: "spiffe with a token", args: []string{"--spiffe-socket", "unix:///a.sock", "--bootstrap-token-file", "t"}, wantErr: "--bootstrap-token-file is for --identity-source=ca"},
		{name: "spiffe with --ca-addr but no roots", args: []string{"--spiffe-socket", "unix:///a.sock", "--ca-addr", "127.0.0.1:15012"}, wantErr: "--ca-root-file"},
		{name: "ca with a socket", args: append([]string{"--identity-source", "ca", "--spiffe-socket", "unix:///a.sock", "--bootstrap-token-file", "t"}, ca...), wantErr: "--spiffe-socket is for --identity-source=spiffe"},
		{name: "ca without a token", args: append([]string{"--identity-source", "ca"}, ca...), wantErr: "--bootstrap-token-file"},
		{name: "unknown source", args: []string{"--identity-source", "vault"}, wantErr: `--identity-source "vault": want ca or spiffe`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SPIFFE_ENDPOINT_SOCKET", tc.env)
			cfg, err := app.ParseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseFlags(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFlags(%q): %v", tc.args, err)
			}
			if cfg.IdentitySource != tc.wantSource {
				t.Errorf("identity source %q, want %q", cfg.IdentitySource, tc.wantSource)
			}
			if cfg.SPIFFESocket != tc.wantSocket {
				t.Errorf("socket %q, want %q", cfg.SPIFFESocket, tc.wantSocket)
			}
		})
	}
}
