package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/supervisor"
	"weft.dev/weft/internal/xdsmeta"
)

const syscallZero = syscall.Signal(0)

// gatewayName is the instance name of the local ingress gateway.
const gatewayName = "ingressgateway"

// gatewayProblem is the key of the gateway's problems (and of its failed
// settings in proxyFailed, beside the Workloads').
const gatewayProblem = "ingress"

// mesh is one weft up run.
type mesh struct {
	opts      Options
	log       *slog.Logger
	self      string
	proxy     []string
	cp        *controlplane.Server
	sup       *supervisor.Supervisor
	ports     *ports
	configDir string
	stateDir  string
	demo      bool

	// reconcileMu serialises reconcile runs.
	reconcileMu sync.Mutex

	mu       sync.Mutex
	running  map[string]*instance // by ProxyKey
	gateway  *instance
	traffic  *supervisor.Handle
	problems map[string]string // by Workload key: why it cannot run
	// proxyFailed are the proxy settings that failed to start, by
	// Workload key (the gateway's by gatewayProblem), not tried again
	// until the settings asked for change.
	proxyFailed map[string]proxyFailure
	stopping    bool
	// prometheus is the URL of the Prometheus weft up started, if any.
	prometheus string
	// logs are the open per-process log files, by path.
	logs map[string]*rotatingLog

	// spiffeMu guards spiffeLaid, the per-identity proxy paths laid out
	// in this run (spiffeProxyPath).
	spiffeMu   sync.Mutex
	spiffeLaid map[string]bool
}

// instance is one running app + sidecar (or a gateway: app is nil).
type instance struct {
	model   *model.Instance
	specKey string              // the Workload spec it was started from
	proxy   model.ProxySettings // its sidecar's, from its ProxyConfigs
	app     *supervisor.Handle
	sidecar *supervisor.Handle
}

// desired is an instance the config asks for.
type desired struct {
	workload *config.Resource
	spec     *config.Workload
	proxy    model.ProxySettings // from the ProxyConfigs that apply
	specKey  string
	name     string
}

// proxyFailure is a proxy restart with new settings that failed and was
// rolled back.
type proxyFailure struct {
	key     string // proxyKey of the settings that failed
	problem string
}

// proxyKey is the part of settings that needs a proxy started anew when it
// changes (ProxyConfig fields take effect at start, as in Istio).
func proxyKey(settings model.ProxySettings) string {
	data, _ := json.Marshal(struct {
		Concurrency *int32
		Env         map[string]string
	}{settings.Concurrency, settings.Env})
	return string(data)
}

// follow reconciles on every new model until ctx is done.
func (m *mesh) follow(ctx context.Context) {
	var v uint64
	for {
		snap, err := m.cp.WaitNewer(ctx, v)
		if err != nil {
			return
		}
		v = snap.Version
		m.reconcile(ctx)
	}
}

// reconcile starts the instances the config asks for and that are not
// running (or run an older spec), and stops those it no longer asks for.
func (m *mesh) reconcile(ctx context.Context) {
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()

	set, snap := m.cp.Resources(), m.cp.Snapshot()
	if set == nil || snap == nil {
		return
	}
	// A Workload that fails validation runs nothing new; one whose last
	// good version is still in force keeps the instances it has, as the
	// rest of the mesh keeps serving that version.
	// Rejections are per resource as read (a Workload defined twice has a
	// valid copy and a rejected one).
	rejected := map[model.Meta]bool{}
	lastGood := map[string]bool{} // "ns/name" of Workloads serving their last good version
	for _, st := range snap.Status {
		if st.Kind == config.KindWorkload && st.State == model.StateInvalid {
			rejected[st.Meta] = true
			if st.ServingLastGood {
				lastGood[st.Namespace+"/"+st.Name] = true
			}
		}
	}
	want := map[string]desired{}
	var gateways bool
	for _, r := range set.Resources {
		if r.Invalid || r.Kind == config.KindWorkload && rejected[r.Meta] {
			continue
		}
		switch spec := r.Spec.(type) {
		case *config.Workload:
			data, _ := json.Marshal(spec)
			var proxy model.ProxySettings
			if spec.Sidecar {
				proxy = snap.ProxySettingsFor(r.Namespace, spec.InstanceLabels())
			}
			for i := range spec.Replicas {
				d := desired{workload: r, spec: spec, proxy: proxy, specKey: string(data), name: fmt.Sprintf("%s-%d", r.Name, i)}
				want[d.name+"."+r.Namespace] = d
			}
		}
		if r.Kind == config.KindGateway {
			gateways = true
		}
	}

	var gwProxy model.ProxySettings
	if gateways {
		gwProxy = snap.ProxySettingsFor(model.IngressGatewayNamespace, model.IngressGatewayLabels)
	}

	// Stop what is no longer wanted or has changed; restart the sidecars
	// whose settings (ProxyConfigs) changed.
	// Settings that failed stay failed until the settings asked for
	// change (or the Workload, or every Gateway, goes).
	problems := map[string]string{}
	m.mu.Lock()
	for wkey, f := range m.proxyFailed {
		still := wkey == gatewayProblem && gateways && proxyKey(gwProxy) == f.key
		for _, d := range want {
			still = still || d.workload.Key() == wkey && d.spec.Sidecar && proxyKey(d.proxy) == f.key
		}
		if still {
			problems[wkey] = f.problem
		} else {
			delete(m.proxyFailed, wkey)
		}
	}
	var stale []*instance
	resettle := map[*instance]desired{}
	for key, in := range m.running {
		if lastGood[in.model.Namespace+"/"+in.model.Workload] {
			continue
		}
		d, ok := want[key]
		switch {
		case !ok || d.specKey != in.specKey:
			stale = append(stale, in)
			delete(m.running, key)
		case in.sidecar != nil && proxyKey(d.proxy) != proxyKey(in.proxy):
			if _, failed := m.proxyFailed[d.workload.Key()]; !failed {
				resettle[in] = d
			}
		default:
			in.proxy = d.proxy // the same settings, perhaps from other ProxyConfigs
		}
	}
	m.mu.Unlock()
	for _, in := range stale {
		m.log.Info("stopping instance", "instance", in.model.Name, "namespace", in.model.Namespace)
		m.stopInstance(ctx, in)
	}

	// Start what is missing, in parallel: each waits for its sidecar.
	var wg sync.WaitGroup
	maps.Copy(problems, m.restartSidecars(ctx, resettle))
	var pmu sync.Mutex
	for _, key := range slices.Sorted(maps.Keys(want)) {
		m.mu.Lock()
		_, ok := m.running[key]
		m.mu.Unlock()
		if ok {
			continue
		}
		d := want[key]
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := m.startInstance(ctx, d)
			if err != nil {
				pmu.Lock()
				problems[d.workload.Key()] = err.Error()
				pmu.Unlock()
				m.log.Error("workload cannot run", "workload", d.workload.Key(), "err", err)
				return
			}
			m.mu.Lock()
			m.running[key] = in
			m.mu.Unlock()
		}()
	}
	wg.Wait()
	gwStart := gwProxy // the settings a gateway started below runs with
	if gateways {
		m.mu.Lock()
		gw := m.gateway
		_, failed := m.proxyFailed[gatewayProblem]
		switch {
		case gw == nil:
		case proxyKey(gw.proxy) != proxyKey(gwProxy):
			if failed {
				gw = nil // these settings failed: not tried again until they change
			}
		default:
			gw.proxy = gwProxy // the same settings, perhaps from other ProxyConfigs
			gw = nil
		}
		m.mu.Unlock()
		if gw != nil {
			m.log.Info("restarting the ingress gateway: its ProxyConfig changed", "proxyConfigs", gwProxy.From)
			err := m.restartProxy(ctx, gw, gwProxy, func(settings model.ProxySettings) (*supervisor.Handle, error) {
				return m.startGatewayProxy(ctx, gw.model, settings)
			})
			if err != nil {
				problems[gatewayProblem] = m.proxyFailedWith(gatewayProblem, gwProxy,
					fmt.Sprintf("ingress gateway: %v; it keeps its previous settings until its ProxyConfigs change", err))
				if errors.Is(err, errProxyDown) {
					// Its old settings did not start in place either: a
					// gateway is started anew below with them, on ports
					// of its own, as when there was none.
					m.mu.Lock()
					m.gateway, gwStart = nil, gw.proxy
					m.mu.Unlock()
				}
			}
		}
	}
	m.mu.Lock()
	m.problems = problems
	needGateway := gateways && m.gateway == nil
	needTraffic := m.demo && !m.opts.NoTraffic && m.traffic == nil
	m.mu.Unlock()

	if needGateway {
		gw, err := m.startGateway(ctx, gwStart)
		if err != nil {
			m.log.Error("ingress gateway cannot run", "err", err)
			m.mu.Lock()
			m.problems[gatewayProblem] = err.Error()
			m.mu.Unlock()
		} else {
			m.mu.Lock()
			m.gateway = gw
			m.mu.Unlock()
		}
	}
	if err := m.writePrometheus(); err != nil {
		m.log.Warn("cannot write the Prometheus scrape config", "dir", m.prometheusDir(), "err", err)
	}
	if needTraffic {
		h, err := m.sup.Start(ctx, supervisor.Process{
			Name:    "traffic",
			Group:   groupTraffic,
			Command: []string{m.self, "demo-app", "traffic", "--target", "http://127.0.0.1:8080/productpage"},
			Log:     m.openLog(model.DefaultNamespace, "traffic"),
		})
		if err != nil {
			m.log.Warn("demo traffic generator cannot run", "err", err)
		} else {
			m.mu.Lock()
			m.traffic = h
			m.mu.Unlock()
		}
	}
}

// startInstance gives an instance its ports, registers it, starts its
// sidecar, waits for the sidecar to have its config, then starts the app.
func (m *mesh) startInstance(ctx context.Context, d desired) (*instance, error) {
	spec := d.spec
	ns := d.workload.Namespace
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("%s:%d: Workload %s/%s: spec.command: no command: say what to run", d.workload.File, d.workload.Line, ns, d.workload.Name)
	}
	sidecar := spec.Sidecar
	mi := &model.Instance{
		Name:           d.name,
		Namespace:      ns,
		Workload:       d.workload.Name,
		Service:        spec.Service,
		Labels:         spec.InstanceLabels(),
		ServiceAccount: spec.ServiceAccount,
		Locality:       spec.Locality,
		Address:        "127.0.0.1",
	}
	if mi.ServiceAccount == "" {
		mi.ServiceAccount = "default"
	}
	env := map[string]string{}
	for i, p := range spec.Ports {
		app, err := m.ports.free()
		if err != nil {
			return nil, err
		}
		inbound := app
		if sidecar {
			if inbound, err = m.ports.free(); err != nil {
				return nil, err
			}
		}
		mi.Ports = append(mi.Ports, model.InstancePort{
			Name: p.Name, Number: p.Number, AppPort: app, InboundPort: inbound,
			Protocol: model.ProtocolFromPort(p.Protocol, p.AppProtocol, p.Name),
		})
		ps := strconv.Itoa(int(app))
		if i == 0 {
			env["PORT"] = ps
		}
		env["PORT_"+config.PortEnvName(p.Name)] = ps
	}
	var err error
	if sidecar {
		if mi.OutboundPort, err = m.ports.free(); err != nil {
			return nil, err
		}
		if mi.AdminPort, err = m.ports.free(); err != nil {
			return nil, err
		}
		if mi.StatsPort, err = m.ports.free(); err != nil {
			return nil, err
		}
		proxyURL := fmt.Sprintf("http://127.0.0.1:%d", mi.OutboundPort)
		for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
			env[k] = proxyURL
		}
		env["NO_PROXY"] = "localhost,127.0.0.1,::1"
		env["no_proxy"] = env["NO_PROXY"]
		// Explicit local upstream ports: the sidecar listens on each for
		// one service port (listener "outbound|<local port>|<host>:<port>").
		for _, u := range spec.Upstreams {
			local, err := m.ports.free()
			if err != nil {
				return nil, err
			}
			mi.Upstreams = append(mi.Upstreams, model.InstanceUpstream{Host: model.FQDN(u.Service, ns), Port: u.Port, LocalPort: local})
			name := u.Env
			if name == "" {
				name = config.UpstreamEnvName(u.Service, u.Port)
			}
			env[name] = fmt.Sprintf("127.0.0.1:%d", local)
		}
	}
	env["WEFT_INSTANCE"] = mi.Name
	env["WEFT_NAMESPACE"] = ns
	env["WEFT_SERVICE"] = spec.Service
	for k, v := range spec.Env {
		env[k] = expand(v, env)
	}
	command := make([]string, len(spec.Command))
	for i, a := range spec.Command {
		command[i] = expand(a, env)
	}
	if command[0] == "weft" {
		command[0] = m.self
	}
	dir := filepath.Dir(d.workload.File)
	if spec.WorkingDir != "" {
		dir = spec.WorkingDir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(filepath.Dir(d.workload.File), dir)
		}
	}
	in := &instance{model: mi, specKey: d.specKey, proxy: d.proxy}
	appSpec := supervisor.Process{
		Name:    mi.Name,
		Group:   groupApp,
		Command: command,
		Env:     envList(env),
		Dir:     dir,
		Log:     m.openLog(ns, mi.Name),
	}
	if len(mi.Ports) > 0 {
		appSpec.Ready = tcpReady(mi) // one without ports (a client, a job) is ready once started
	}
	// Check the command before anything starts, so a typo is one clear
	// message and nothing is left half-started.
	if err := supervisor.CheckCommand(appSpec); err != nil {
		return nil, fmt.Errorf("%s:%d: Workload %s/%s: spec.command: %w: check the program name and the workload's workingDir", d.workload.File, d.workload.LineOf("spec.command"), ns, d.workload.Name, err)
	}
	if sidecar {
		m.cp.Instances().Set(mi)
		m.waitModel(ctx, mi)
		h, err := m.startSidecar(ctx, mi, spec, d.proxy)
		if h == nil {
			m.cp.Instances().Remove(mi.ProxyKey())
			return nil, err
		}
		if err != nil {
			m.log.Warn("starting the app anyway", "instance", mi.Name, "err", err)
		}
		in.sidecar = h
	} else {
		m.cp.Instances().Set(mi)
	}
	h, err := m.sup.Start(ctx, appSpec)
	if err != nil {
		if in.sidecar != nil {
			_ = in.sidecar.Stop(ctx)
		}
		m.cp.Instances().Remove(mi.ProxyKey())
		return nil, fmt.Errorf("%s:%d: Workload %s/%s: spec.command: %w", d.workload.File, d.workload.LineOf("spec.command"), ns, d.workload.Name, err)
	}
	in.app = h
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.WaitReady(wctx); err != nil {
		m.log.Warn("app not ready yet", "instance", mi.Name, "err", err)
	}
	return in, nil
}

// startSidecar starts mi's sidecar, run with settings, and waits (at
// most 30 s) for it to be ready, which the error says it is not when the
// handle comes with one.
func (m *mesh) startSidecar(ctx context.Context, mi *model.Instance, spec *config.Workload, settings model.ProxySettings) (*supervisor.Handle, error) {
	if len(settings.From) > 0 {
		m.log.Info("sidecar settings from ProxyConfig", "instance", mi.Name, "namespace", mi.Namespace, "proxyConfigs", settings.From)
	}
	return m.startProxy(ctx, "sidecar of "+mi.Name, mi, settings, supervisor.Process{
		Name:    mi.Name + ".proxy",
		Group:   groupSidecar,
		Command: append(m.proxyArgs(xdsmeta.ProxyTypeSidecar, mi, settings), appMetricsArgs(spec, mi)...),
		Log:     m.openLog(mi.Namespace, mi.Name+".proxy"),
	})
}

// startProxy starts p, the proxy of mi (what names it in errors), with
// settings' environment, and waits (at most 30 s) for its admin API to
// say it is ready. It returns the handle of a proxy that started, ready
// or not, and an error when it did not start or is not ready.
func (m *mesh) startProxy(ctx context.Context, what string, mi *model.Instance, settings model.ProxySettings, p supervisor.Process) (*supervisor.Handle, error) {
	p.Env = envList(settings.Env)
	p.Ready = supervisor.HTTPReady(fmt.Sprintf("http://127.0.0.1:%d/ready", mi.AdminPort))
	p.Quiet = isAccessLog
	h, err := m.sup.Start(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.WaitReady(wctx); err != nil {
		return h, fmt.Errorf("%s not ready: %w", what, err)
	}
	return h, nil
}

// restartSidecars starts anew the sidecars in resettle with the settings
// their desired instance asks for (a ProxyConfig changed). Each Workload's
// instances go one at a time, each once the one before is ready, so that
// a Workload with replicas keeps serving; Workloads go in parallel. A
// sidecar that does not start or is not ready with the new settings is
// rolled back to its old ones, that Workload's round stops, and the
// settings are not tried again until they change (proxyFailed). It
// returns the problems met, by Workload. Only reconcile calls it.
func (m *mesh) restartSidecars(ctx context.Context, resettle map[*instance]desired) map[string]string {
	byWorkload := map[string][]*instance{}
	for in, d := range resettle {
		byWorkload[d.workload.Key()] = append(byWorkload[d.workload.Key()], in)
	}
	problems := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for key, ins := range byWorkload {
		slices.SortFunc(ins, func(a, b *instance) int { return strings.Compare(a.model.Name, b.model.Name) })
		wg.Go(func() {
			for _, in := range ins {
				d := resettle[in]
				m.log.Info("restarting a sidecar: its ProxyConfig changed", "instance", in.model.Name, "namespace", in.model.Namespace)
				err := m.restartProxy(ctx, in, d.proxy, func(settings model.ProxySettings) (*supervisor.Handle, error) {
					return m.startSidecar(ctx, in.model, d.spec, settings)
				})
				if err != nil {
					p := m.proxyFailedWith(key, d.proxy, fmt.Sprintf("Workload %s: %v; its sidecars keep their previous settings until its ProxyConfigs change", key, err))
					mu.Lock()
					problems[key] = p
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return problems
}

// restartProxy starts in's proxy (a sidecar or the gateway) anew with
// settings, on the same ports, by start, which waits (at most 30 s) for
// it to be ready; a sidecar's app keeps running (its requests through
// the sidecar fail while none listens). A proxy that does not start or
// is not ready is stopped and its old settings start again; the error
// says so, and wraps errProxyDown when the old settings did not start
// either.
func (m *mesh) restartProxy(ctx context.Context, in *instance, settings model.ProxySettings, start func(model.ProxySettings) (*supervisor.Handle, error)) error {
	stop := func(h *supervisor.Handle) {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_ = h.Stop(sctx)
	}
	stop(in.sidecar)
	h, err := start(settings)
	if err == nil {
		m.mu.Lock()
		in.proxy, in.sidecar = settings, h
		m.mu.Unlock()
		return nil
	}
	m.log.Error("proxy restart failed; going back to its previous settings", "instance", in.model.Name, "namespace", in.model.Namespace, "err", err)
	if h != nil {
		stop(h)
	}
	old, oerr := start(in.proxy)
	if old != nil {
		m.mu.Lock()
		in.sidecar = old
		m.mu.Unlock()
	}
	if oerr != nil {
		if old == nil {
			return fmt.Errorf("%w; with its previous settings: %w (%w)", err, oerr, errProxyDown)
		}
		return fmt.Errorf("%w; with its previous settings: %v", err, oerr)
	}
	return err
}

// proxyFailedWith records that the proxies under key (a Workload's, or
// gatewayProblem) did not start with settings, so that those settings
// are not tried again until they change, and returns problem.
func (m *mesh) proxyFailedWith(key string, settings model.ProxySettings, problem string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proxyFailed == nil {
		m.proxyFailed = map[string]proxyFailure{}
	}
	m.proxyFailed[key] = proxyFailure{key: proxyKey(settings), problem: problem}
	return problem
}

// errProxyDown marks a restart after which no proxy runs: neither the
// new settings nor the old started.
var errProxyDown = errors.New("no proxy running")

// waitModel waits (at most a few seconds) until the model in force knows
// the instance with its ports and the proxies are served that model.
// Instances reach the model through the control plane's debounced
// rebuild; a sidecar that connected before would get a first config
// without them (its outbound listener on the default port, where another
// sidecar may be) and reject it. A model whose xDS update failed is not
// served: its sidecar would get the config before it.
func (m *mesh) waitModel(ctx context.Context, mi *model.Instance) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v uint64
	for {
		if snap := m.cp.Snapshot(); snap != nil {
			if got := snap.Instances[mi.ProxyKey()]; got != nil && got.OutboundPort == mi.OutboundPort && got.AdminPort == mi.AdminPort &&
				m.cp.Served() >= snap.Version {
				return
			}
			v = snap.Version
		}
		if _, err := m.cp.WaitNewer(ctx, v); err != nil {
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				m.log.Warn("the model does not know the instance yet; starting its sidecar anyway", "instance", mi.Name)
			}
			return
		}
	}
}

func (m *mesh) stopInstance(ctx context.Context, in *instance) {
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if in.app != nil {
		_ = in.app.Stop(sctx)
	}
	m.cp.Instances().Remove(in.model.ProxyKey())
	if in.sidecar != nil {
		_ = in.sidecar.Stop(sctx)
	}
	m.revokeIdentity(in.model)
}

// startGateway runs the ingress gateway proxy; the control plane gives it
// listeners for the Gateways that select istio=ingressgateway. A gateway
// not ready in 30 s keeps running (its listeners may yet bind), with a
// warning.
func (m *mesh) startGateway(ctx context.Context, settings model.ProxySettings) (*instance, error) {
	admin, err := m.ports.free()
	if err != nil {
		return nil, err
	}
	stats, err := m.ports.free()
	if err != nil {
		return nil, err
	}
	mi := &model.Instance{
		Name: gatewayName, Namespace: model.DefaultNamespace, Workload: gatewayName, Address: "127.0.0.1",
		Labels:         maps.Clone(model.IngressGatewayLabels),
		ServiceAccount: "ingressgateway", AdminPort: admin, StatsPort: stats,
	}
	h, err := m.startGatewayProxy(ctx, mi, settings)
	if h == nil {
		return nil, err
	}
	if err != nil {
		m.log.Warn("ingress gateway not ready", "err", err)
	}
	return &instance{model: mi, sidecar: h, proxy: settings}, nil
}

// startGatewayProxy starts the gateway proxy of mi with settings (see
// startProxy).
func (m *mesh) startGatewayProxy(ctx context.Context, mi *model.Instance, settings model.ProxySettings) (*supervisor.Handle, error) {
	return m.startProxy(ctx, "ingress gateway", mi, settings, supervisor.Process{
		Name:    gatewayName,
		Group:   groupGateway,
		Command: m.proxyArgs(xdsmeta.ProxyTypeGateway, mi, settings),
		Log:     m.openLog(mi.Namespace, gatewayName+".proxy"),
	})
}

// proxyArgs is the command line of mi's proxy, of type typ, run with
// settings (its Env is the caller's to pass).
func (m *mesh) proxyArgs(typ string, mi *model.Instance, settings model.ProxySettings) []string {
	labels := make([]string, 0, len(mi.Labels))
	for _, k := range slices.Sorted(maps.Keys(mi.Labels)) {
		labels = append(labels, k+"="+mi.Labels[k])
	}
	args := append([]string(nil), m.proxy...)
	if m.cp.SPIFFESocket() != "" && m.cp.CA() != nil {
		if p, err := m.spiffeProxyPath(mi, args[0]); err != nil {
			m.log.Warn("sidecar runs from the shared proxy path: the SPIRE agent cannot tell its identity from others'", "instance", mi.ProxyKey(), "err", err)
		} else {
			args[0] = p
		}
	}
	if mi.StatsPort != 0 {
		args = append(args, "--stats-addr", fmt.Sprintf("127.0.0.1:%d", mi.StatsPort))
	}
	ident := m.identityArgs(mi)
	args = append(args, ident...)
	if mi.Locality != "" {
		args = append(args, "--locality", mi.Locality)
	}
	if settings.Concurrency != nil {
		args = append(args, "--concurrency", strconv.Itoa(int(*settings.Concurrency)))
	}
	// A sidecar with an identity gets its config over mTLS on the CA's
	// port; without one, over the plaintext xDS port.
	xdsAddr := m.cp.XDSAddr()
	if len(ident) > 0 {
		xdsAddr = m.cp.CAAddr()
	}
	return append(args,
		"--xds-addr", xdsAddr,
		"--type", typ,
		"--name", mi.Name,
		"--namespace", mi.Namespace,
		"--workload", mi.Workload,
		"--labels", strings.Join(labels, ","),
		"--service-account", mi.ServiceAccount,
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", mi.AdminPort),
	)
}

// ingressURLs lists the gateway's HTTP server ports from the model.
func (m *mesh) ingressURLs() []string {
	snap := m.cp.Snapshot()
	if snap == nil {
		return nil
	}
	seen := map[uint32]bool{}
	var out []string
	for _, gw := range snap.Gateways {
		if !model.LabelsMatch(gw.Spec.GetSelector(), model.IngressGatewayLabels) {
			continue
		}
		for _, s := range gw.Spec.GetServers() {
			p := s.GetPort().GetNumber()
			if p != 0 && !seen[p] {
				seen[p] = true
				out = append(out, fmt.Sprintf("http://127.0.0.1:%d/", p))
			}
		}
	}
	sort.Strings(out)
	return out
}

// status gathers the mesh's state for `weft status` and the dashboard.
func (m *mesh) status() MeshStatus {
	st := MeshStatus{Admin: m.cp.AdminAddr(), XDS: m.cp.XDSAddr(), ConfigDir: m.configDir, Ingress: m.ingressURLs(),
		Instances: []InstanceStatus{}, Problems: []string{}}
	if snap := m.cp.Snapshot(); snap != nil {
		st.Version = snap.Version
		for _, rs := range snap.Status {
			if rs.State != model.StateInvalid && rs.State != model.StatePartial {
				continue
			}
			for _, f := range rs.Findings {
				if f.Severity == model.SeverityError {
					st.Problems = append(st.Problems, f.String())
				}
			}
		}
	}
	// A proxy that rejected its config says why (a gateway port already
	// taken, for example).
	for _, ps := range m.cp.XDS().Status() {
		for _, ts := range ps.Types {
			if ts.State == "NACKED" {
				st.Problems = append(st.Problems, fmt.Sprintf("proxy %s.%s rejected its %s config: %s", ps.Name, ps.Namespace, ts.Type, ts.Error))
			}
		}
	}
	st.ScrapeConfig = filepath.Join(m.prometheusDir(), "prometheus.yml")
	m.mu.Lock()
	defer m.mu.Unlock()
	st.Prometheus = m.prometheus
	for _, key := range slices.Sorted(maps.Keys(m.problems)) {
		st.Problems = append(st.Problems, m.problems[key])
	}
	add := func(in *instance, service string) {
		is := InstanceStatus{Service: service, Namespace: in.model.Namespace, Instance: in.model.Name, Workload: in.model.Workload, Version: in.model.Labels["version"], Locality: in.model.Locality,
			ProxyConfigs: in.proxy.From}
		if in.model.AdminPort != 0 {
			is.Sidecar = fmt.Sprintf("127.0.0.1:%d", in.model.AdminPort)
		}
		if in.model.StatsPort != 0 {
			is.Stats = fmt.Sprintf("127.0.0.1:%d", in.model.StatsPort)
		}
		if in.model.OutboundPort != 0 {
			is.Outbound = fmt.Sprintf("127.0.0.1:%d", in.model.OutboundPort)
		}
		for _, u := range in.model.Upstreams {
			if is.Upstreams == nil {
				is.Upstreams = map[string]string{}
			}
			is.Upstreams[fmt.Sprintf("%s:%d", u.Host, u.Port)] = fmt.Sprintf("127.0.0.1:%d", u.LocalPort)
		}
		if len(in.model.Ports) > 0 {
			is.Address = fmt.Sprintf("127.0.0.1:%d", in.model.Ports[0].InboundPort)
			is.App = fmt.Sprintf("127.0.0.1:%d", in.model.Ports[0].AppPort)
		}
		ready := true
		for _, h := range []*supervisor.Handle{in.sidecar, in.app} {
			if h == nil {
				continue
			}
			ps := h.Status()
			ready = ready && ps.Ready && ps.State == supervisor.StateRunning
			is.Restarts += ps.Restarts
			if is.State == "" || ps.State != supervisor.StateRunning {
				is.State = string(ps.State)
			}
		}
		is.Ready = ready
		if in.app != nil {
			is.PID = in.app.Status().PID
			if in.sidecar != nil {
				is.SidecarPID = in.sidecar.Status().PID
			}
		} else if in.sidecar != nil {
			is.PID = in.sidecar.Status().PID
		}
		st.Instances = append(st.Instances, is)
	}
	for _, key := range slices.Sorted(maps.Keys(m.running)) {
		in := m.running[key]
		add(in, in.model.Service)
	}
	if m.gateway != nil {
		add(m.gateway, "ingress")
		if len(st.Ingress) > 0 {
			st.Instances[len(st.Instances)-1].Address = strings.TrimSuffix(strings.TrimPrefix(st.Ingress[0], "http://"), "/")
		}
	}
	return st
}

func (m *mesh) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(m.status())
}

// appMetricsArgs asks the sidecar to merge the app's own metrics into its
// stats page when the Workload opted in (spec.metrics).
func appMetricsArgs(spec *config.Workload, mi *model.Instance) []string {
	if spec.Metrics == nil {
		return nil
	}
	for _, p := range mi.Ports {
		if p.Name == spec.Metrics.Port {
			return []string{"--app-metrics-url", fmt.Sprintf("http://127.0.0.1:%d%s", p.AppPort, spec.Metrics.Path)}
		}
	}
	return nil
}

// openLog returns the log file of a process, <state>/logs/<ns>/<name>.log,
// or nil (no file, terminal output only) if it cannot be opened.
func (m *mesh) openLog(ns, name string) io.Writer {
	path := filepath.Join(logDir(m.stateDir), ns, name+".log")
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.logs[path]; ok {
		return l
	}
	l, err := newRotatingLog(path)
	if err != nil {
		m.log.Warn("cannot keep a log file; output goes to the terminal only", "path", path, "err", err)
		return nil
	}
	if m.logs == nil {
		m.logs = map[string]*rotatingLog{}
	}
	m.logs[path] = l
	return l
}

// closeLogs closes every log file; called once the processes are stopped.
func (m *mesh) closeLogs() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.logs {
		_ = l.Close()
	}
}

// tcpReady is ready when the app accepts connections on its first port.
func tcpReady(mi *model.Instance) func(ctx context.Context) error {
	addr := fmt.Sprintf("127.0.0.1:%d", mi.Ports[0].AppPort)
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("app not listening on %s yet: %w", addr, err)
		}
		return c.Close()
	}
}

// expand replaces ${NAME} with env values.
func expand(s string, env map[string]string) string {
	return os.Expand(s, func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}
