// Package admin serves the proxy's admin API (loopback only by default):
// /ready, /config_dump, /clusters, /listeners, /stats/prometheus, /tap, POST
// /drain and /quitquitquit, and /debug/pprof when enabled. StatsHandler
// serves the same metrics alone, for the proxy's Prometheus port (15090).
package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"

	// The configs of extensions the sidecar handles by name (or lists
	// as unenforced) without decoding them, which the control plane
	// sends: linked so that /config_dump can print them
	// (TestProxyLinksEveryTypeTheControlPlaneSends).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/proxy/xdsclient"
)

// Deps are what the admin API reads and triggers. Funcs must be safe for
// concurrent use and must not block for long.
type Deps struct {
	// Snapshots holds the current runtime config.
	Snapshots *dataplane.Holder
	// Resources returns the xDS client's current resources (also those not
	// yet applied because the config is incomplete).
	Resources func() *xdsclient.Resources
	// Ready reports readiness.
	Ready func() bool
	// Listeners returns bound listener addresses by name.
	Listeners func() map[string]string
	// Metrics is served on /stats/prometheus.
	Metrics *proxymetrics.Metrics
	// Drain stops accepting connections and starts draining.
	Drain func()
	// Quit drains and exits.
	Quit func()
	// Pprof enables /debug/pprof/.
	Pprof bool
	// Certs, when set, is served on /certs (the workload certificate in
	// force, never its key); nil answers 404.
	Certs http.Handler
	// Tap is served on /tap (live request metadata, loopback callers
	// only); nil answers 404.
	Tap *tap.Hub
}

// Handler returns the admin API.
func Handler(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if d.Ready() {
			fmt.Fprintln(w, "LIVE")
			return
		}
		http.Error(w, "NOT READY", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, r *http.Request) { configDump(w, d.Resources()) })
	mux.HandleFunc("GET /clusters", func(w http.ResponseWriter, r *http.Request) { clusters(w, r, d.Snapshots.Load()) })
	mux.HandleFunc("GET /listeners", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d.Listeners())
	})
	mux.Handle("GET /stats/prometheus", metricsHandler(d.Metrics))
	if d.Certs != nil {
		mux.Handle("GET /certs", d.Certs)
	}
	mux.Handle("GET /tap", tap.Handler(d.Tap))
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		d.Drain()
		fmt.Fprintln(w, "draining")
	})
	mux.HandleFunc("POST /quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "OK")
		d.Quit()
	})
	if d.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// StatsHandler serves only the proxy's metrics, on /stats/prometheus and
// /metrics, from the same registry as the admin API's /stats/prometheus.
// It is meant for a port scrapers may reach (15090): it exposes nothing
// that changes the proxy or dumps its config.
//
// With appMetricsURL set (the app opted in to merged metrics), the metric
// pages carry the app's own metrics after the proxy's, as Istio's 15020
// does; a family the proxy also has keeps the proxy's.
func StatsHandler(m *proxymetrics.Metrics, ready func() bool, appMetricsURL string) http.Handler {
	mux := http.NewServeMux()
	h := metricsHandler(m)
	if appMetricsURL != "" {
		h = mergedMetrics(m, appMetricsURL)
	}
	mux.Handle("GET /stats/prometheus", h)
	mux.Handle("GET /metrics", h)
	// Health for whoever watches the workload (Istio's /healthz/ready on
	// 15020/15021): ready once the first full config is applied, not while
	// draining.
	health := func(w http.ResponseWriter, r *http.Request) {
		if ready == nil || !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}
	mux.HandleFunc("GET /ready", health)
	mux.HandleFunc("GET /healthz/ready", health)
	return mux
}

func metricsHandler(m *proxymetrics.Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// dumpType lists one xDS type's resources for /config_dump.
type dumpType struct {
	Version   string            `json:"version_info"`
	Error     string            `json:"last_nack,omitempty"`
	Resources []json.RawMessage `json:"resources"`
}

func configDump(w http.ResponseWriter, res *xdsclient.Resources) {
	out := map[string]dumpType{}
	keys := map[string]string{
		xdsclient.ListenerType: "listeners",
		xdsclient.RouteType:    "routes",
		xdsclient.ClusterType:  "clusters",
		xdsclient.EndpointType: "endpoints",
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	for url, key := range keys {
		dt := dumpType{Version: res.Versions[url], Error: res.Errors[url], Resources: make([]json.RawMessage, 0, res.Raw[url].Len())}
		err := res.Raw[url].Each(func(n string, raw []byte) error {
			b, err := marshalAny(mo, &anypb.Any{TypeUrl: url, Value: raw})
			if err != nil {
				// One resource that cannot be printed (a nested config
				// of a type this build does not link) does not hide
				// the others: it is listed by name, with the reason.
				b, _ = json.Marshal(map[string]string{"name": n, "dump_error": err.Error()})
			}
			dt.Resources = append(dt.Resources, b)
			return nil
		})
		if err != nil {
			http.Error(w, "reading the kept resources: "+err.Error(), http.StatusInternalServerError)
			return
		}
		out[key] = dt
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func marshalAny(mo protojson.MarshalOptions, a *anypb.Any) (json.RawMessage, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	b, err := mo.Marshal(m)
	return json.RawMessage(b), err
}

// ClusterStatus is one cluster in /clusters?format=json.
type ClusterStatus struct {
	// Name is the cluster's name.
	Name string `json:"name"`
	// LBPolicy is the load-balancing policy.
	LBPolicy string `json:"lb_policy"`
	// ActiveRequests are the requests in flight.
	ActiveRequests int64 `json:"rq_active"`
	// ActiveConnections are the open upstream connections.
	ActiveConnections int64 `json:"cx_active"`
	// Overflows counts circuit-breaker rejections.
	Overflows uint64 `json:"upstream_rq_pending_overflow"`
	// PriorityLoads are the shares of requests each priority level takes
	// now (none for ORIGINAL_DST clusters).
	PriorityLoads []PriorityLoad `json:"priority_loads,omitempty"`
	// Hosts are the endpoints.
	Hosts []HostStatus `json:"hosts"`
}

// PriorityLoad is one priority level's share of a cluster's requests.
type PriorityLoad struct {
	// Priority is the level (0 is the highest).
	Priority uint32 `json:"priority"`
	// Healthy is the percentage of requests that go to its available
	// hosts, Degraded to its degraded ones.
	Healthy  uint32 `json:"healthy_load"`
	Degraded uint32 `json:"degraded_load"`
	// Panic says the level sends its requests to all of its hosts,
	// ejected or unhealthy ones too.
	Panic bool `json:"panic"`
}

// HostStatus is one endpoint in /clusters?format=json.
type HostStatus struct {
	// Address is host:port.
	Address string `json:"address"`
	// Health is "healthy", "unhealthy", "draining" or "degraded", with
	// "/failed_outlier_check" after it (for "healthy": alone) while outlier
	// detection has the host ejected.
	Health string `json:"health"`
	// Weight is the endpoint's weight.
	Weight uint32 `json:"weight"`
	// Locality is region/zone/subzone, without trailing empty parts.
	Locality string `json:"locality,omitempty"`
	// Priority is the locality's priority.
	Priority uint32 `json:"priority"`
	// Active are the requests in flight to the host.
	Active int64 `json:"rq_active"`
	// Total counts requests sent to the host.
	Total uint64 `json:"rq_total"`
	// Failures counts failed requests.
	Failures uint64 `json:"rq_error"`
}

func clusters(w http.ResponseWriter, r *http.Request, s *dataplane.Snapshot) {
	var list []ClusterStatus
	if s != nil {
		names := make([]string, 0, len(s.Clusters))
		for n := range s.Clusters {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			list = append(list, clusterStatus(s.Clusters[n]))
		}
	}
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"clusters": list})
		return
	}
	var b strings.Builder
	for _, c := range list {
		fmt.Fprintf(&b, "%s::lb_policy::%s\n%s::rq_active::%d\n%s::cx_active::%d\n%s::overflow::%d\n",
			c.Name, c.LBPolicy, c.Name, c.ActiveRequests, c.Name, c.ActiveConnections, c.Name, c.Overflows)
		for _, l := range c.PriorityLoads {
			p := fmt.Sprintf("%s::priority::%d::", c.Name, l.Priority)
			fmt.Fprintf(&b, "%shealthy_load::%d\n%sdegraded_load::%d\n%spanic::%v\n", p, l.Healthy, p, l.Degraded, p, l.Panic)
		}
		for _, h := range c.Hosts {
			p := c.Name + "::" + h.Address + "::"
			fmt.Fprintf(&b, "%shealth_flags::%s\n%sweight::%d\n%slocality::%s\n%spriority::%d\n%srq_active::%d\n%srq_total::%d\n%srq_error::%d\n",
				p, h.Health, p, h.Weight, p, h.Locality, p, h.Priority, p, h.Active, p, h.Total, p, h.Failures)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func clusterStatus(c *upstream.Cluster) ClusterStatus {
	cs := ClusterStatus{
		Name: c.Name(), LBPolicy: c.Config().LB.String(),
		ActiveRequests: c.ActiveRequests(), ActiveConnections: c.ActiveConnections(), Overflows: c.Overflows.Load(),
		Hosts: []HostStatus{},
	}
	for _, l := range c.PriorityLoads() {
		cs.PriorityLoads = append(cs.PriorityLoads, PriorityLoad{Priority: l.Priority, Healthy: l.Healthy, Degraded: l.Degraded, Panic: l.Panic})
	}
	for _, h := range c.Hosts() {
		health := h.Health.String()
		if c.Config().Outlier != nil && h.Host.Ejected() {
			// Envoy's flag for a host outlier detection took out.
			if health == "healthy" {
				health = ""
			}
			health += "/failed_outlier_check"
		}
		cs.Hosts = append(cs.Hosts, HostStatus{
			Address: h.Host.Addr, Health: health, Weight: h.Weight, Locality: h.Locality, Priority: h.Priority,
			Active: h.Host.Active(), Total: h.Host.Total(), Failures: h.Host.Failures(),
		})
	}
	return cs
}
