// Package controlplane runs Weft's control plane: it watches config
// sources, rebuilds the validated mesh model when they change, pushes xDS
// to every connected proxy, and serves the admin API.
//
// Flow: sources (folder of YAML, runtime instances) -> watcher (debounce,
// coalesce) -> validate -> model.Snapshot -> xdsserver (translation per
// proxy, consistency check, ADS). A resource that fails validation is
// reported and left out; the last good version of it stays in force.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/meshstats"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdsserver"
)

// Options are the control plane's static settings, read once at start.
type Options struct {
	// ConfigDir is the folder of YAML the mesh config is read from.
	ConfigDir string
	// XDSAddr is where xDS is served (plaintext); default 127.0.0.1:15010.
	XDSAddr string
	// AdminAddr is where the admin API is served; default 127.0.0.1:15014.
	// It must be a loopback address unless AdminAllowRemote is set.
	AdminAddr string
	// AdminAllowRemote lets AdminAddr be an address other hosts can
	// reach (--admin-allow-remote; default false). The admin API has no
	// authentication yet: whoever reaches it can apply config and rotate
	// the CA. Tap still answers loopback callers only.
	AdminAllowRemote bool
	// Debounce is how long the watcher waits for more changes before a
	// rebuild; default 100 ms.
	Debounce time.Duration
	// Logger receives the control plane's logs; default slog.Default().
	Logger *slog.Logger
	// StatsInterval is how often the sidecars' metrics are scraped for
	// `weft stat`; default 5 s.
	StatsInterval time.Duration
	// Telemetry are the mesh-wide tracing and access log defaults that
	// Telemetry resources override; nil means model.DefaultMeshTelemetry()
	// (1 % sampling, no collector, access logs off).
	Telemetry *model.MeshTelemetry
	// CA configures the certificate authority; off unless CA.Dir or
	// CA.PluginDir is set.
	CA CAOptions
	// CAAddr is where the CA is served (TLS); default 127.0.0.1:15012.
	CAAddr string
}

// Server is a running control plane. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	log       *slog.Logger
	reg       *prometheus.Registry
	xds       *xdsserver.Server
	folder    *FolderSource
	instances *InstanceSource
	xdsLn     net.Listener
	adminLn   net.Listener
	mux       *http.ServeMux
	metrics   *metrics
	builder   *validate.Builder // holds the last good version of every resource
	loader    config.Loader     // parses only the files changed since the last rebuild
	stats     *meshstats.Collector
	taps      tapShutdown // ends open /api/v1/tap streams on shutdown (tap.go)

	// The CA (nil when off), its bootstrap tokens and its listener.
	ca       *ca.Authority
	caTokens *ca.Tokens
	caLn     net.Listener
	// spiffe, when set, is the SPIFFE Workload API whose trust bundle
	// the CA port also trusts (sidecars with SPIRE-issued SVIDs).
	spiffe *spiffeTrust

	notifyCh chan struct{}
	ready    chan struct{}

	// update puts a snapshot in force for the proxies (the xDS server's
	// Update; tests make it fail).
	update func(*model.Snapshot) error

	mu      sync.Mutex
	snap    *model.Snapshot
	set     *config.Set   // the resources snap was built from
	changed chan struct{} // closed and replaced on every new snapshot
	version uint64
	served  uint64 // the newest snapshot version the proxies are served
	// applyMu serialises writes into the config folder.
	applyMu sync.Mutex
}

// New binds the xDS and admin listeners (so a port conflict is reported at
// once) and returns a control plane ready to Run.
func New(opts Options) (*Server, error) {
	if opts.XDSAddr == "" {
		opts.XDSAddr = "127.0.0.1:15010"
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:15014"
	}
	if opts.Debounce == 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ConfigDir == "" {
		return nil, errors.New("no config folder: pass --config DIR")
	}
	if err := checkTelemetry(&opts); err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "controlplane")
	if !isLoopbackAddr(opts.AdminAddr) {
		if !opts.AdminAllowRemote {
			return nil, fmt.Errorf("--admin-addr %s is not a loopback address: the admin API has no authentication yet, and whoever reaches it can apply config, rotate the CA and read the mesh's state; serve it on 127.0.0.1 (the default), or pass --admin-allow-remote to accept that risk", opts.AdminAddr)
		}
		log.Warn("the admin API is served on an address other hosts may reach, without authentication (--admin-allow-remote); tap still answers loopback callers only", "admin", opts.AdminAddr)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The xDS server's own goroutines end with Run (Stop).
	xds := xdsserver.New(context.Background(), xdsserver.Options{Logger: opts.Logger, Registry: reg})
	xdsLn, err := net.Listen("tcp", opts.XDSAddr)
	if err != nil {
		xds.Stop()
		return nil, fmt.Errorf("listening for xDS on %s: %w (is another control plane running? pass --xds-addr)", opts.XDSAddr, err)
	}
	adminLn, err := net.Listen("tcp", opts.AdminAddr)
	if err != nil {
		xdsLn.Close()
		xds.Stop()
		return nil, fmt.Errorf("listening for the admin API on %s: %w (is another control plane running? pass --admin-addr)", opts.AdminAddr, err)
	}
	s := &Server{
		opts:      opts,
		log:       log,
		reg:       reg,
		xds:       xds,
		update:    xds.Update,
		folder:    NewFolderSource(opts.ConfigDir, log),
		instances: NewInstanceSource(),
		xdsLn:     xdsLn,
		adminLn:   adminLn,
		mux:       http.NewServeMux(),
		metrics:   newMetrics(reg),
		builder:   validate.NewBuilder(),
		notifyCh:  make(chan struct{}, 1),
		ready:     make(chan struct{}),
		changed:   make(chan struct{}),
	}
	s.stats = meshstats.New(meshstats.Options{Interval: opts.StatsInterval, Logger: log, Targets: s.statsTargets})
	s.routes()
	s.caRoutes()
	if err := s.setupCA(); err != nil {
		xdsLn.Close()
		adminLn.Close()
		xds.Stop()
		return nil, err
	}
	return s, nil
}

// XDSAddr is the address xDS is served on.
func (s *Server) XDSAddr() string { return s.xdsLn.Addr().String() }

// isLoopbackAddr reports whether a listen address (host:port) is on
// loopback only: a loopback IP or "localhost". An empty host listens on
// every interface.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// AdminAddr is the address the admin API is served on.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// ConfigDir is the watched config folder.
func (s *Server) ConfigDir() string { return s.opts.ConfigDir }

// XDS is the xDS server (sync status, config dumps).
func (s *Server) XDS() *xdsserver.Server { return s.xds }

// Instances is the runtime source of workload instances.
func (s *Server) Instances() *InstanceSource { return s.instances }

// Handle adds a route to the admin API (used by the local runtime).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Ready is closed once the first snapshot is being served.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Snapshot returns the model in force (nil before the first build).
func (s *Server) Snapshot() *model.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Served returns the version of the newest snapshot the proxies are
// served: its xDS update succeeded. It is behind Snapshot's version while
// the model's newest version could not be put in force, and 0 before one
// was.
func (s *Server) Served() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// Resources returns the resources the model in force was built from, as
// read from the config folder (nil before the first build). The local
// runtime reads its Workloads here rather than reading the folder again.
func (s *Server) Resources() *config.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// WaitNewer blocks until a snapshot with version > v is in force, or ctx ends.
func (s *Server) WaitNewer(ctx context.Context, v uint64) (*model.Snapshot, error) {
	for {
		s.mu.Lock()
		snap, ch := s.snap, s.changed
		s.mu.Unlock()
		if snap != nil && snap.Version > v {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Rebuild asks for a rebuild (debounced like any change).
func (s *Server) Rebuild() { s.notify() }

func (s *Server) notify() {
	select {
	case s.notifyCh <- struct{}{}:
	default:
	}
}

// Run serves until ctx is done, then stops the servers and returns.
func (s *Server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	grpcServer := grpc.NewServer(append(s.xds.ServerOptions(),
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	)...)
	s.xds.Register(grpcServer)
	admin := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	admin.RegisterOnShutdown(s.taps.stop)

	for _, src := range []Source{s.folder, s.instances} {
		g.Go(func() error { return src.Run(ctx, s.notify) })
	}
	g.Go(func() error { return s.watch(ctx) })
	g.Go(func() error { return s.stats.Run(ctx) })
	g.Go(func() error { return s.runCA(ctx) })
	g.Go(func() error { return s.runSPIFFE(ctx) })
	g.Go(func() error {
		if err := grpcServer.Serve(s.xdsLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving xDS: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving admin API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			grpcServer.Stop()
		}
		s.xds.Stop()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return admin.Shutdown(sctx)
	})
	s.log.Info("control plane serving", "xds", s.XDSAddr(), "admin", s.AdminAddr(), "config", s.opts.ConfigDir)
	return g.Wait()
}

// statsTargets are the sidecars that serve metrics.
func (s *Server) statsTargets() []meshstats.Target {
	var out []meshstats.Target
	for _, in := range s.instances.List() {
		if in.StatsPort != 0 {
			out = append(out, meshstats.Target{Instance: in.ProxyKey(), URL: fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", in.StatsPort)})
		}
	}
	return out
}

// Stats is the collector behind `weft stat`.
func (s *Server) Stats() *meshstats.Collector { return s.stats }

// watch is the watcher: it debounces notifications and rebuilds.
func (s *Server) watch(ctx context.Context) error {
	// The first build does not wait for quiet, only for the folder to be
	// watched, so that a change made right after it is not missed.
	select {
	case <-s.folder.Watching():
	case <-ctx.Done():
		return nil
	}
	s.rebuild()
	close(s.ready)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pending := false
	var first time.Time
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.notifyCh:
			now := time.Now()
			if !pending {
				pending, first = true, now
			}
			// Wait for quiet, but never hold a change back for more than
			// ten debounce periods while changes keep coming.
			wait := s.opts.Debounce
			if over := now.Sub(first) + wait - 10*s.opts.Debounce; over > 0 {
				wait -= over
			}
			timer.Reset(max(wait, 0))
		case <-timer.C:
			pending = false
			s.rebuild()
		}
	}
}

// rebuild reads every source, validates, and publishes a new snapshot.
func (s *Server) rebuild() {
	start := time.Now()
	set, _ := s.loader.Load(s.opts.ConfigDir) // load findings are in set and reported in snap.Status
	s.mu.Lock()
	s.version++
	version := s.version
	s.mu.Unlock()

	snap := s.builder.Build(set, s.instances.List())
	snap.Version = version
	snap.MeshTelemetry = *s.opts.Telemetry
	snap.TrustDomain = s.opts.CA.TrustDomain
	s.metrics.observeBuild(snap, time.Since(start))
	for _, st := range snap.Status {
		switch st.State {
		case model.StateInvalid:
			for _, f := range st.Findings {
				s.log.Warn("invalid resource left out", "resource", st.Key(), "finding", f.String(), "serving_last_good", st.ServingLastGood)
			}
		case model.StatePartial:
			for _, f := range st.Findings {
				if f.Severity == model.SeverityError {
					s.log.Warn("part of a resource left out", "resource", st.Key(), "finding", f.String())
				}
			}
		}
	}
	err := s.update(snap)
	if err != nil {
		// A translation or consistency error keeps the previous snapshot
		// in force for the proxies; the model is still published so the
		// admin API shows what was read, but Served stays behind it.
		s.log.Error("xDS update failed; proxies keep their last config", "version", version, "err", err)
	}
	s.mu.Lock()
	s.snap, s.set = snap, set
	if err == nil {
		s.served = version
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.log.Info("config built", "version", version, "services", len(snap.Services), "instances", len(snap.Instances), "took", time.Since(start).Round(time.Microsecond))
}
