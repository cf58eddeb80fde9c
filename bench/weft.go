package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/spiffeid"
)

// Namespace and names of the benchmark mesh.
const (
	benchNS       = "bench"
	serverService = "fortio"
	httpPort      = 8080
	grpcPort      = 8079
	// mtlsPort is a second HTTP port of the fortio service, to the same
	// fortio server: a STRICT PeerAuthentication covers it, so the two
	// Weft hops on it speak mTLS; httpPort and grpcPort stay plaintext (a
	// DestinationRule turns auto mTLS off on them).
	mtlsPort = 8081
)

// weftMesh is a control plane in the harness's process and the two
// sidecars, each a weft-proxy process, wired as `weft up` wires them: the
// fortio server is the instance of a Workload whose service has an HTTP
// and a gRPC port, the load generator the instance of a client Workload
// that reaches the service through explicit local upstream ports.
type weftMesh struct {
	cp     *controlplane.Server
	cfgDir string // the control plane's config folder
	cancel context.CancelFunc
	cpDone chan error

	server, client     *proc
	serverMI, clientMI *model.Instance
}

// churn changes m's config every interval, from now, until the returned
// function is called: it writes a ServiceEntry whose host alternates
// between two names (written aside and renamed, so the control plane
// never reads half a file), so that every sidecar gets a cluster removed
// and one added, their endpoints, and its routes rebuilt. The function
// stops it, waits (at most 3 s) until the control plane has served a
// build made after the last write, and returns how many builds it served
// since churn began and how many writes failed; it then removes the
// ServiceEntry and waits for that build too, so that none is left for
// the next window. Hidden, the change is one no sidecar's config shows
// (Options.ChurnHidden, churnEntry).
func (m *weftMesh) churn(ctx context.Context, interval time.Duration, hidden bool) (stop func() (changes, failed int)) {
	file := filepath.Join(m.cfgDir, "churn.yaml")
	version := func() uint64 {
		if snap := m.cp.Snapshot(); snap != nil {
			return snap.Version
		}
		return 0
	}
	// settle waits (at most 3 s) until a build newer than v has been
	// served.
	settle := func(v uint64) {
		for deadline := time.Now().Add(3 * time.Second); m.cp.Served() <= v && time.Now().Before(deadline) && ctx.Err() == nil; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	write := func(data []byte) error {
		tmp := filepath.Join(m.cfgDir, ".churn.tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, file)
	}
	start := m.cp.Served()
	var failed int
	var last uint64 // the version before the last write
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for n := 0; ; n++ {
			last = version()
			if write(churnEntry(n, hidden)) != nil {
				failed++
			}
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() (int, int) {
		close(done)
		<-stopped
		settle(last)
		changes := int(m.cp.Served() - start)
		v := version()
		if os.Remove(file) == nil {
			settle(v)
		}
		return changes, failed
	}
}

// churnEntry is what churn writes for its nth change: a ServiceEntry
// whose host and endpoint alternate between two. Hidden, an
// AuthorizationPolicy of a namespace with no workloads whose rule
// alternates: the control plane validates, builds and translates the
// mesh again as for any change, and every proxy's config comes out the
// same, so none is pushed.
func churnEntry(n int, hidden bool) []byte {
	if hidden {
		return fmt.Appendf(nil, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: churn, namespace: %s-hidden}
spec:
  rules: [{to: [{operation: {paths: [/churn-%d]}}]}]
`, benchNS, n%2)
	}
	return fmt.Appendf(nil, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: churn, namespace: %s}
spec:
  hosts: [churn-%d.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.%d}]
`, benchNS, n%2, 10+n%2)
}

// writeMeshConfig writes the config folder: the two Workloads and
// `services` other services (ServiceEntries with three static endpoints
// each, one in ten with a VirtualService and a DestinationRule), so the
// sidecars hold the config of a realistic mesh. As in a mesh whose
// services all run sidecars, the other services are reached with mesh
// mTLS (ISTIO_MUTUAL): their clusters carry the TLS settings a sidecar
// keeps for each.
func writeMeshConfig(dir string, services int) error {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: fortio-server, namespace: %[1]s}
spec:
  service: %[2]s
  labels: {app: %[2]s, version: v1}
  serviceAccount: %[2]s
  sidecar: true
  replicas: 1
  ports: [{name: http, number: %[3]d}, {name: grpc, number: %[4]d, protocol: GRPC}, {name: http-mtls, number: %[5]d}]
  command: ["fortio", "server"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: fortio-client, namespace: %[1]s}
spec:
  service: fortio-client
  labels: {app: fortio-client, version: v1}
  serviceAccount: fortio-client
  sidecar: true
  replicas: 1
  upstreams: [{service: %[2]s, port: %[3]d}, {service: %[2]s, port: %[4]d}, {service: %[2]s, port: %[5]d}]
  command: ["fortio", "load"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: fortio-mtls, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: %[2]s}}
  portLevelMtls: {%[5]d: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fortio-plaintext, namespace: %[1]s}
spec:
  host: %[2]s.%[1]s.svc.cluster.local
  trafficPolicy:
    portLevelSettings:
    - {port: {number: %[3]d}, tls: {mode: DISABLE}}
    - {port: {number: %[4]d}, tls: {mode: DISABLE}}
`, benchNS, serverService, httpPort, grpcPort, mtlsPort)
	if err := os.WriteFile(filepath.Join(dir, "workloads.yaml"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	b.Reset()
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh-mtls, namespace: %[1]s}
spec:
  host: "*.%[1]s.svc.cluster.local"
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`, benchNS)
	for i := range services {
		name := fmt.Sprintf("svc-%04d", i)
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: http, number: 80, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 9}}
  - {address: 127.0.0.2, ports: {http: 9}}
  - {address: 127.0.0.3, ports: {http: 9}}
`, name, benchNS)
		if i%10 == 0 {
			fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: %[1]s.%[2]s.svc.cluster.local}}]
    timeout: 5s
  - route: [{destination: {host: %[1]s.%[2]s.svc.cluster.local}}]
    retries: {attempts: 2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[1]s.%[2]s.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
    tls: {mode: ISTIO_MUTUAL}
`, name, benchNS)
		}
	}
	return os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(b.String()), 0o644)
}

// startWeft runs the control plane, with its CA, and the two sidecars,
// each with a bootstrap token and the CA flags as `weft up` starts them,
// and waits until a request goes through both, in plaintext and in mTLS.
// bin is the weft-proxy binary and env is added to its environment;
// prefix names the mesh's work folder, logs and processes ("" for the
// main mesh).
func startWeft(ctx context.Context, o *Options, bin, prefix string, env []string, work, logDir string, fortioHTTP, fortioGRPC int) (*weftMesh, error) {
	concurrencyFlag := takesConcurrency(ctx, bin)
	env = o.sidecarEnv(env, !concurrencyFlag)
	work = filepath.Join(work, prefix+"weft")
	cfgDir := filepath.Join(work, "mesh")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeMeshConfig(cfgDir, o.Services); err != nil {
		return nil, err
	}
	lf, err := os.Create(filepath.Join(logDir, prefix+"controlplane.log"))
	if err != nil {
		return nil, err
	}
	cp, err := controlplane.New(controlplane.Options{
		ConfigDir: cfgDir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		CA: controlplane.CAOptions{Dir: filepath.Join(work, "ca")}, CAAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	m := &weftMesh{cp: cp, cfgDir: cfgDir, cancel: cancel, cpDone: make(chan error, 1)}
	go func() { m.cpDone <- cp.Run(cctx); lf.Close() }()

	ports, err := freePorts(10)
	if err != nil {
		m.stop()
		return nil, err
	}
	m.serverMI = &model.Instance{
		Name: "fortio-server-0", Namespace: benchNS, Workload: "fortio-server", Service: serverService,
		Labels: map[string]string{"app": serverService, "version": "v1"}, ServiceAccount: serverService,
		Address: "127.0.0.1",
		Ports: []model.InstancePort{
			{Name: "http", Number: httpPort, AppPort: uint32(fortioHTTP), InboundPort: ports[0], Protocol: model.ProtocolFromPort("", "", "http")},
			{Name: "grpc", Number: grpcPort, AppPort: uint32(fortioGRPC), InboundPort: ports[1], Protocol: model.ProtocolFromPort("GRPC", "", "grpc")},
			{Name: "http-mtls", Number: mtlsPort, AppPort: uint32(fortioHTTP), InboundPort: ports[8], Protocol: model.ProtocolFromPort("", "", "http-mtls")},
		},
		OutboundPort: ports[2], AdminPort: ports[3],
	}
	host := model.FQDN(serverService, benchNS)
	m.clientMI = &model.Instance{
		Name: "fortio-client-0", Namespace: benchNS, Workload: "fortio-client", Service: "fortio-client",
		Labels: map[string]string{"app": "fortio-client", "version": "v1"}, ServiceAccount: "fortio-client",
		Address:      "127.0.0.1",
		OutboundPort: ports[4], AdminPort: ports[5],
		Upstreams: []model.InstanceUpstream{
			{Host: host, Port: httpPort, LocalPort: ports[6]},
			{Host: host, Port: grpcPort, LocalPort: ports[7]},
			{Host: host, Port: mtlsPort, LocalPort: ports[9]},
		},
	}
	cp.Instances().Set(m.serverMI, m.clientMI)
	authority, tokens := cp.CA(), cp.CATokens()
	if authority == nil || tokens == nil {
		m.stop()
		return nil, fmt.Errorf("the control plane runs no CA")
	}
	tokenDir := filepath.Join(work, "tokens")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		m.stop()
		return nil, err
	}
	for _, s := range []struct {
		mi   *model.Instance
		name string
		dst  **proc
	}{{m.serverMI, "server-sidecar", &m.server}, {m.clientMI, "client-sidecar", &m.client}} {
		// Each sidecar proves its identity to the CA with its own token; as
		// under `weft up`, a sidecar with an identity gets its config over
		// mTLS on the CA's port.
		id, err := spiffeid.New(authority.TrustDomain(), s.mi.Namespace, s.mi.ServiceAccount)
		if err != nil {
			m.stop()
			return nil, err
		}
		tok, err := tokens.Issue(s.mi.ProxyKey(), id)
		if err != nil {
			m.stop()
			return nil, err
		}
		tokenFile := filepath.Join(tokenDir, s.mi.Name+".token")
		if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
			m.stop()
			return nil, err
		}
		args := []string{bin,
			"--ca-addr", cp.CAAddr(), "--ca-root-file", authority.TrustBundleFile(),
			"--bootstrap-token-file", tokenFile, "--trust-domain", authority.TrustDomain(),
			"--xds-addr", cp.CAAddr(), "--type", "sidecar",
			"--name", s.mi.Name, "--namespace", s.mi.Namespace, "--workload", s.mi.Workload,
			"--labels", fmt.Sprintf("app=%s,version=v1", s.mi.Labels["app"]),
			"--service-account", s.mi.ServiceAccount,
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", s.mi.AdminPort),
		}
		if concurrencyFlag {
			args = append(args, "--concurrency", strconv.Itoa(o.Threads))
		}
		if o.Profile {
			// Only to take CPU profiles: as under `weft up`, a sidecar
			// otherwise serves no /debug/pprof (and samples no heap).
			args = append(args, "--pprof")
		}
		p, err := startProc(logDir, prefix+s.name, env, args...)
		if err != nil {
			m.stop()
			return nil, err
		}
		p.admin = fmt.Sprintf("127.0.0.1:%d", s.mi.AdminPort)
		*s.dst = p
	}
	for _, s := range []struct {
		p  *proc
		mi *model.Instance
	}{{m.server, m.serverMI}, {m.client, m.clientMI}} {
		url := fmt.Sprintf("http://127.0.0.1:%d/ready", s.mi.AdminPort)
		if err := waitHTTP(ctx, url, 60*time.Second, s.p); err != nil {
			m.stop()
			return nil, fmt.Errorf("sidecar %s not ready: %w\n%s", s.mi.Name, err, s.p.tail())
		}
	}
	// Ready means the sidecar has its config; wait until the whole path
	// answers (the server sidecar's endpoint reaches the client's config).
	for _, u := range []string{m.twoHopURL(), m.twoHopMTLSURL()} {
		if err := waitHTTP(ctx, u, 30*time.Second, m.client); err != nil {
			m.stop()
			return nil, fmt.Errorf("request through both sidecars: %w\nclient sidecar:\n%s\nserver sidecar:\n%s", err, m.client.tail(), m.server.tail())
		}
	}
	if err := m.checkSecurity(ctx); err != nil {
		m.stop()
		return nil, err
	}
	return m, nil
}

// checkSecurity sends requests on each two-hop path and asks the server
// sidecar's metrics how they arrived: those on the mTLS port must count
// as connection_security_policy="mutual_tls", those on the plaintext port
// as "none". Anything else means a row measures the wrong thing.
func (m *weftMesh) checkSecurity(ctx context.Context) error {
	const n = 5
	for _, c := range []struct{ url, want string }{{m.twoHopMTLSURL(), "mutual_tls"}, {m.twoHopURL(), "none"}} {
		before, err := m.serverSecurityCounts(ctx)
		if err != nil {
			return err
		}
		for range n {
			if err := waitHTTP(ctx, c.url, 10*time.Second, m.client); err != nil {
				return err
			}
		}
		after, err := m.serverSecurityCounts(ctx)
		if err != nil {
			return err
		}
		for pol := range after {
			d := after[pol] - before[pol]
			if (pol == c.want && d < n) || (pol != c.want && d != 0) {
				return fmt.Errorf("%s: the server sidecar counted %v more requests with connection_security_policy=%q (before %v, after %v), want %d as %q only",
					c.url, d, pol, before, after, n, c.want)
			}
		}
		if after[c.want]-before[c.want] < n {
			return fmt.Errorf("%s: the server sidecar counted no %q requests (before %v, after %v)", c.url, c.want, before, after)
		}
	}
	return nil
}

// serverSecurityCounts reads the server sidecar's inbound
// istio_requests_total and sums it by connection_security_policy.
func (m *weftMesh) serverSecurityCounts(ctx context.Context) (map[string]float64, error) {
	body, err := sidecarMetrics(ctx, fmt.Sprintf("127.0.0.1:%d", m.serverMI.AdminPort))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "istio_requests_total{") || !strings.Contains(line, `reporter="destination"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			continue
		}
		out[label(line, "connection_security_policy")] += v
	}
	return out, nil
}

// label returns the value of one label of a Prometheus text line.
func label(line, name string) string {
	i := strings.Index(line, name+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(name)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// serverOnlyURL reaches the fortio server through its sidecar's inbound
// port alone.
func (m *weftMesh) serverOnlyURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/echo", m.serverMI.Ports[0].InboundPort)
}

// twoHopURL goes through the client sidecar's explicit upstream port, then
// the server sidecar.
func (m *weftMesh) twoHopURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/echo", m.clientMI.Upstreams[0].LocalPort)
}

// twoHopMTLSURL takes the same two sidecars on the service's mTLS port:
// the client sidecar dials the server sidecar with mTLS.
func (m *weftMesh) twoHopMTLSURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/echo", m.clientMI.Upstreams[2].LocalPort)
}

func (m *weftMesh) serverOnlyGRPC() string {
	return fmt.Sprintf("127.0.0.1:%d", m.serverMI.Ports[1].InboundPort)
}

func (m *weftMesh) twoHopGRPC() string {
	return fmt.Sprintf("127.0.0.1:%d", m.clientMI.Upstreams[1].LocalPort)
}

// profile saves a CPU profile of a sidecar taken over d.
func profileSidecar(ctx context.Context, adminPort uint32, d time.Duration, path string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", adminPort, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func (m *weftMesh) stop() {
	m.client.stop()
	m.server.stop()
	m.cancel()
	select {
	case <-m.cpDone:
	case <-time.After(10 * time.Second):
	}
}

// freePorts picks n free loopback ports.
func freePorts(n int) ([]uint32, error) {
	var out []uint32
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, uint32(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

// waitHTTP polls url until it answers 200, the process exits, or the time
// is up.
func waitHTTP(ctx context.Context, url string, d time.Duration, p *proc) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %v: %v", d, last)
}

// takesConcurrency asks bin's --help whether it takes --concurrency
// (since 2026-11-27; binaries before it are measured with GOMAXPROCS set).
func takesConcurrency(ctx context.Context, bin string) bool {
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput() // exits 0 or 2 after the usage
	return strings.Contains(string(out), "-concurrency")
}

// sidecarMetrics fetches the /stats/prometheus page of the sidecar whose
// admin API is at admin.
func sidecarMetrics(ctx context.Context, admin string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/stats/prometheus", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// sidecarThreads reads the Go processors (GOMAXPROCS) a sidecar runs on
// now from its admin API's go_sched_gomaxprocs_threads; 0 when it cannot.
func sidecarThreads(ctx context.Context, admin string) int {
	body, err := sidecarMetrics(ctx, admin)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
