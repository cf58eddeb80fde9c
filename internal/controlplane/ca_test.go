package controlplane

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/spiffeid"
)

// TestCAServesSidecars runs the control plane with its CA on a loopback
// port and has the sidecar's identity client get a certificate with a
// bootstrap token; the admin API and metrics show it.
func TestCAServesSidecars(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(t.TempDir(), "ca")
	cp, err := New(Options{
		ConfigDir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", CAAddr: "127.0.0.1:0",
		CA:     CAOptions{Dir: caDir, TrustDomain: "example.org", LeafTTL: 10 * time.Minute},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	}()

	id := spiffeid.ID{TrustDomain: "example.org", Namespace: "default", ServiceAccount: "reviews"}
	tok, err := cp.CATokens().Issue("reviews-0.default", id)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := identity.New(identity.Options{Addr: cp.CAAddr(), RootFile: filepath.Join(caDir, ca.RootCertFile), TokenFile: tokFile, ID: id,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(cctx) }()
	defer func() { ccancel(); <-cdone }()
	select {
	case <-c.Ready():
	case <-ctx.Done():
		t.Fatal("no certificate from the control plane's CA")
	}

	var st ca.Status
	getJSON(t, "http://"+cp.AdminAddr()+"/api/v1/ca", &st)
	if st.TrustDomain != "example.org" || len(st.Roots) != 1 || len(st.Leaves) != 1 || st.Leaves[0].Instance != "reviews-0.default" ||
		st.Leaves[0].SPIFFEID != id.String() || st.Leaves[0].Serial != c.Current().Leaf.SerialNumber.Text(16) {
		t.Errorf("/api/v1/ca = %+v", st)
	}
	metrics := getText(t, "http://"+cp.AdminAddr()+"/metrics")
	for _, want := range []string{"weft_ca_leaves_issued_total 1", `weft_ca_cert_expiry_timestamp_seconds{role="root"`, `weft_ca_csr_rejections_total{reason="wrong_identity"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestCAOff checks that a control plane without a CA folder serves no CA
// and says so on the admin API.
func TestCAOff(t *testing.T) {
	cp := startCP(t, t.TempDir())
	if cp.CA() != nil || cp.CAAddr() != "" {
		t.Fatal("CA on without a folder")
	}
}
