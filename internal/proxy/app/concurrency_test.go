package app_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/app"
)

func TestParseFlagsConcurrency(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want      int
		wantScale bool
		wantErr   string
	}{
		{args: nil, want: app.DefaultSidecarConcurrency, wantScale: true},
		{args: []string{"--type", "gateway"}, want: 0},
		{args: []string{"--concurrency", "1"}, want: 1, wantScale: true},
		{args: []string{"--type", "gateway", "--concurrency", "4"}, want: 4},
		{args: []string{"--type", "gateway", "--scale-concurrency"}, want: 0, wantScale: true},
		{args: []string{"--scale-concurrency=false"}, want: app.DefaultSidecarConcurrency},
		{args: []string{"--concurrency", "0"}, want: 0, wantScale: true},
		{args: []string{"--concurrency", "-2"}, wantErr: "--concurrency -2"},
		{args: []string{"--scale-concurrency=yes"}, wantErr: "scale-concurrency"},
	} {
		cfg, err := app.ParseFlags(tc.args, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFlags(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.Concurrency != tc.want || cfg.ScaleConcurrency != tc.wantScale {
			t.Errorf("ParseFlags(%q): concurrency %d, scaling %v, %v; want %d, %v", tc.args, cfg.Concurrency, cfg.ScaleConcurrency, err, tc.want, tc.wantScale)
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
	def := proxyGOMAXPROCS(t, startProxyProcess(t, "--concurrency 0 --scale-concurrency=false", ""))
	for _, tc := range []struct {
		name string
		args string
		env  string
		want int
	}{
		{name: "sidecar default, idle: one thread", args: "", want: 1},
		{name: "sidecar without scaling", args: "--scale-concurrency=false", want: min(app.DefaultSidecarConcurrency, def)},
		{name: "one thread", args: "--concurrency 1 --scale-concurrency=false", want: 1},
		{name: "more than the CPUs keeps the runtime's choice", args: "--concurrency 4096 --scale-concurrency=false", want: def},
		{name: "gateway default: every CPU", args: "--type gateway", want: def},
		{name: "GOMAXPROCS in the environment wins", args: "--concurrency 1", env: "GOMAXPROCS=3", want: 3},
		{name: "GOMAXPROCS in the environment stops the scaling", args: "", env: "GOMAXPROCS=3", want: 3},
		{name: "a GOMAXPROCS the runtime ignores is ignored", args: "", env: "GOMAXPROCS=0", want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proxyGOMAXPROCS(t, startProxyProcess(t, tc.args, tc.env)); got != tc.want {
				t.Errorf("proxy %q: GOMAXPROCS %d, want %d (the runtime's default here: %d)", tc.args, got, tc.want, def)
			}
		})
	}
}

// TestConcurrencyScalesWithLoad keeps a sidecar process busy (clients
// reading its admin API's metrics without a pause) until it runs on
// --concurrency threads; it started on one.
func TestConcurrencyScalesWithLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a proxy process")
	}
	def := proxyGOMAXPROCS(t, startProxyProcess(t, "--concurrency 0 --scale-concurrency=false", ""))
	if def < 2 {
		t.Skipf("the runtime runs %d thread here: nothing to scale to", def)
	}
	admin := startProxyProcess(t, "--concurrency 2", "")
	if n := proxyGOMAXPROCS(t, admin); n != 1 {
		t.Fatalf("idle sidecar: GOMAXPROCS %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/stats/prometheus", nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	for ctx.Err() == nil {
		if gomaxprocsOf(admin) == 2 {
			if def > 2 {
				// No further than --concurrency, however busy.
				time.Sleep(2 * time.Second)
				if n := gomaxprocsOf(admin); n != 2 {
					t.Errorf("a busy sidecar with --concurrency 2 runs on %d threads", n)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu := metricOf(admin, "process_cpu_seconds_total")
	if cpu < 0 {
		t.Fatalf("the sidecar's metrics cannot be read after 30 s of load (GOMAXPROCS %d)", gomaxprocsOf(admin))
	}
	if cpu < 0.5*30 {
		// The scaling needs half a core in a half-second interval: a
		// machine that busy with other work never gave it that.
		t.Skipf("the sidecar had %.1f CPU-seconds in 30 s, never half a core: too busy a machine to tell", cpu)
	}
	t.Fatalf("a busy sidecar still runs on %d thread(s) after 30 s, want 2", gomaxprocsOf(admin))
}

// startProxyProcess starts the proxy with args (and env added to an
// environment without GOMAXPROCS) and returns its admin API's address
// once that serves metrics; the process is killed when the test ends.
// The control plane's address refuses connections: the admin API
// serves metrics anyway.
func startProxyProcess(t *testing.T, args, env string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConcurrencyHelper$")
	cmd.Env = append(os.Environ(), concurrencyHelperEnv+"="+args+" --xds-addr 127.0.0.1:1 --admin-addr "+admin, "GOMAXPROCS=")
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gomaxprocsOf(admin) >= 0 {
			return admin
		}
	}
	t.Fatalf("proxy %q: no go_sched_gomaxprocs_threads on http://%s/stats/prometheus", args, admin)
	return ""
}

// proxyGOMAXPROCS is the GOMAXPROCS of the proxy whose admin API is at
// admin.
func proxyGOMAXPROCS(t *testing.T, admin string) int {
	t.Helper()
	n := gomaxprocsOf(admin)
	if n < 0 {
		t.Fatalf("no go_sched_gomaxprocs_threads on http://%s/stats/prometheus", admin)
	}
	return n
}

// metricOf reads an unlabelled metric from the admin API's metrics; -1
// when it cannot be read.
func metricOf(admin, name string) float64 {
	resp, err := http.Get("http://" + admin + "/stats/prometheus")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// gomaxprocsOf reads go_sched_gomaxprocs_threads from the admin API's
// metrics; -1 when they cannot be read yet.
func gomaxprocsOf(admin string) int {
	return int(metricOf(admin, "go_sched_gomaxprocs_threads"))
}
