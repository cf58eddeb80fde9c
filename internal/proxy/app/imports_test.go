package app_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/version"
)

// goListDeps lists pkg and its dependencies as the build links them (the
// release build tags and environment); it skips with -short or without the go tool.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "list", "-tags", version.BuildTags, "-deps", pkg)
	cmd.Env = append(os.Environ(), version.BuildEnv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, pkg) {
		t.Fatalf("go list %s output does not look right:\n%s", pkg, out)
	}
	return deps
}

// TestProxyImportGraph keeps the proxy lean: no Istio or Kubernetes types,
// no CEL and no control-plane code in weft-proxy.
func TestProxyImportGraph(t *testing.T) {
	deps := goListDeps(t, "weft.dev/weft/cmd/weft-proxy")
	forbidden := []string{"istio.io/", "k8s.io/", "sigs.k8s.io/",
		// Reflection by method name (templates) makes the linker keep
		// every exported method of every type: megabytes of resident
		// binary (internal/version.BuildTags).
		"text/template", "html/template", "golang.org/x/net/trace",
		// Access log filters reach the sidecar translated; it evaluates
		// no CEL (internal/logfilter).
		"cel.dev/cel-go/"}
	for _, p := range []string{"model", "config", "validate", "xdstranslate", "xdsserver", "controlplane", "local", "cli", "ca", "logfilter"} {
		forbidden = append(forbidden, "weft.dev/weft/internal/"+p)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/")) {
				t.Errorf("weft-proxy imports %s (forbidden: %s)", dep, f)
			}
		}
	}
	if !slices.Contains(deps, "weft.dev/weft/internal/proxy/app") {
		t.Errorf("go list output does not look right: %v", deps)
	}
}

// The sidecar's /config_dump prints the xDS resources it holds, nested
// extension configs included, which needs their types linked: every
// go-control-plane package the control plane's translation uses must be
// in the sidecar too.
func TestProxyLinksEveryTypeTheControlPlaneSends(t *testing.T) {
	const gcp = "github.com/envoyproxy/go-control-plane/envoy/"
	proxy := goListDeps(t, "weft.dev/weft/cmd/weft-proxy")
	sent := 0
	for _, p := range goListDeps(t, "weft.dev/weft/internal/xdstranslate") {
		if !strings.HasPrefix(p, gcp) {
			continue
		}
		sent++
		if !slices.Contains(proxy, p) {
			t.Errorf("the control plane sends types of %s, which weft-proxy does not link (add it to internal/proxy/admin's imports)", p)
		}
	}
	if sent == 0 {
		t.Fatal("go list found no go-control-plane packages under xdstranslate")
	}
}
