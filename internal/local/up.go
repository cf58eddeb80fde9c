// Package local runs a whole mesh on one machine: `weft up`. It starts the
// control plane in process, then for every Workload instance a sidecar
// (weft-proxy) and the app itself as supervised child processes, an
// ingress gateway for the Istio Gateways in the config, and, for the
// built-in demo, a traffic generator. It keeps the running instances in
// step with the Workloads in the config folder.
package local

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"weft.dev/weft/examples/demo"
	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/supervisor"
)

// Options are weft up's settings.
type Options struct {
	// Path is a folder (watched in place) or a file (copied into the state
	// dir) of mesh config; empty runs the built-in demo.
	Path string
	// StateDir keeps the config copy, mesh.json and logs.
	StateDir string
	// XDSAddr and AdminAddr are the control plane's preferred addresses; a
	// taken port is replaced by a free one.
	XDSAddr, AdminAddr string
	// CAAddr is the CA's preferred address (TLS; default 127.0.0.1:15012,
	// a free port if taken). The CA keeps its root in <state-dir>/ca.
	CAAddr string
	// CACerts, when set, is a folder holding a plug-in CA (Istio's cacerts
	// layout) used instead of the self-signed root.
	CACerts string
	// TrustDomain of workload SPIFFE IDs; default cluster.local.
	TrustDomain string
	// CertTTL is the lifetime of workload certificates; default 24 h.
	CertTTL time.Duration
	// SPIFFESocket, when set, is the SPIFFE Workload API (a SPIRE agent,
	// unix:///path/agent.sock) the sidecars get their certificates from
	// instead of the built-in CA. Each identity's sidecars run from their
	// own path, <state-dir>/spiffe/<namespace>/<service account>/weft-proxy,
	// so that the agent's unix attestor tells them apart; weft up logs the
	// registration entries to create.
	SPIFFESocket string
	// NoTraffic turns the demo's traffic generator off.
	NoTraffic bool
	// Prometheus starts a Prometheus server (the prometheus program on
	// PATH) scraping the mesh, at PrometheusAddr.
	Prometheus bool
	// PrometheusAddr is where that Prometheus listens; default
	// 127.0.0.1:9090.
	PrometheusAddr string
	// ProxyBinary is the sidecar program; empty means weft-proxy beside
	// this executable, else this executable's `proxy` command.
	ProxyBinary string
	// Logger receives weft up's own logs.
	Logger *slog.Logger
	// Stdout receives the processes' prefixed logs and the status table.
	Stdout io.Writer
	// Telemetry are the mesh-wide tracing and access log defaults given
	// to the control plane; nil means model.DefaultMeshTelemetry().
	Telemetry *model.MeshTelemetry
}

// Run runs the mesh until ctx is done, then stops everything in order:
// apps, then sidecars and gateways, then the control plane.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:15014"
	}
	if opts.XDSAddr == "" {
		opts.XDSAddr = "127.0.0.1:15010"
	}
	log := opts.Logger.With("component", "up")
	stateDir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	if st, err := ReadState(stateDir); err == nil && processAlive(st.PID) && st.PID != os.Getpid() {
		return fmt.Errorf("a mesh is already running from %s (pid %d, admin %s): stop it first, or pass another --state-dir", stateDir, st.PID, st.Admin)
	}
	configDir, demoMode, err := prepareConfig(opts.Path, stateDir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the weft executable: %w", err)
	}
	pp := newPorts()
	xdsAddr, ok := pp.preferred(opts.XDSAddr)
	if !ok {
		log.Warn("xDS port taken; using another", "wanted", opts.XDSAddr, "using", xdsAddr)
	}
	adminAddr, ok := pp.preferred(opts.AdminAddr)
	if !ok {
		log.Warn("admin port taken; using another", "wanted", opts.AdminAddr, "using", adminAddr)
	}
	caAddr, caOpts := caSettings(opts, stateDir, pp, log)
	cp, err := controlplane.New(controlplane.Options{ConfigDir: configDir, XDSAddr: xdsAddr, AdminAddr: adminAddr, Logger: opts.Logger, Telemetry: opts.Telemetry,
		CAAddr: caAddr, CA: caOpts})
	if err != nil {
		return err
	}
	if opts.SPIFFESocket != "" {
		log.Info("the SPIFFE Workload API issues the sidecars' certificates; the control plane reads its trust bundle as a workload of its own: register it with SPIRE",
			"socket", opts.SPIFFESocket, "selector", "unix:path:"+self,
			"command", "spire-server entry create -parentID <agent SPIFFE ID> -spiffeID spiffe://"+cp.CA().TrustDomain()+"/ns/istio-system/sa/weft-controlplane -selector unix:path:"+self)
	}
	sup := supervisor.New(supervisor.Options{
		Output:     opts.Stdout,
		GroupOrder: []string{groupTraffic, groupTelemetry, groupApp, groupGateway, groupSidecar},
	})
	defer sup.Close()

	m := &mesh{
		opts:      opts,
		log:       log,
		self:      self,
		proxy:     proxyCommand(opts.ProxyBinary, self),
		cp:        cp,
		sup:       sup,
		ports:     pp,
		configDir: configDir,
		stateDir:  stateDir,
		demo:      demoMode,
		running:   map[string]*instance{},
	}
	cp.Handle("GET /api/v1/status", http.HandlerFunc(m.handleStatus))
	cp.Handle("GET /{$}", http.HandlerFunc(m.handleDashboard))

	cpCtx, stopCP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCP()
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Run(cpCtx) }()
	select {
	case <-cp.Ready():
	case err := <-cpDone:
		return fmt.Errorf("control plane: %w", err)
	}

	st := State{PID: os.Getpid(), Admin: cp.AdminAddr(), XDS: cp.XDSAddr(), ConfigDir: configDir}
	if err := writeState(stateDir, st); err != nil {
		log.Warn("cannot write mesh state", "err", err)
	}
	defer os.Remove(filepath.Join(stateDir, stateFile))

	m.reconcile(ctx)
	st.Ingress = m.ingressURLs()
	_ = writeState(stateDir, st)
	if opts.Prometheus {
		if err := m.startPrometheus(ctx); err != nil {
			log.Error("cannot start Prometheus", "err", err)
		}
	}
	fmt.Fprintln(opts.Stdout)
	PrintStatus(opts.Stdout, m.status())
	fmt.Fprintln(opts.Stdout)
	if demoMode {
		fmt.Fprintln(opts.Stdout, "Try: curl -s http://127.0.0.1:8080/productpage | grep reviews-version")
		fmt.Fprintln(opts.Stdout, "     weft status; weft get virtualservice; weft proxy-status")
		fmt.Fprintln(opts.Stdout)
	}

	// Keep the instances in step with the Workloads in the config.
	go m.follow(ctx)

	select {
	case <-ctx.Done():
	case err := <-cpDone:
		if err != nil {
			log.Error("control plane stopped", "err", err)
		}
	}
	fmt.Fprintln(opts.Stdout, "stopping: apps, then sidecars, then the control plane")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	if err := sup.StopAll(stopCtx); err != nil {
		log.Warn("stopping processes", "err", err)
	}
	m.closeLogs()
	stopCP()
	if err := <-cpDone; err != nil {
		log.Warn("control plane", "err", err)
	}
	fmt.Fprintln(opts.Stdout, "stopped")
	return nil
}

// Process groups, stopped in this order.
const (
	groupTraffic   = "traffic"
	groupTelemetry = "telemetry"
	groupApp       = "app"
	groupGateway   = "gateway"
	groupSidecar   = "sidecar"
)

// prepareConfig returns the folder the control plane watches. A folder is
// watched in place; a file is copied into the state dir; no path writes
// the built-in demo there (reset at every start).
func prepareConfig(path, stateDir string) (dir string, demoMode bool, err error) {
	if path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			return "", false, fmt.Errorf("reading -f %s: %w", path, err)
		}
		if fi.IsDir() {
			abs, err := filepath.Abs(path)
			return abs, false, err
		}
	}
	dir = filepath.Join(stateDir, "config")
	if err := os.RemoveAll(dir); err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", false, err
		}
		return dir, false, os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	}
	err = fs.WalkDir(demo.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := demo.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	})
	return dir, true, err
}

func proxyCommand(explicit, self string) []string {
	if explicit != "" {
		return []string{explicit}
	}
	beside := filepath.Join(filepath.Dir(self), "weft-proxy")
	if fi, err := os.Stat(beside); err == nil && fi.Mode()&0o111 != 0 {
		return []string{beside}
	}
	return []string{self, "proxy"}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscallZero) == nil
}
