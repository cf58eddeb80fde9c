// Command weftbench is Weft's data-plane benchmark (`make bench`): fortio
// load through no proxy, Weft's sidecars and peer proxies, side by side in
// one run. See docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"weft.dev/weft/bench"
)

func main() {
	var o bench.Options
	quick := flag.Bool("quick", false, "10 s windows (2 s warm-up, 5 s throughput windows)")
	flag.BoolVar(&o.Smoke, "smoke", false, "a few hundred requests per window: proves the harness runs (CI)")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "measured window per path and round")
	flag.DurationVar(&o.Warmup, "warmup", 5*time.Second, "warm-up before each window")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds (every path once per round, in rotated order)")
	flag.Float64Var(&o.QPS, "qps", 1000, "request rate of the latency scenarios")
	flag.IntVar(&o.Conns, "c", 16, "connections of the latency scenarios")
	flag.IntVar(&o.Payload, "payload", 1024, "request body bytes (echoed back)")
	flag.IntVar(&o.MaxConns, "max-c", 64, "connections of the closed-loop throughput scenario")
	flag.DurationVar(&o.MaxDuration, "max-duration", 10*time.Second, "window of the throughput scenario")
	flag.IntVar(&o.Services, "services", 100, "other services in the mesh pushed to the sidecars")
	flag.IntVar(&o.Threads, "threads", 2, "threads per proxy: nginx workers, HAProxy nbthread, Caddy's GOMAXPROCS, the sidecars' --concurrency (the most they scale to)")
	paths := flag.String("paths", "baseline,weft,nginx,haproxy,caddy", "path groups to run")
	scen := flag.String("scenarios", "latency,grpc,throughput", "scenarios to run")
	flag.StringVar(&o.Fortio, "fortio", "bin/tools/fortio", "fortio binary")
	flag.StringVar(&o.WeftProxy, "weft-proxy", "", "weft-proxy binary (default: go build ./cmd/weft-proxy)")
	flag.StringVar(&o.WeftProxyBase, "weft-proxy-base", "", "a second weft-proxy binary measured in the same run as paths weftbase-* (before/after a change)")
	flag.StringVar(&o.Nginx, "nginx", look("nginx"), "nginx binary (empty: skip)")
	flag.StringVar(&o.HAProxy, "haproxy", look("haproxy"), "haproxy binary (empty: skip)")
	flag.StringVar(&o.Caddy, "caddy", exists("bin/tools/caddy"), "caddy binary (empty: skip)")
	flag.StringVar(&o.OutDir, "out", "bench/out", "folder for results.json, logs and profiles")
	sidecarEnv := flag.String("sidecar-env", "", "K=V,K=V added to the sidecars' environment (e.g. GOMAXPROCS=1, which also fixes their threads, turning their scaling off; GODEBUG settings one per entry, GODEBUG=gctrace=1,GODEBUG=madvdontneed=1, are joined)")
	baseEnv := flag.String("base-sidecar-env", "-", "K=V,K=V for the --weft-proxy-base mesh's sidecars instead of --sidecar-env (\"\" for none; \"-\": the same)")
	flag.DurationVar(&o.Churn, "churn", 0, "change the Weft meshes' config this often during their measured windows (a ServiceEntry whose host alternates: clusters, endpoints and routes change on every sidecar); 0: never")
	flag.BoolVar(&o.ChurnHidden, "churn-hidden", false, "with --churn, change a policy of a namespace without workloads instead: the control plane works on every change but no sidecar's config changes (the control plane's own share of the cost)")
	flag.BoolVar(&o.Profile, "pprof", false, "save CPU profiles of both sidecars during the last round's two-hop windows (plaintext and mTLS, every scenario)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process, where the control plane runs, over the whole run to this file")
	flag.Parse()
	if *quick {
		setDefault("duration", &o.Duration, 10*time.Second)
		setDefault("warmup", &o.Warmup, 2*time.Second)
		setDefault("max-duration", &o.MaxDuration, 5*time.Second)
	}
	o.Paths = split(*paths)
	o.Scenarios = split(*scen)
	o.SidecarEnv = split(*sidecarEnv)
	if *baseEnv != "-" {
		o.BaseSidecarEnv = append([]string{}, split(*baseEnv)...)
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "weftbench: --cpuprofile:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		pprof.StopCPUProfile() // os.Exit runs no deferred calls
		fmt.Fprintln(os.Stderr, "weftbench:", err)
		os.Exit(1)
	}
	rep.Table(os.Stdout)
	fmt.Printf("\nwrote %s/results.json\n", o.OutDir)
}

// setDefault applies a --quick value unless the flag was given.
func setDefault(name string, d *time.Duration, v time.Duration) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	if !set {
		*d = v
	}
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// look finds a Debian peer proxy (they live in /usr/sbin).
func look(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return exists("/usr/sbin/" + name)
}

func exists(p string) string {
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}
