// Package e2e runs the real weft and weft-proxy binaries: `weft up` with
// the demo and with third-party apps, driven through real sockets and the
// CLI as a user would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"weft.dev/weft/internal/local"
	"weft.dev/weft/internal/version"
)

// binDir holds the binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "weft-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, pkg := range []string{"weft", "weft-proxy"} {
		cmd := exec.Command("go", "build", "-tags", version.BuildTags, "-o", filepath.Join(dir, pkg), "weft.dev/weft/cmd/"+pkg)
		cmd.Env = append(os.Environ(), version.BuildEnv)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			os.Exit(1)
		}
		// The binaries under test are built as the Makefile builds
		// them: static, with the release tags.
		if err := version.CheckBinary(filepath.Join(dir, pkg)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// Third-party apps run for real, built from the tools module.
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin", "github.com/stefanprodan/podinfo/cmd/podinfo")
	cmd.Dir = "../../tools"
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building third-party apps:", err)
		os.Exit(1)
	}
	// Jaeger (tracing_test.go) has a module of its own, tools/jaeger: its
	// dependencies conflict with other tools'. About 3.5 min cold.
	cmd = exec.Command("go", "build", "-o", dir+"/", "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = "../../tools/jaeger"
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building Jaeger:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that is free now, chosen below the
// kernel's ephemeral range (32768 and up by default): a port the test
// hands to a process that binds it later (weft up's ingress, Prometheus)
// must not be one that weft up, or any other process binding port 0
// meanwhile, can be given.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

// meshRun is one `weft up` under test.
type meshRun struct {
	t        *testing.T
	cmd      *exec.Cmd
	stateDir string
	admin    string
	ingress  int
	out      *syncBuffer
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// copyDemo copies the demo config into a fresh folder with the ingress on
// a free port, so the test does not depend on 8080 being free.
func copyDemo(t *testing.T, ingress int) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../examples/demo/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("demo config not found: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(data), "number: 8080", fmt.Sprintf("number: %d", ingress))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startMesh runs `weft up -f dir` and waits until the admin API answers.
func startMesh(t *testing.T, dir string, ingress int, extra ...string) *meshRun {
	t.Helper()
	return startMeshIn(t, t.TempDir(), dir, ingress, extra...)
}

// startMeshIn is startMesh with the state folder given.
func startMeshIn(t *testing.T, state, dir string, ingress int, extra ...string) *meshRun {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end tests do not run with -short")
	}
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"up", "-f", dir, "--state-dir", state, "--admin", admin,
		"--xds-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, extra...)
	cmd := exec.Command(filepath.Join(binDir, "weft"), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &meshRun{t: t, cmd: cmd, stateDir: state, admin: admin, ingress: ingress, out: out, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("weft up output:\n%s", out.String())
		}
	})
	waitFor(t, 30*time.Second, "weft up's admin API", func() error {
		select {
		case err := <-m.done:
			m.done <- err
			return fmt.Errorf("weft up exited: %v", err)
		default:
		}
		_, err := m.statusErr()
		return err
	})
	return m
}

// stop sends SIGTERM to weft up (only weft up: it must stop its children
// itself) and waits for it.
func (m *meshRun) stop() error {
	if m.cmd.ProcessState != nil {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		return err
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		return fmt.Errorf("weft up did not stop within 45s")
	}
}

// weft runs the CLI against this mesh.
// apply applies yaml with weft apply, failing the test if it is refused;
// restore, when set, is applied the same way when the test ends.
func (m *meshRun) apply(t *testing.T, yaml, restore string) {
	t.Helper()
	if out, err := m.weft(yaml, "apply", "-f", "-"); err != nil {
		t.Fatalf("weft apply: %v\n%s", err, out)
	}
	if restore != "" {
		t.Cleanup(func() {
			if out, err := m.weft(restore, "apply", "-f", "-"); err != nil {
				t.Errorf("weft apply of the config to restore: %v\n%s", err, out)
			}
		})
	}
}

func (m *meshRun) weft(stdin string, args ...string) (string, error) {
	args = append([]string{"--admin", m.admin, "--state-dir", m.stateDir}, args...)
	cmd := exec.Command(filepath.Join(binDir, "weft"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func (m *meshRun) status(t *testing.T) local.MeshStatus {
	t.Helper()
	st, err := m.statusErr()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statusErr runs `weft status -o json`.
func (m *meshRun) statusErr() (local.MeshStatus, error) {
	var st local.MeshStatus
	out, err := m.weft("", "status", "-o", "json")
	if err != nil {
		return st, fmt.Errorf("weft status: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("weft status -o json: %v\n%s", err, out)
	}
	return st, nil
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
}

var client = &http.Client{Timeout: 10 * time.Second}

// get fetches a URL with optional headers and returns status and body.
func get(url string, headers ...string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// processesOf lists live processes whose executable is under dir.
func processesOf(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !strings.HasPrefix(exe, dir) {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			continue // a zombie is already gone; its parent just has not reaped it
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}
