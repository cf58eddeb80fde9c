package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/app"
)

func TestParseFlagsConcurrency(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    int
		wantErr string
	}{
		{args: nil, want: app.DefaultSidecarConcurrency},
		{args: []string{"--type", "gateway"}, want: 0},
		{args: []string{"--concurrency", "1"}, want: 1},
		{args: []string{"--type", "gateway", "--concurrency", "4"}, want: 4},
		{args: []string{"--concurrency", "0"}, want: 0},
		{args: []string{"--concurrency", "-2"}, wantErr: "--concurrency -2"},
	} {
		cfg, err := app.ParseFlags(tc.args, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFlags(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.Concurrency != tc.want {
			t.Errorf("ParseFlags(%q): concurrency %d, %v; want %d", tc.args, cfg.Concurrency, err, tc.want)
		}
	}
}

const concurrencyHelperEnv = "WEFT_CONCURRENCY_HELPER_ARGS"

// TestConcurrencyHelper is the proxy process of TestConcurrency.
func TestConcurrencyHelper(t *testing.T) {
	args := os.Getenv(concurrencyHelperEnv)
	if args == "" {
		t.Skip("helper process of TestConcurrency")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app.Main(ctx, strings.Fields(args), io.Discard, os.Stderr)
}

// TestConcurrency runs the proxy as its own process (GOMAXPROCS is the
// process's) and reads the runtime's setting from its metrics.
func TestConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("starts proxy processes")
	}
	// What the runtime picks on this machine (CPUs, affinity, CPU limit).
	def := proxyGOMAXPROCS(t, "--concurrency 0", "")
	for _, tc := range []struct {
		name string
		args string
		env  string
		want int
	}{
		{name: "sidecar default", args: "", want: min(app.DefaultSidecarConcurrency, def)},
		{name: "one thread", args: "--concurrency 1", want: 1},
		{name: "more than the CPUs keeps the runtime's choice", args: "--concurrency 4096", want: def},
		{name: "gateway default: every CPU", args: "--type gateway", want: def},
		{name: "GOMAXPROCS in the environment wins", args: "--concurrency 1", env: "GOMAXPROCS=3", want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proxyGOMAXPROCS(t, tc.args, tc.env); got != tc.want {
				t.Errorf("proxy %q: GOMAXPROCS %d, want %d (the runtime's default here: %d)", tc.args, got, tc.want, def)
			}
		})
	}
}

// proxyGOMAXPROCS starts the proxy with args (and env added to an
// environment without GOMAXPROCS) and reads its GOMAXPROCS from the admin
// API's metrics. The control plane's address refuses connections: the
// admin API serves metrics anyway.
func proxyGOMAXPROCS(t *testing.T, args, env string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConcurrencyHelper$")
	cmd.Env = append(os.Environ(), concurrencyHelperEnv+"="+args+" --xds-addr 127.0.0.1:1 --admin-addr "+admin, "GOMAXPROCS=")
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := gomaxprocsOf(admin); n >= 0 {
			return n
		}
	}
	t.Fatalf("proxy %q: no go_sched_gomaxprocs_threads on http://%s/stats/prometheus", args, admin)
	return 0
}

// gomaxprocsOf reads go_sched_gomaxprocs_threads from the admin API's
// metrics; -1 when they cannot be read yet.
func gomaxprocsOf(admin string) int {
	resp, err := http.Get("http://" + admin + "/stats/prometheus")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "go_sched_gomaxprocs_threads %d", &n); err == nil {
			return n
		}
	}
	return -1
}
