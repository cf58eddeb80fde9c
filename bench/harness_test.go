package bench

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/version"
)

// TestSmoke runs the harness with a few hundred requests per window: it
// proves the harness and its Weft rows work, and checks the shape of
// results.json, with the config churning during the Weft windows (every
// Weft window sees a change served). No timing is asserted. Peers run where installed
// (`make bench-deps`); a missing one is skipped with a log line.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and builds fortio; not with -short")
	}
	bin := t.TempDir()
	build := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", append([]string{"build", "-o", bin + "/"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), version.BuildEnv)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", args, err, b)
		}
	}
	build("../tools", "fortio.org/fortio")
	build("..", "-tags", version.BuildTags, "weft.dev/weft/cmd/weft-proxy")

	o := Options{
		Smoke: true, Rounds: 2, Churn: 50 * time.Millisecond,
		Fortio: filepath.Join(bin, "fortio"), WeftProxy: filepath.Join(bin, "weft-proxy"),
		Paths:  []string{"baseline", "weft"},
		OutDir: t.TempDir(),
		Log:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, peer := range []struct {
		name string
		bin  *string
		path string
	}{{"nginx", &o.Nginx, "/usr/sbin/nginx"}, {"haproxy", &o.HAProxy, "/usr/sbin/haproxy"}, {"caddy", &o.Caddy, "../bin/tools/caddy"}} {
		if _, err := os.Stat(peer.path); err != nil {
			t.Logf("peer %s not installed (%s): its rows are skipped; `make bench-deps` installs it", peer.name, peer.path)
			continue
		}
		*peer.bin = peer.path
		o.Paths = append(o.Paths, peer.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if _, err := Run(ctx, o); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(filepath.Join(o.OutDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Paths []map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]map[string]any{}
	for _, p := range rep.Paths {
		rows[p["scenario"].(string)+"/"+p["name"].(string)] = p
		for _, rd := range p["rounds"].([]any) {
			n, _ := rd.(map[string]any)["config_changes"].(float64)
			weft := strings.HasPrefix(p["name"].(string), "weft")
			switch {
			case !weft && n != 0:
				t.Errorf("%s: config_changes %v in a window without a Weft mesh", p["name"], n)
			case weft && n == 0:
				t.Errorf("%s/%s: no config change served during a window with Churn set", p["scenario"], p["name"])
			}
		}
	}
	for _, key := range []string{
		"latency/baseline", "latency/weft-server-sidecar", "latency/weft-2hop", "latency/weft-2hop-mtls",
		"grpc/baseline", "grpc/weft-server-sidecar", "grpc/weft-2hop",
		"throughput/baseline", "throughput/weft-server-sidecar", "throughput/weft-2hop",
	} {
		r := rows[key]
		if r == nil {
			t.Errorf("results.json has no row %s", key)
			continue
		}
		for _, f := range []string{"name", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "added_p50_ms", "added_p90_ms", "added_p99_ms", "rps", "cpu_s_per_1k", "rss_mb", "rounds"} {
			if _, ok := r[f]; !ok {
				t.Errorf("%s: no field %s", key, f)
			}
		}
		if r["available"] != true || r["errors"].(float64) != 0 {
			t.Errorf("%s: available %v, errors %v", key, r["available"], r["errors"])
		}
		if p50, _ := r["p50_ms"].(float64); p50 <= 0 {
			t.Errorf("%s: p50_ms %v", key, r["p50_ms"])
		}
		if rps, _ := r["rps"].(float64); rps <= 0 {
			t.Errorf("%s: rps %v", key, r["rps"])
		}
		if n := len(r["rounds"].([]any)); n != o.Rounds {
			t.Errorf("%s: %d rounds, want %d", key, n, o.Rounds)
		}
		if !strings.HasSuffix(key, "/baseline") {
			// Each Weft sidecar's threads as each window ended: 1 or 2
			// (--threads 2 and scaling with the load).
			for _, rd := range r["rounds"].([]any) {
				th, _ := rd.(map[string]any)["threads"].(map[string]any)
				want := 1
				if strings.Contains(key, "2hop") {
					want = 2
				}
				if len(th) != want {
					t.Errorf("%s: threads %v, want one entry per sidecar (%d)", key, th, want)
				}
				for name, n := range th {
					if n, _ := n.(float64); n < 1 || n > 2 {
						t.Errorf("%s: %s threads %v, want 1 or 2", key, name, n)
					}
				}
			}
			if rss, _ := r["rss_mb"].(float64); rss <= 0 {
				t.Errorf("%s: rss_mb %v", key, r["rss_mb"])
			}
			if cpu, ok := r["cpu_s_per_1k"].(float64); !ok || cpu < 0 {
				t.Errorf("%s: cpu_s_per_1k %v", key, r["cpu_s_per_1k"])
			}
			for _, px := range r["proxies"].([]any) {
				px := px.(map[string]any)
				total, _ := px["cpu_s"].(float64)
				if sys, ok := px["cpu_sys_s"].(float64); !ok || sys < 0 || sys > total {
					t.Errorf("%s: proxy %v: cpu_sys_s %v, want 0..cpu_s (%v)", key, px["name"], px["cpu_sys_s"], total)
				}
			}
		}
	}
	// The harness refuses to start unless the server sidecar counted the
	// mTLS row's requests as connection_security_policy="mutual_tls" and
	// the plaintext row's as "none", so a row here means the hops were
	// what their names say.
	if m := rows["latency/weft-2hop-mtls"]; m != nil && len(m["proxies"].([]any)) != 2 {
		t.Errorf("weft-2hop-mtls: proxies %v, want the client and server sidecars", m["proxies"])
	}
	for _, peer := range []string{"nginx", "haproxy", "caddy"} {
		if r := rows["latency/"+peer+"-2hop"]; r != nil && r["available"] == true {
			if p50, _ := r["p50_ms"].(float64); p50 <= 0 {
				t.Errorf("%s-2hop: p50_ms %v", peer, r["p50_ms"])
			}
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
