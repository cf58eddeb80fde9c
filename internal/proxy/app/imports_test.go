package app_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/version"
)

// TestProxyImportGraph keeps the proxy lean: no Istio or Kubernetes types
// and no control-plane code in weft-proxy.
func TestProxyImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "list", "-tags", version.BuildTags, "-deps", "weft.dev/weft/cmd/weft-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"istio.io/", "k8s.io/", "sigs.k8s.io/",
		// Reflection by method name (templates) makes the linker keep
		// every exported method of every type: megabytes of resident
		// binary (internal/version.BuildTags).
		"text/template", "html/template", "golang.org/x/net/trace"}
	for _, p := range []string{"model", "config", "validate", "xdstranslate", "xdsserver", "controlplane", "local", "cli", "ca"} {
		forbidden = append(forbidden, "weft.dev/weft/internal/"+p)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/")) {
				t.Errorf("weft-proxy imports %s (forbidden: %s)", dep, f)
			}
		}
	}
	if !strings.Contains(string(out), "weft.dev/weft/internal/proxy/app") {
		t.Errorf("go list output does not look right:\n%s", out)
	}
}

// The sidecar's /config_dump prints the xDS resources it holds, nested
// extension configs included, which needs their types linked: every
// go-control-plane package the control plane's translation uses must be
// in the sidecar too.
func TestProxyLinksEveryTypeTheControlPlaneSends(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	deps := func(pkg string) map[string]bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goBin, "list", "-tags", version.BuildTags, "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		m := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			if strings.HasPrefix(d, "github.com/envoyproxy/go-control-plane/envoy/") {
				m[d] = true
			}
		}
		return m
	}
	proxy := deps("weft.dev/weft/cmd/weft-proxy")
	sent := deps("weft.dev/weft/internal/xdstranslate")
	if len(sent) == 0 {
		t.Fatal("go list found no go-control-plane packages under xdstranslate")
	}
	for p := range sent {
		if !proxy[p] {
			t.Errorf("the control plane sends types of %s, which weft-proxy does not link (add it to internal/proxy/admin's imports)", p)
		}
	}
}
