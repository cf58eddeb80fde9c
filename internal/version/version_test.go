package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakefileMatches keeps the Makefile's TAGS and BUILDENV, which its
// builds (and bench/pack.sh's) use, equal to BuildTags and BuildEnv, which
// the tests' and the benchmark's builds use.
func TestMakefileMatches(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"TAGS": BuildTags, "BUILDENV": BuildEnv} {
		m := regexp.MustCompile(`(?m)^` + name + `\s*:=\s*(.*)$`).FindSubmatch(mk)
		if m == nil {
			t.Errorf("Makefile sets no %s", name)
			continue
		}
		if got := strings.TrimSpace(string(m[1])); got != want {
			t.Errorf("Makefile: %s := %s, internal/version says %q", name, got, want)
		}
	}
}

// TestCheckBinary builds a small program twice, with and without the
// build's settings, and checks that CheckBinary tells them apart.
func TestCheckBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	dir := t.TempDir()
	build := func(name string, env []string, args ...string) string {
		out := filepath.Join(dir, name)
		cmd := exec.Command(goBin, append(append([]string{"build", "-o", out}, args...), "weft.dev/weft/internal/version/testdata/hello")...)
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		return out
	}
	if err := CheckBinary(build("release", []string{BuildEnv}, "-tags", BuildTags)); err != nil {
		t.Errorf("built with the release settings: %v", err)
	}
	if err := CheckBinary(build("cgo", []string{"CGO_ENABLED=1"}, "-tags", BuildTags)); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED") {
		t.Errorf("built with cgo: CheckBinary = %v, want an error naming CGO_ENABLED", err)
	}
	if err := CheckBinary(build("notags", []string{BuildEnv})); err == nil || !strings.Contains(err.Error(), "-tags") {
		t.Errorf("built without tags: CheckBinary = %v, want an error naming -tags", err)
	}
}
