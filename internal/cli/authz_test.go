package cli

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/examples/demo"
	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/model"
)

// startDemoCP runs a control plane on the demo's config with one instance
// of each demo workload and the ingress gateway.
func startDemoCP(t *testing.T) *controlplane.Server {
	t.Helper()
	dir := t.TempDir()
	if err := fs.WalkDir(demo.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := demo.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Options{ConfigDir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("control plane did not stop")
		}
	})
	select {
	case <-cp.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("control plane not ready")
	}
	inst := func(name, workload, service, sa string, labels map[string]string) *model.Instance {
		return &model.Instance{Name: name, Namespace: "default", Workload: workload, Service: service, ServiceAccount: sa, Labels: labels,
			Address: "127.0.0.1", Ports: []model.InstancePort{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP, AppPort: 1, InboundPort: 2}}}
	}
	v := cp.Snapshot().Version
	cp.Instances().Set(
		inst("productpage-v1-0", "productpage-v1", "productpage", "productpage", map[string]string{"app": "productpage", "version": "v1"}),
		inst("details-v1-0", "details-v1", "details", "details", map[string]string{"app": "details", "version": "v1"}),
		inst("reviews-v1-0", "reviews-v1", "reviews", "reviews", map[string]string{"app": "reviews", "version": "v1"}),
		inst("reviews-v2-0", "reviews-v2", "reviews", "reviews", map[string]string{"app": "reviews", "version": "v2"}),
		inst("ratings-v1-0", "ratings-v1", "ratings", "ratings", map[string]string{"app": "ratings", "version": "v1"}),
	)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := cp.WaitNewer(wctx, v); err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestAuthzCheckCommand runs `weft authz check` against a running control
// plane with the demo's policies.
func TestAuthzCheckCommand(t *testing.T) {
	cp := startDemoCP(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
		code int
	}{
		{name: "ratings may not call details", args: []string{"--from", "ratings", "--to", "details"},
			want: []string{"DENY\n", "spiffe://cluster.local/ns/default/sa/ratings", "details.default.svc.cluster.local", "details-v1", "no rule of theirs matched"}},
		{name: "productpage may call reviews, every version", args: []string{"--from", "productpage", "--to", "reviews", "--path", "/reviews/0"},
			want: []string{"ALLOW\n", "reviews-v1", "reviews-v2", "default/reviews-callers", "allowed by ALLOW policy"}},
		{name: "reviews may call ratings", args: []string{"--from", "reviews-v2", "--to", "ratings"}, want: []string{"ALLOW\n", "default/ratings-callers"}},
		{name: "the gateway may call productpage", args: []string{"--from", "spiffe://cluster.local/ns/default/sa/ingressgateway", "--to", "productpage"}, want: []string{"ALLOW\n"}},
		{name: "no sidecar: STRICT refuses", args: []string{"--from", "none", "--to", "productpage"}, want: []string{"DENY\n", "only mTLS"}},
		{name: "SPIFFE ID source", args: []string{"--from", "spiffe://cluster.local/ns/default/sa/productpage", "--to", "details", "-o", "json"},
			want: []string{`"decision": "ALLOW"`, `"policy": "default/details-callers"`, `"rule": "0"`}},
		{name: "a token where no RequestAuthentication applies", args: []string{"--from", "productpage", "--to", "details", "--request-principal", "https://idp.bookinfo.example/demo-user", "--claim", "groups=shoppers"},
			want: []string{"ALLOW\n", "with a JWT for https://idp.bookinfo.example/demo-user", "note (details-v1): no RequestAuthentication applies"}},
		{name: "a claim needs a request principal", args: []string{"--from", "productpage", "--to", "details", "--claim", "groups=shoppers"},
			want: []string{"--claim needs --request-principal"}, code: 1},
		{name: "a request principal needs an issuer and a subject", args: []string{"--from", "productpage", "--to", "details", "--request-principal", "alice"},
			want: []string{"want ISS/SUB"}, code: 1},
		{name: "unknown source", args: []string{"--from", "nobody", "--to", "details"}, want: []string{"no workload, service or instance"}, code: 1},
		{name: "unknown service", args: []string{"--from", "ratings", "--to", "nothing"}, want: []string{"no service of that name"}, code: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := Main(ctx, append([]string{"--admin", cp.AdminAddr(), "authz", "check"}, tc.args...), &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			all := out.String() + errOut.String()
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}
