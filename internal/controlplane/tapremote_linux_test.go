package controlplane

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
)

// Tap must answer loopback callers only, wherever the admin API is bound.
// A caller from another address needs a second address, so the test runs
// its scenario in a network namespace of its own (root): there, lo is up
// and also holds remoteIP, a documentation address nothing else uses, and
// nothing leaves the namespace.
const (
	tapRemoteHelperEnv = "WEFT_TAP_REMOTE_HELPER"
	remoteIP           = "192.0.2.10"
)

func TestTapRefusesRemoteCallers(t *testing.T) {
	if os.Getenv(tapRemoteHelperEnv) == "1" {
		tapRemoteScenario(t)
		return
	}
	if testing.Short() {
		t.Skip("needs root and ip (a private network namespace); skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test makes a network namespace, which needs root: run the tests as root or with -short")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip not found: install it (apt-get install -y iproute2) or run with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run", "^TestTapRefusesRemoteCallers$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), tapRemoteHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTapRefusesRemoteCallers") {
		t.Fatalf("the scenario in its own network namespace: %v\n%s", err, out)
	}
}

// tapRemoteScenario runs inside the private namespace.
func tapRemoteScenario(t *testing.T) {
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", remoteIP + "/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// The control plane's admin API on every interface of the namespace,
	// which only --admin-allow-remote permits, and a sidecar's admin API
	// (the handler weft-proxy serves) likewise.
	cp := startCPWith(t, Options{ConfigDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "0.0.0.0:0", AdminAllowRemote: true})
	hub := tap.NewHub("httpbin-0", peermeta.Workload{Name: "httpbin", Namespace: "default"})
	t.Cleanup(hub.Close)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: admin.Handler(admin.Deps{Tap: hub, Metrics: proxymetrics.New()}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, cpPort, _ := net.SplitHostPort(cp.AdminAddr())
	_, sidecarPort, _ := net.SplitHostPort(ln.Addr().String())

	// from returns a client whose connections come from the address ip.
	from := func(ip string) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	tests := []struct {
		name, caller, url string
		status            int
		body              string
	}{
		{"control plane, remote caller", remoteIP, "http://" + net.JoinHostPort(remoteIP, cpPort) + "/api/v1/tap?target=httpbin", http.StatusForbidden, "tap is served to loopback callers only"},
		{"sidecar, remote caller", remoteIP, "http://" + net.JoinHostPort(remoteIP, sidecarPort) + "/tap", http.StatusForbidden, "tap is served to loopback callers only"},
		// Loopback callers get past the check: the control plane has no
		// such instance, the sidecar starts a stream.
		{"control plane, loopback caller", "127.0.0.1", "http://" + net.JoinHostPort("127.0.0.1", cpPort) + "/api/v1/tap?target=httpbin", http.StatusNotFound, "no running instance"},
		{"sidecar, loopback caller", "127.0.0.1", "http://" + net.JoinHostPort("127.0.0.1", sidecarPort) + "/tap?max=1", http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := from(tc.caller).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("GET %s from %s: %d, want %d", tc.url, tc.caller, resp.StatusCode, tc.status)
			}
			if tc.body == "" {
				return
			}
			var b strings.Builder
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				var e errorBody
				_ = json.NewDecoder(resp.Body).Decode(&e)
				b.WriteString(e.Error)
			} else {
				buf := make([]byte, 512)
				n, _ := resp.Body.Read(buf)
				b.Write(buf[:n])
			}
			if !strings.Contains(b.String(), tc.body) {
				t.Errorf("GET %s from %s: body %q, want %q", tc.url, tc.caller, b.String(), tc.body)
			}
		})
	}
}
