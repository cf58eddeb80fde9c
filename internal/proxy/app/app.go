// Package app is the weft-proxy program: flags, wiring of the xDS client,
// runtime snapshots, listeners and admin API, readiness, and graceful
// shutdown.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/gcheadroom"
	"weft.dev/weft/internal/proxy/httpproxy"
	"weft.dev/weft/internal/proxy/identity"
	"weft.dev/weft/internal/proxy/listener"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/procscale"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
	"weft.dev/weft/internal/proxy/tracing"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/proxy/xdsclient"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/xdsmeta"
)

// DefaultGCHeadroomMiB is --gc-headroom-mib's default: about the growth
// Go's default allows a sidecar with 100 services of config, so that
// such a sidecar keeps GOGC=100 and larger configs do not grow the heap
// by their own size (docs/performance.md, optimisation 16).
const DefaultGCHeadroomMiB = 6

// DefaultSidecarConcurrency is --concurrency's default for sidecars, as
// Istio's: at most two threads run the proxy's Go code whatever the
// host's size, one while one is enough (--scale-concurrency); a gateway's
// default, 0, uses every CPU the process may use.
const DefaultSidecarConcurrency = 2

// Config is the proxy's static configuration, read once from flags.
type Config struct {
	// XDSAddr is the control plane's ADS address (default 127.0.0.1:15010).
	XDSAddr string
	// NodeID is the xDS node ID; empty builds one with xdsmeta.NodeID.
	NodeID string
	// Type is "sidecar" (default) or "gateway".
	Type string
	// IP is the proxy's address in the node ID (default 127.0.0.1).
	IP string
	// Name is the instance name (default the host name).
	Name string
	// Namespace is the proxy's namespace (default "default").
	Namespace string
	// Workload is the workload name (default Name).
	Workload string
	// Labels are the workload's labels.
	Labels map[string]string
	// ServiceAccount is the workload's service account.
	ServiceAccount string
	// Locality is where the proxy runs, "region/zone/subzone"; sent as
	// the xDS node's locality.
	Locality string
	// AdminAddr is the admin API address (default 127.0.0.1:15000; port 0
	// picks a free port).
	AdminAddr string
	// StatsAddr, when set, serves /stats/prometheus and /metrics (the
	// admin API's metrics, nothing else) on its own address, Istio's 15090
	// (default "": off; port 0 picks a free port).
	StatsAddr string
	// AppMetricsURL, when set, is the app's own Prometheus page; the stats
	// address then serves the proxy's metrics merged with the app's.
	AppMetricsURL string
	// DrainTimeout bounds graceful shutdown (default 5s).
	DrainTimeout time.Duration
	// Pprof serves /debug/pprof on the admin API.
	Pprof bool
	// GCHeadroomMiB bounds the heap's growth between collections (package
	// gcheadroom) in MiB; 0, or GOGC in the environment, keeps Go's.
	GCHeadroomMiB int
	// Concurrency is the most threads that run the proxy's Go code
	// (GOMAXPROCS; all of them throughout unless ScaleConcurrency), at
	// most the runtime's own choice (the CPUs, or the
	// container's CPU limit); 0 keeps that choice. Default
	// DefaultSidecarConcurrency for a sidecar, 0 for a gateway. A
	// GOMAXPROCS in the environment wins.
	Concurrency int
	// ScaleConcurrency runs the proxy on one thread while one is enough
	// and adds threads, up to Concurrency, while it is busy (package
	// procscale). Default true for a sidecar, false for a gateway.
	ScaleConcurrency bool
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// AccessLog is a file path, "-" for stderr, or empty for none. When
	// set, every request and TCP connection is logged there whatever the
	// config's access_log sinks say.
	AccessLog string
	// MaxSeries caps the label sets of each family of Istio metrics
	// (HTTP, TCP); past it, new peers are recorded as "unknown"
	// (default proxymetrics.DefaultMaxSeries, 1000).
	MaxSeries int
	// InterceptionMode is sent as node metadata INTERCEPTION_MODE:
	// "REDIRECT" when iptables redirects the workload's traffic to the
	// proxy, which makes the control plane send a transparent
	// virtualOutbound; "" (default) when apps use HTTP_PROXY.
	InterceptionMode string
	// XDSBackoffBase and XDSBackoffMax tune reconnects (tests); zero
	// means the client's defaults.
	XDSBackoffBase, XDSBackoffMax time.Duration
	// stdout and stderr are where access_log sinks "/dev/stdout" and
	// "/dev/stderr" write (Main's streams; default os.Stdout, os.Stderr).
	stdout, stderr io.Writer
	// IdentitySource is where the proxy's workload certificate (SVID,
	// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>) comes
	// from: identity.SourceCA (the control plane's CA at CAAddr) or
	// identity.SourceSPIFFE (the SPIFFE Workload API at SPIFFESocket,
	// e.g. a SPIRE agent). With either, the proxy has its certificate
	// before it asks for its config and reports ready. Default: SourceCA
	// when CAAddr is set, else no identity.
	IdentitySource string
	// SPIFFESocket is the SPIFFE Workload API's address
	// (unix:///path/agent.sock); default $SPIFFE_ENDPOINT_SOCKET.
	SPIFFESocket string
	// CAAddr is the control plane's CA port (TLS, Istio's 15012). With
	// SourceCA the proxy gets and renews its certificate there; with
	// either source, an XDSAddr equal to it makes xDS run over mTLS
	// (default "": none).
	CAAddr string
	// CARootFile is the PEM roots the control plane's TLS certificate is
	// checked against (required with CAAddr).
	CARootFile string
	// BootstrapTokenFile holds the token proving the proxy's workload to
	// the CA (required with SourceCA; weft up writes one per instance,
	// 0600).
	BootstrapTokenFile string
	// TrustDomain of the proxy's SPIFFE ID (default cluster.local).
	TrustDomain string
	// CAPollInterval is how often the proxy polls the CA's trust bundle
	// between renewals (root rotation); default 10 s.
	CAPollInterval time.Duration
}

// ParseFlags reads the command line.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	host, _ := os.Hostname()
	cfg := Config{}
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.XDSAddr, "xds-addr", "127.0.0.1:15010", "control plane ADS address")
	fs.StringVar(&cfg.NodeID, "node-id", "", "xDS node ID (default built from --type, --ip, --name and --namespace)")
	fs.StringVar(&cfg.Type, "type", xdsmeta.ProxyTypeSidecar, "proxy type: sidecar or gateway")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "the proxy's IP, used in the node ID")
	fs.StringVar(&cfg.Name, "name", host, "instance name")
	fs.StringVar(&cfg.Namespace, "namespace", "default", "namespace")
	fs.StringVar(&cfg.Workload, "workload", "", "workload name (default --name)")
	labels := fs.String("labels", "", "workload labels: k=v,k=v")
	fs.StringVar(&cfg.ServiceAccount, "service-account", "", "workload service account")
	fs.StringVar(&cfg.Locality, "locality", "", `where the proxy runs, "region/zone/subzone" (zone and subzone optional): sent to the control plane, which orders the endpoints of locality-aware services by their nearness to it (default "": the control plane's record of the instance, if any)`)
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:15000", "admin API address (port 0 picks a free port)")
	fs.StringVar(&cfg.AppMetricsURL, "app-metrics-url", "", "the app's Prometheus metrics URL, merged into the stats address's pages (default \"\": none)")
	fs.StringVar(&cfg.StatsAddr, "stats-addr", "", `address serving /stats/prometheus, /metrics and the health checks /ready and /healthz/ready, e.g. 127.0.0.1:15090 (default "": off)`)
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 5*time.Second, "how long shutdown waits for requests in flight")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof on the admin API")
	fs.IntVar(&cfg.Concurrency, "concurrency", -1, fmt.Sprintf("the most threads that run the proxy (GOMAXPROCS), at most the CPUs the process may use; 0: all of them (default %d for a sidecar, 0 for a gateway; see --scale-concurrency; a GOMAXPROCS in the environment wins over both)", DefaultSidecarConcurrency))
	fs.BoolVar(&cfg.ScaleConcurrency, "scale-concurrency", false, "run on one thread while one is enough and add threads up to --concurrency while busy (default true for a sidecar, false for a gateway)")
	fs.IntVar(&cfg.GCHeadroomMiB, "gc-headroom-mib", DefaultGCHeadroomMiB, "how far (MiB) the heap may grow past its live size between collections: GOGC is lowered (to 25 at least) while the live heap, mostly config, is larger; 0 or a GOGC in the environment keeps Go's default")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&cfg.AccessLog, "access-log", "", `access log path, "-" for stderr; overrides the config's access logs (default off: the config decides)`)
	fs.IntVar(&cfg.MaxSeries, "max-metric-series", proxymetrics.DefaultMaxSeries, "cap on the label sets of each family of Istio metrics (HTTP, TCP); past it, new peers are recorded as unknown")
	fs.StringVar(&cfg.InterceptionMode, "interception-mode", "", `"REDIRECT" when iptables redirects the workload's traffic to the proxy (default "": HTTP_PROXY)`)
	fs.StringVar(&cfg.IdentitySource, "identity-source", "", `where the workload certificate comes from: "ca" (the control plane's CA at --ca-addr) or "spiffe" (the SPIFFE Workload API at --spiffe-socket, e.g. a SPIRE agent) (default: "spiffe" with --spiffe-socket, else "ca" with --ca-addr, else none)`)
	fs.StringVar(&cfg.SPIFFESocket, "spiffe-socket", "", "SPIFFE Workload API address, e.g. unix:///run/spire/agent.sock (default $SPIFFE_ENDPOINT_SOCKET with --identity-source=spiffe)")
	fs.StringVar(&cfg.CAAddr, "ca-addr", "", `control plane CA address (TLS), e.g. 127.0.0.1:15012; with --identity-source=ca the proxy gets its workload certificate there before it is ready; with either source, an --xds-addr equal to it runs xDS over mTLS (default "": off)`)
	fs.StringVar(&cfg.CARootFile, "ca-root-file", "", "PEM roots that verify the control plane's TLS certificate (with --ca-addr)")
	fs.StringVar(&cfg.BootstrapTokenFile, "bootstrap-token-file", "", "file holding the token that proves this workload to the CA (with --identity-source=ca)")
	fs.StringVar(&cfg.TrustDomain, "trust-domain", spiffeid.DefaultTrustDomain, "trust domain of the proxy's SPIFFE ID")
	fs.DurationVar(&cfg.CAPollInterval, "ca-poll-interval", 10*time.Second, "how often to ask the CA for the trust bundle between renewals (root rotation)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := checkIdentityFlags(&cfg); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if l := cfg.Locality; l != "" {
		if err := xdsmeta.CheckLocality(l); err != nil {
			return cfg, fmt.Errorf("--locality: %w", err)
		}
	}
	if cfg.Type != xdsmeta.ProxyTypeSidecar && cfg.Type != xdsmeta.ProxyTypeGateway {
		return cfg, fmt.Errorf("--type %q: want sidecar or gateway", cfg.Type)
	}
	if cfg.InterceptionMode != "" && cfg.InterceptionMode != xdsmeta.InterceptionRedirect {
		return cfg, fmt.Errorf("--interception-mode %q: want %s or nothing", cfg.InterceptionMode, xdsmeta.InterceptionRedirect)
	}
	if cfg.Concurrency < -1 {
		return cfg, fmt.Errorf("--concurrency %d: want 0 (every CPU) or more", cfg.Concurrency)
	}
	if cfg.Concurrency == -1 {
		cfg.Concurrency = 0
		if cfg.Type == xdsmeta.ProxyTypeSidecar {
			cfg.Concurrency = DefaultSidecarConcurrency
		}
	}
	scaleSet := false
	fs.Visit(func(f *flag.Flag) { scaleSet = scaleSet || f.Name == "scale-concurrency" })
	if !scaleSet {
		cfg.ScaleConcurrency = cfg.Type == xdsmeta.ProxyTypeSidecar
	}
	if cfg.MaxSeries < 1 {
		return cfg, fmt.Errorf("--max-metric-series %d: want a cap of at least 1 label set per family (default %d)", cfg.MaxSeries, proxymetrics.DefaultMaxSeries)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat)
	}
	var err error
	if cfg.Labels, err = parseLabels(*labels); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// startConcurrency sets the threads that run the proxy (GOMAXPROCS)
// unless the environment sets them (a positive number: the runtime
// ignores anything else), and logs what it chose. A sidecar beside its
// app needs a few threads, not one per CPU of the host: fewer Ps mean
// less of the scheduler's spinning and waking per request
// (docs/performance.md, optimisations 21 and 24). The most it runs is n, or the runtime's own
// choice (the CPUs, or the container's CPU limit) where n is 0 or more
// than that choice. With scale, it runs on one thread while one is
// enough and adds threads up to that most while busy (package procscale);
// without, it runs on that most throughout. A program that sets
// GOMAXPROCS stops the runtime's own updates when the container's CPU
// limit changes; a fixed setting equal to the runtime's choice is not
// made, and those updates go on. It returns what stops the scaling.
func startConcurrency(n int, scale bool, log *slog.Logger) (stop func()) {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		// The runtime takes a positive number and ignores anything else.
		if k, err := strconv.Atoi(v); err == nil && k > 0 {
			log.Info("threads: GOMAXPROCS in the environment overrides --concurrency and --scale-concurrency", "threads", k)
			return func() {}
		}
	}
	most := runtime.GOMAXPROCS(0)
	if n > 0 && n < most {
		most = n
	}
	if scale {
		if s := procscale.Start(most, procscale.DefaultPolicy); s != nil {
			log.Info("threads: one while one is enough, more while busy", "most", most)
			return s.Stop
		}
	}
	if most < runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(most)
	}
	log.Info("threads", "threads", most)
	return func() {}
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not k=v", kv)
		}
		out[k] = v
	}
	return out, nil
}

// Main runs the proxy until ctx is cancelled or /quitquitquit; it returns
// the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "weft-proxy:", err)
		return 2
	}
	if !cfg.Pprof {
		// Without /debug/pprof nothing reads heap profiles: stop sampling
		// allocations, and with it the growth of the runtime's table of
		// sampled stacks (up to 1.5 MB in a long-running sidecar).
		runtime.MemProfileRate = 0
	}
	if cfg.GCHeadroomMiB < 0 {
		fmt.Fprintln(stderr, "weft-proxy: --gc-headroom-mib must be 0 or more")
		return 2
	}
	defer gcheadroom.Start(uint64(cfg.GCHeadroomMiB) << 20).Stop()
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	defer startConcurrency(cfg.Concurrency, cfg.ScaleConcurrency, log)()
	cfg.stdout, cfg.stderr = stdout, stderr
	var accessW io.Writer
	switch cfg.AccessLog {
	case "":
	case "-":
		accessW = stderr
	default:
		f, err := os.OpenFile(cfg.AccessLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "weft-proxy: opening access log:", err)
			return 1
		}
		defer f.Close()
		accessW = f
	}
	p, err := New(cfg, log, accessW)
	if err != nil {
		log.Error("starting proxy", "error", err)
		return 1
	}
	if err := p.Run(ctx); err != nil {
		log.Error("proxy stopped", "error", err)
		return 1
	}
	return 0
}

// Proxy is a running proxy.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	metrics *proxymetrics.Metrics
	access  *accesslog.Logger
	// accessFiles and tracer serve the config's access_log and tracing.
	accessFiles *accesslog.Files
	tracer      *tracing.Tracer

	adminLn  net.Listener
	admin    *http.Server
	statsLn  net.Listener // nil unless Config.StatsAddr is set
	stats    *http.Server
	xds      *xdsclient.Client
	clusters *upstream.Manager
	compiler dataplane.Compiler
	snaps    dataplane.Holder
	lst      *listener.Manager
	ident    *identity.Client      // nil without an identity source
	fatal    atomic.Pointer[error] // why the proxy stopped by itself
	tap      *tap.Hub

	ready    atomic.Bool
	readyCh  chan struct{}
	draining atomic.Bool
	quit     chan struct{}
	quitOnce sync.Once
	logged   map[string]bool // unenforced notes already logged
}

// New builds a proxy and binds its admin listener; Run starts it.
func New(cfg Config, log *slog.Logger, accessW io.Writer) (*Proxy, error) {
	if cfg.Name == "" {
		cfg.Name = "weft-proxy"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.Workload == "" {
		cfg.Workload = cfg.Name
	}
	if cfg.Type == "" {
		cfg.Type = xdsmeta.ProxyTypeSidecar
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	if cfg.NodeID == "" {
		typ := "sidecar"
		if cfg.Type == xdsmeta.ProxyTypeGateway {
			typ = "router"
		}
		cfg.NodeID = xdsmeta.NodeID(typ, cfg.IP, cfg.Name, cfg.Namespace)
	}
	p := &Proxy{cfg: cfg, log: log, metrics: proxymetrics.New(), readyCh: make(chan struct{}), quit: make(chan struct{}), logged: map[string]bool{}}
	if accessW != nil {
		p.access = accesslog.New(accessW, 4096)
	}
	node, err := p.node()
	if err != nil {
		return nil, err
	}
	var certs http.Handler
	if cfg.identitySource() != "" {
		if p.ident, err = newIdentity(cfg, log); err != nil {
			return nil, err
		}
		certs = p.ident.CertsHandler()
	}
	p.clusters = upstream.NewManager()
	p.newTelemetry()
	self := peermeta.FromLabels(cfg.Workload, cfg.Namespace, cfg.ServiceAccount, cfg.Labels)
	if bad := peermeta.Invalid(self); len(bad) > 0 {
		log.Warn("peers will see these fields of this workload as unknown: peer metadata values are names or label values, at most 63 bytes (253 for workload and service account) of [A-Za-z0-9._-]",
			"fields", strings.Join(bad, ", "), "workload", cfg.Workload, "namespace", cfg.Namespace, "labels", cfg.Labels)
	}
	p.metrics.SetWorkload(self)
	p.metrics.SetMaxSeries(cfg.MaxSeries)
	p.tap = tap.NewHub(cfg.Name, self)
	ident := p.meshIdentity()
	var lst *listener.Manager
	hp := httpproxy.New(httpproxy.Options{
		Logger: log.With("component", "http"), AccessLog: p.access, Metrics: p.metrics, Workload: self,
		TrackHijacked: func(c net.Conn) func() { return lst.TrackHijacked(c) },
		Tap:           p.tap,
		AccessLogs:    p.accessFiles, Tracer: p.tracer,
	})
	lst = listener.New(listener.Options{
		Logger: log.With("component", "listener"), Snapshots: &p.snaps, Proxy: hp, AccessLog: p.access, AccessLogs: p.accessFiles,
		Metrics: p.metrics, Tap: p.tap, Identity: ident, Workload: self,
	})
	p.lst = lst
	// Nothing is passed through, or sent, to the proxy's own listeners.
	p.clusters.SetOwnAddresses(lst.OwnAddress)
	p.xds = xdsclient.New(xdsclient.Options{
		Addr: cfg.XDSAddr, Node: node, Logger: log.With("component", "xds"),
		OnUpdate:    p.onUpdate,
		OnResponse:  func(t string, acked bool) { p.metrics.XDS(t[strings.LastIndexByte(t, '.')+1:], acked) },
		BackoffBase: cfg.XDSBackoffBase, BackoffMax: cfg.XDSBackoffMax,
		DialOptions: p.xdsDialOptions(),
	})
	p.adminLn, err = net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", cfg.AdminAddr, err)
	}
	p.admin = &http.Server{
		Handler: admin.Handler(admin.Deps{
			Snapshots: &p.snaps, Resources: p.xds.Snapshot, Ready: p.Ready, Listeners: p.lst.Addrs, Metrics: p.metrics,
			Drain: p.Drain, Quit: p.Quit, Pprof: cfg.Pprof, Certs: certs, Tap: p.tap,
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if cfg.StatsAddr != "" {
		p.statsLn, err = net.Listen("tcp", cfg.StatsAddr)
		if err != nil {
			_ = p.adminLn.Close()
			return nil, fmt.Errorf("stats listener on %s: %w", cfg.StatsAddr, err)
		}
		p.stats = &http.Server{Handler: admin.StatsHandler(p.metrics, p.Ready, cfg.AppMetricsURL), ReadHeaderTimeout: 10 * time.Second}
	}
	return p, nil
}

func (p *Proxy) node() (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range p.cfg.Labels {
		labels[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{
		xdsmeta.MetaNamespace:      p.cfg.Namespace,
		xdsmeta.MetaName:           p.cfg.Name,
		xdsmeta.MetaWorkloadName:   p.cfg.Workload,
		xdsmeta.MetaLabels:         labels,
		xdsmeta.MetaServiceAccount: p.cfg.ServiceAccount,
		xdsmeta.MetaProxyType:      p.cfg.Type,
	})
	if err != nil {
		return nil, fmt.Errorf("node metadata: %w", err)
	}
	if p.cfg.InterceptionMode != "" {
		md.Fields[xdsmeta.MetaInterceptionMode] = structpb.NewStringValue(p.cfg.InterceptionMode)
	}
	n := &corev3.Node{Id: p.cfg.NodeID, Cluster: p.cfg.Workload + "." + p.cfg.Namespace, Metadata: md, UserAgentName: "weft-proxy"}
	if p.cfg.Locality != "" {
		region, zone, subzone := xdsmeta.ParseLocality(p.cfg.Locality)
		n.Locality = &corev3.Locality{Region: region, Zone: zone, SubZone: subzone}
	}
	return n, nil
}

// AdminAddr returns the admin API's bound address.
func (p *Proxy) AdminAddr() string { return p.adminLn.Addr().String() }

// StatsAddr returns the stats listener's bound address, or "" when
// Config.StatsAddr is not set.
func (p *Proxy) StatsAddr() string {
	if p.statsLn == nil {
		return ""
	}
	return p.statsLn.Addr().String()
}

// NodeID returns the xDS node ID.
func (p *Proxy) NodeID() string { return p.cfg.NodeID }

// Ready reports whether the first full config is applied and the proxy is
// not draining.
func (p *Proxy) Ready() bool { return p.ready.Load() && !p.draining.Load() }

// ReadyCh is closed when the proxy first becomes ready.
func (p *Proxy) ReadyCh() <-chan struct{} { return p.readyCh }

// ListenerAddrs returns bound listener addresses by name.
func (p *Proxy) ListenerAddrs() map[string]string { return p.lst.Addrs() }

// Drain stops accepting connections; requests in flight continue.
func (p *Proxy) Drain() {
	if p.draining.CompareAndSwap(false, true) {
		p.log.Info("draining: listeners closed, requests in flight continue")
		p.lst.StopAccepting()
	}
}

// Quit drains and makes Run return.
func (p *Proxy) Quit() { p.quitOnce.Do(func() { close(p.quit) }) }

// onUpdate compiles and installs a snapshot; it runs on the xDS client's
// goroutine only. It returns the listeners that could not be bound, so
// the listener update is NACKed with the reason; the proxy retries them on
// every later update.
func (p *Proxy) onUpdate(res *xdsclient.Resources) error {
	clusters := p.clusters.Update(res.Clusters, res.Endpoints)
	p.logTLSNotes(clusters)
	snap := p.compiler.Compile(res, clusters)
	p.logUnenforced(res)
	if !p.ready.Load() && !snap.Complete {
		return nil
	}
	p.snaps.Store(snap)
	if p.draining.Load() {
		return nil
	}
	bindErr := p.lst.Apply(snap)
	if bindErr != nil {
		p.log.Error("applying listeners", "error", bindErr)
	}
	if !p.ready.Load() {
		p.ready.Store(true)
		p.metrics.SetReady(true)
		close(p.readyCh)
		addrs := p.lst.Addrs()
		names := make([]string, 0, len(addrs))
		for n := range addrs {
			names = append(names, n+"="+addrs[n])
		}
		sort.Strings(names)
		p.log.Info("proxy ready", "node", p.cfg.NodeID, "listeners", strings.Join(names, " "), "admin", p.AdminAddr())
	}
	return bindErr
}

func (p *Proxy) logUnenforced(res *xdsclient.Resources) {
	var notes []string
	for _, l := range res.Listeners {
		notes = append(notes, l.Unenforced...)
	}
	for _, r := range res.Routes {
		notes = append(notes, r.Unenforced...)
	}
	for _, c := range res.Clusters {
		notes = append(notes, c.Unenforced...)
	}
	for _, n := range notes {
		if !p.logged[n] {
			p.logged[n] = true
			p.log.Warn("config accepted but not enforced yet", "what", n)
		}
	}
}

// Run serves until ctx is cancelled or Quit, then drains for at most the
// drain timeout. It returns nil after a clean shutdown, and the reason
// when the proxy stopped by itself (its identity source issued an SVID
// it cannot use).
func (p *Proxy) Run(ctx context.Context) error {
	xctx, stopXDS := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	if p.ident != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.ident.Run(xctx); err != nil {
				p.log.Error("workload identity stopped: the proxy cannot become ready; stopping", "error", err)
				p.fatal.Store(&err)
				p.Quit()
			}
		}()
	}
	go func() {
		defer wg.Done()
		// With an identity, config is asked for (and the proxy becomes
		// ready) only once the workload certificate is in hand.
		if p.ident != nil {
			select {
			case <-p.ident.Ready():
			case <-xctx.Done():
				return
			}
		}
		_ = p.xds.Run(xctx)
	}()
	go func() {
		defer wg.Done()
		if err := p.admin.Serve(p.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("admin server", "error", err)
		}
	}()
	if p.stats != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.stats.Serve(p.statsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("stats server", "error", err)
			}
		}()
	}
	p.log.Info("proxy starting", "node", p.cfg.NodeID, "xds", p.cfg.XDSAddr, "admin", p.AdminAddr(), "stats", p.StatsAddr())
	select {
	case <-ctx.Done():
	case <-p.quit:
	}
	p.log.Info("shutting down", "drain_timeout", p.cfg.DrainTimeout)
	p.draining.Store(true)
	dctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	err := p.lst.Shutdown(dctx)
	cancel()
	if err != nil {
		p.log.Warn("drain timeout reached; remaining connections closed", "error", err)
	}
	stopXDS()
	p.clusters.CloseIdle()
	p.tap.Close() // open taps end rather than hold the admin server
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	_ = p.admin.Shutdown(actx)
	if p.stats != nil {
		_ = p.stats.Shutdown(actx)
	}
	acancel()
	wg.Wait()
	p.access.Close()
	p.stopTelemetry()
	if err := p.fatal.Load(); err != nil {
		return *err
	}
	p.log.Info("proxy stopped")
	return nil
}
