// Package bench is Weft's data-plane benchmark harness (`make bench`): a
// fortio client sends load to a fortio server through each path under test
// (no proxy, Weft's sidecars, and two hops of nginx, HAProxy and Caddy as
// peers), in interleaved rounds in one run, and reports added latency,
// throughput, and the CPU and peak memory of every proxy process.
//
// Only ratios within one run mean anything: the load generator, the
// backend and the proxies share the machine's cores.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"weft.dev/weft/internal/version"
)

// Options configure a run. Zero values take the defaults of the full run
// (`make bench`).
type Options struct {
	// Duration is the measured window of each path in each round (30 s).
	Duration time.Duration
	// Warmup runs before each measured window, at the same rate (5 s).
	Warmup time.Duration
	// Rounds is how many times every path is measured, in rotated order
	// (3).
	Rounds int
	// QPS and Conns are the latency scenario's rate and connections (1000,
	// 16); Payload the request body size, echoed back (1024).
	QPS     float64
	Conns   int
	Payload int
	// MaxConns are the closed-loop throughput scenario's connections (64);
	// MaxDuration its window (10 s).
	MaxConns    int
	MaxDuration time.Duration
	// Smoke replaces every window by a few hundred requests (CI).
	Smoke bool
	// Churn, when set, changes the Weft meshes' config this often during
	// each measured window of their paths: a ServiceEntry whose host
	// alternates, so that every sidecar gets new clusters, endpoints and
	// routes, as in a mesh whose services come and go.
	Churn time.Duration
	// ChurnHidden makes Churn's change one that no sidecar's config
	// shows (an AuthorizationPolicy of a namespace without workloads):
	// the control plane reads, validates and translates every change,
	// but pushes nothing. It measures the control plane's own share of
	// what churn costs the data path on a machine whose cores they
	// share.
	ChurnHidden bool
	// Services is how many other services the mesh holds (100).
	Services int
	// Threads is how many threads each proxy runs on (2): nginx's
	// worker_processes, HAProxy's nbthread, Caddy's GOMAXPROCS and the
	// sidecars' --concurrency (the most they scale to by their default;
	// a GOMAXPROCS in SidecarEnv fixes it), so that on a machine with
	// more cores every proxy still gets the same.
	Threads int
	// Paths selects path groups: baseline, weft, nginx, haproxy, caddy
	// (all).
	Paths []string
	// Scenarios selects latency, grpc, throughput (all).
	Scenarios []string
	// Fortio, WeftProxy, Nginx, HAProxy and Caddy are the programs;
	// WeftProxy empty builds ./cmd/weft-proxy; a peer not found is
	// skipped and its rows say so.
	Fortio, WeftProxy, Nginx, HAProxy, Caddy string
	// WeftProxyBase, when set, is a second weft-proxy binary (say, the
	// last release, or the commit before a change) run as its own mesh
	// beside the first: its paths are named weftbase-*, so a change is
	// measured against its baseline in the same run.
	WeftProxyBase string
	// SidecarEnv is added to the sidecars' environment (for example
	// GOMAXPROCS=1, to try runtime settings without a rebuild).
	SidecarEnv []string
	// BaseSidecarEnv, when not nil, replaces SidecarEnv for the baseline
	// mesh (WeftProxyBase), so one run can compare two settings of the
	// same binary.
	BaseSidecarEnv []string
	// OutDir receives results.json, logs and profiles (bench/out).
	OutDir string
	// Profile takes CPU profiles of both sidecars during the last
	// round's two-hop windows, plaintext and mTLS, of every scenario (of
	// the baseline mesh's too, when there is one):
	// <sidecar>.<scenario>[-mtls].cpu.pprof.
	Profile bool
	// Log receives progress lines.
	Log *slog.Logger

	weft, weftBase *weftMesh // set by Run when the Weft paths (and the baseline mesh's) run
}

// sidecarEnv is env with the sidecars' GODEBUG settings in one variable:
// the harness's own first, then weftbench's GODEBUG, then each GODEBUG in
// env, so that a later setting of the same name wins as the runtime reads
// them. Their threads are a flag (--concurrency), which a GOMAXPROCS in
// env overrides. A GOMAXPROCS weftbench inherited is cleared (empty is
// unset to the runtime and the sidecar) so that it does not override the
// flag; with fixThreads (a weft-proxy from before the flag) GOMAXPROCS is
// Threads instead, which env may still override.
func (o *Options) sidecarEnv(env []string, fixThreads bool) []string {
	out := []string{"GOMAXPROCS="}
	if fixThreads {
		out[0] = fmt.Sprintf("GOMAXPROCS=%d", o.Threads)
	}
	var godebug []string
	if o.Profile {
		// --pprof, for CPU profiles, would also sample heap allocations
		// from the start, and the runtime's table of sampled stacks
		// (up to 1.5 MB) would count in the sidecars' RSS.
		godebug = append(godebug, "memprofilerate=0")
	}
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = append(godebug, v)
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if v != "" {
				godebug = append(godebug, v)
			}
			continue
		}
		out = append(out, kv)
	}
	if len(godebug) > 0 {
		out = append(out, "GODEBUG="+strings.Join(godebug, ","))
	}
	return out
}

func (o *Options) defaults() {
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = 5 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.QPS == 0 {
		o.QPS = 1000
	}
	if o.Conns == 0 {
		o.Conns = 16
	}
	if o.Payload == 0 {
		o.Payload = 1024
	}
	if o.MaxConns == 0 {
		o.MaxConns = 64
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = 10 * time.Second
	}
	if o.Services == 0 {
		o.Services = 100
	}
	if o.Threads == 0 {
		o.Threads = 2
	}
	if len(o.Paths) == 0 {
		o.Paths = []string{"baseline", "weft", "nginx", "haproxy", "caddy"}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{"latency", "grpc", "throughput"}
	}
	if o.OutDir == "" {
		o.OutDir = "bench/out"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// path is one way through to the fortio server.
type path struct {
	name     string
	group    string
	scenario string
	target   string
	grpc     bool
	procs    []*proc   // the proxy processes on the path
	note     string    // why the path is not available; "" when it is
	mesh     *weftMesh // the Weft mesh of a Weft path, whose config Churn changes
}

// Run runs the benchmark and returns the report; it writes
// OutDir/results.json.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	log := o.Log
	if o.Fortio == "" {
		return nil, errors.New("no fortio: build it with `make bench-deps` and pass --fortio")
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "weftbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	logDir := filepath.Join(o.OutDir, "logs")
	os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}

	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	// The backend: fortio's echo server, HTTP and gRPC.
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	srv, err := startProc(logDir, "fortio-server", nil, o.Fortio, "server",
		"-http-port", fmt.Sprintf("127.0.0.1:%d", ports[0]), "-grpc-port", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled", "-loglevel", "Warning")
	if err != nil {
		return nil, err
	}
	stops = append(stops, srv.stop)
	direct := fmt.Sprintf("http://127.0.0.1:%d/echo", ports[0])
	if err := waitHTTP(ctx, direct, 30*time.Second, srv); err != nil {
		return nil, fmt.Errorf("fortio server: %w\n%s", err, srv.tail())
	}

	var paths []*path
	add := func(p *path) { paths = append(paths, p) }
	lat, grpcOn, thr := has(o.Scenarios, "latency"), has(o.Scenarios, "grpc"), has(o.Scenarios, "throughput")
	if has(o.Paths, "baseline") {
		add(&path{name: "baseline", group: "baseline", scenario: "latency", target: direct})
		add(&path{name: "baseline", group: "baseline", scenario: "grpc", target: fmt.Sprintf("127.0.0.1:%d", ports[1]), grpc: true})
		add(&path{name: "baseline", group: "baseline", scenario: "throughput", target: direct})
	}

	if has(o.Paths, "weft") {
		if o.WeftProxy == "" {
			o.WeftProxy = filepath.Join(work, "weft-proxy")
			log.Info("building weft-proxy", "out", o.WeftProxy)
			cmd := exec.CommandContext(ctx, "go", "build", "-tags", version.BuildTags, "-o", o.WeftProxy, "weft.dev/weft/cmd/weft-proxy")
			cmd.Env = append(os.Environ(), version.BuildEnv)
			if b, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("building weft-proxy: %v\n%s", err, b)
			}
		}
		for _, bin := range []string{o.WeftProxy, o.WeftProxyBase} {
			if bin == "" {
				continue
			}
			// A binary given with --weft-proxy(-base) may be built
			// otherwise than the Makefile builds it (with cgo, without
			// the tags): its memory and CPU then say little about a
			// release build's.
			if err := version.CheckBinary(bin); err != nil {
				log.Warn("weft-proxy is not built as the Makefile builds it; its figures are not a release build's", "err", err)
			}
		}
		log.Info("starting the control plane and two sidecars", "services", o.Services)
		m, err := startWeft(ctx, &o, o.WeftProxy, "", o.SidecarEnv, work, logDir, int(ports[0]), int(ports[1]))
		if err != nil {
			return nil, err
		}
		stops = append(stops, m.stop)
		addWeftPaths(add, "weft", m)
		if o.WeftProxyBase != "" {
			log.Info("starting the baseline mesh", "weft-proxy", o.WeftProxyBase)
			env := o.SidecarEnv
			if o.BaseSidecarEnv != nil {
				env = o.BaseSidecarEnv
			}
			b, err := startWeft(ctx, &o, o.WeftProxyBase, "base-", env, work, logDir, int(ports[0]), int(ports[1]))
			if err != nil {
				return nil, fmt.Errorf("baseline mesh: %w", err)
			}
			stops = append(stops, b.stop)
			addWeftPaths(add, "weftbase", b)
			o.weftBase = b
		}
		o.weft = m
	}

	var cert, key, combined string
	for _, kind := range peerKinds {
		if !has(o.Paths, kind) {
			continue
		}
		bin := map[string]string{"nginx": o.Nginx, "haproxy": o.HAProxy, "caddy": o.Caddy}[kind]
		tlsToo := kind != "caddy"
		if bin == "" {
			note := fmt.Sprintf("not installed: run `make bench-deps` (%s)", kind)
			log.Warn("skipping peer: "+note, "peer", kind)
			add(&path{name: kind + "-2hop", group: kind, scenario: "latency", note: note})
			if tlsToo {
				add(&path{name: kind + "-2hop-tls", group: kind, scenario: "latency", note: note})
			}
			add(&path{name: kind + "-2hop", group: kind, scenario: "throughput", note: note})
			continue
		}
		if cert == "" && tlsToo {
			if cert, key, combined, err = writeCert(work); err != nil {
				return nil, err
			}
		}
		variants := []bool{false}
		if tlsToo {
			variants = append(variants, true)
		}
		for _, tls := range variants {
			name := kind + "-2hop"
			if tls {
				name += "-tls"
			}
			procs, url, err := startPeerPair(ctx, kind, name, bin, work, logDir,
				hopConfig{tlsOut: tls, cert: cert, key: key, combined: combined, threads: o.Threads},
				hopConfig{next: int(ports[0]), tlsIn: tls, cert: cert, key: key, combined: combined, threads: o.Threads})
			for _, p := range procs {
				stops = append(stops, p.stop)
			}
			if err != nil {
				return nil, err
			}
			add(&path{name: name, group: kind, scenario: "latency", target: url, procs: procs})
			if !tls {
				add(&path{name: name, group: kind, scenario: "throughput", target: url, procs: procs})
			}
		}
	}

	rep := newReport(&o)
	for _, sc := range []string{"latency", "grpc", "throughput"} {
		if (sc == "latency" && !lat) || (sc == "grpc" && !grpcOn) || (sc == "throughput" && !thr) {
			continue
		}
		var ps []*path
		for _, p := range paths {
			if p.scenario == sc {
				ps = append(ps, p)
			}
		}
		if err := runScenario(ctx, &o, sc, ps, work, rep); err != nil {
			return nil, err
		}
	}
	rep.finish()
	if err := rep.write(filepath.Join(o.OutDir, "results.json")); err != nil {
		return nil, err
	}
	return rep, nil
}

// addWeftPaths adds the paths through one Weft mesh, named after group.
func addWeftPaths(add func(*path), group string, m *weftMesh) {
	server, both := []*proc{m.server}, []*proc{m.client, m.server}
	for _, sc := range []string{"latency", "throughput"} {
		add(&path{name: group + "-server-sidecar", group: group, scenario: sc, target: m.serverOnlyURL(), procs: server, mesh: m})
		add(&path{name: group + "-2hop", group: group, scenario: sc, target: m.twoHopURL(), procs: both, mesh: m})
	}
	add(&path{name: group + "-2hop-mtls", group: group, scenario: "latency", target: m.twoHopMTLSURL(), procs: both, mesh: m})
	add(&path{name: group + "-server-sidecar", group: group, scenario: "grpc", target: m.serverOnlyGRPC(), grpc: true, procs: server, mesh: m})
	add(&path{name: group + "-2hop", group: group, scenario: "grpc", target: m.twoHopGRPC(), grpc: true, procs: both, mesh: m})
}

// runScenario measures every available path of one scenario, in rounds,
// each round in a rotated order so no path always follows the same one.
func runScenario(ctx context.Context, o *Options, sc string, ps []*path, work string, rep *Report) error {
	var avail []*path
	for _, p := range ps {
		if p.note == "" {
			avail = append(avail, p)
		}
	}
	meter := &cpuMeter{}
	for r := range o.Rounds {
		for i := range avail {
			p := avail[(i+r)%len(avail)]
			l := load{URL: p.target, GRPC: p.grpc, QPS: o.QPS, Conn: o.Conns, Duration: o.Duration, Payload: o.Payload}
			warm := l
			warm.Duration = o.Warmup
			if sc == "throughput" {
				l.QPS, l.Conn, l.Duration = 0, o.MaxConns, o.MaxDuration
				warm.QPS, warm.Conn = 0, o.MaxConns
				warm.Duration = min(o.Warmup, 2*time.Second)
			}
			if o.Smoke {
				warm.N, l.N = 50, 300
			}
			if _, err := runLoad(ctx, o.Fortio, work, "warmup", warm); err != nil {
				return fmt.Errorf("%s %s warm-up: %w", sc, p.name, err)
			}
			profDone := make(chan struct{})
			close(profDone)
			if o.Profile && r == o.Rounds-1 && !o.Smoke {
				// Both meshes alike, so that the profiler's own memory and
				// CPU do not favour one of them.
				name := sc
				if strings.HasSuffix(p.name, "-mtls") {
					name += "-mtls"
				}
				switch {
				case p.name == "weft-2hop" || p.name == "weft-2hop-mtls":
					profDone = o.startProfiles(ctx, o.weft, "", name, l.Duration)
				case (p.name == "weftbase-2hop" || p.name == "weftbase-2hop-mtls") && o.weftBase != nil:
					profDone = o.startProfiles(ctx, o.weftBase, "base-", name, l.Duration)
				}
			}
			stopChurn := func() (int, int) { return 0, 0 }
			if o.Churn > 0 && p.mesh != nil {
				stopChurn = p.mesh.churn(ctx, o.Churn, o.ChurnHidden)
			}
			meter.start(p.procs)
			res, err := runLoad(ctx, o.Fortio, work, fmt.Sprintf("%s-%s-%d", sc, p.name, r), l)
			cpu := meter.stop(p.procs)
			changes, failed := stopChurn()
			if failed > 0 {
				o.Log.Warn("config churn: writes failed", "path", p.name, "round", r+1, "failed", failed)
			}
			// The sidecars' threads as the window ended (they scale
			// with their load and keep a thread added for 10 s).
			threads := map[string]int{}
			for _, pr := range p.procs {
				if pr.admin != "" {
					threads[pr.name] = sidecarThreads(ctx, pr.admin)
				}
			}
			<-profDone
			if err != nil {
				return fmt.Errorf("%s %s round %d: %w", sc, p.name, r+1, err)
			}
			attrs := []any{"scenario", sc, "path", p.name, "round", r + 1,
				"p50_ms", round3(res.P50), "p99_ms", round3(res.P99), "rps", round1(res.RPS), "errors", res.Errors}
			if len(threads) > 0 {
				attrs = append(attrs, "threads", threads)
			}
			if changes > 0 {
				attrs = append(attrs, "config_changes", changes)
			}
			o.Log.Info("measured", attrs...)
			rep.add(sc, p, r+1, res, cpu, threads, changes)
		}
	}
	// Peak memory so far (VmHWM only grows): read once per scenario.
	for _, p := range ps {
		rep.unavailable(sc, p)
		for _, pr := range p.procs {
			rep.rss(sc, p.name, pr.name, peakRSSMB(pr.cmd.Process.Pid))
		}
	}
	return nil
}

// startProfiles takes CPU profiles of both sidecars of m over most of a
// window (OutDir/<prefix><sidecar>.<name>.cpu.pprof); the channel
// closes when both are saved.
func (o *Options) startProfiles(ctx context.Context, m *weftMesh, prefix, name string, d time.Duration) chan struct{} {
	done := make(chan struct{})
	pd := max(d-2*time.Second, time.Second)
	go func() {
		defer close(done)
		errs := make(chan error, 2)
		for _, s := range []struct {
			name string
			port uint32
		}{{"client-sidecar", m.clientMI.AdminPort}, {"server-sidecar", m.serverMI.AdminPort}} {
			go func() {
				errs <- profileSidecar(ctx, s.port, pd, filepath.Join(o.OutDir, prefix+s.name+"."+name+".cpu.pprof"))
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				o.Log.Warn("profile", "err", err)
			}
		}
	}()
	return done
}

// machine describes where the run happened.
func machine() map[string]string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	return map[string]string{
		"nproc":     fmt.Sprint(runtime.NumCPU()),
		"cpu_model": model,
		"go":        runtime.Version(),
		"loadavg":   strings.TrimSpace(string(load)),
	}
}

// startPeerPair starts a peer's two hops, B (listening where A forwards,
// forwarding to b.next) first, on fresh loopback ports, and waits until
// A answers. A hop that finds its port taken (picked free, then taken by
// another process before the peer bound it) is started again on other
// ports, twice at most. It returns the processes still running (A first)
// for the caller to stop, also on error, and A's URL.
func startPeerPair(ctx context.Context, kind, name, bin, work, logDir string, a, b hopConfig) ([]*proc, string, error) {
	var started []*proc
	for try := 0; ; try++ {
		hp, err := freePorts(2)
		if err != nil {
			return started, "", err
		}
		a.listen, a.next, b.listen = int(hp[0]), int(hp[1]), int(hp[1])
		var procs []*proc
		for _, h := range []struct {
			hop  hopConfig
			name string
		}{{b, name + "-b"}, {a, name + "-a"}} {
			h.hop.dir = filepath.Join(work, h.name)
			for _, d := range []string{h.hop.dir, filepath.Join(h.hop.dir, "xdg-data"), filepath.Join(h.hop.dir, "xdg-config")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return started, "", err
				}
			}
			conf := filepath.Join(h.hop.dir, kind+".conf")
			if err := os.WriteFile(conf, []byte(peerConfig(kind, h.hop)), 0o644); err != nil {
				return started, "", err
			}
			env := []string{"XDG_DATA_HOME=" + filepath.Join(h.hop.dir, "xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(h.hop.dir, "xdg-config"), "HOME=" + h.hop.dir, fmt.Sprintf("GOMAXPROCS=%d", h.hop.threads)}
			p, err := startProc(logDir, h.name, env, peerArgv(kind, bin, conf, h.hop.dir)...)
			if err != nil {
				return started, "", err
			}
			started = append(started, p)
			procs = append([]*proc{p}, procs...)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/echo", a.listen)
		err = waitHTTP(ctx, url, 30*time.Second, procs[0])
		if err == nil {
			return procs, url, nil
		}
		tails := procs[0].tail() + procs[1].tail()
		if try < 2 && (procs[0].exited() || procs[1].exited()) && strings.Contains(strings.ToLower(tails), "address already in use") {
			for _, p := range procs {
				p.stop()
			}
			started = started[:len(started)-len(procs)]
			continue
		}
		return started, "", fmt.Errorf("%s: %w\nhop A:\n%s\nhop B:\n%s", name, err, procs[0].tail(), procs[1].tail())
	}
}
