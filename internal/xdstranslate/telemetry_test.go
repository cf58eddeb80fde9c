package xdstranslate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	trace "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	telemetry "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"weft.dev/weft/internal/logfilter"
	"weft.dev/weft/internal/model"
)

func tele(ns, name string, spec *telemetry.Telemetry) *model.Telemetry {
	return &model.Telemetry{Meta: model.Meta{Kind: "Telemetry", Namespace: ns, Name: name}, Spec: spec}
}

func withCollector(s *model.Snapshot) {
	s.MeshTelemetry = model.MeshTelemetry{TracingSampling: 1, TracingEndpoint: "127.0.0.1:4317"}
}

func productpage(s *model.Snapshot) *Proxy {
	p := sidecarProxy().WithSnapshot(s)
	p.Workload = "productpage-v1"
	return p
}

// telemetryCases cover the telemetry parts of every kind of HTTP
// connection manager (virtualOutbound chains, inbound, explicit upstream
// and gateway listeners) and the precedence of Telemetry resources.
func telemetryCases() []goldenCase {
	gateway := goldenCases()[len(goldenCases())-1]
	return []goldenCase{
		{name: "telemetry_mesh_default", mutate: func(s *model.Snapshot) {
			withCollector(s)
			addUpstreams(s)
		}, proxy: productpage},
		{name: "telemetry_precedence", mutate: func(s *model.Snapshot) {
			withCollector(s)
			s.Telemetries = []*model.Telemetry{
				tele("default", "reviews-only", &telemetry.Telemetry{
					Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "reviews"}},
					Tracing:  []*telemetry.Tracing{{RandomSamplingPercentage: wrapperspb.Double(5)}},
				}),
				tele("default", "shop", &telemetry.Telemetry{
					Tracing: []*telemetry.Tracing{{CustomTags: map[string]*telemetry.Tracing_CustomTag{
						"user": {Type: &telemetry.Tracing_CustomTag_Header{Header: &telemetry.Tracing_RequestHeader{Name: "end-user", DefaultValue: "anonymous"}}},
					}}},
				}),
				tele("default", "productpage", &telemetry.Telemetry{
					Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
					Tracing:  []*telemetry.Tracing{{RandomSamplingPercentage: wrapperspb.Double(50)}},
				}),
				tele("istio-system", "mesh", &telemetry.Telemetry{
					Tracing: []*telemetry.Tracing{{
						RandomSamplingPercentage: wrapperspb.Double(100),
						CustomTags: map[string]*telemetry.Tracing_CustomTag{
							"team": {Type: &telemetry.Tracing_CustomTag_Literal{Literal: &telemetry.Tracing_Literal{Value: "shop"}}},
							"zone": {Type: &telemetry.Tracing_CustomTag_Environment{Environment: &telemetry.Tracing_Environment{Name: "ZONE", DefaultValue: "local"}}},
						},
					}},
					AccessLogging: []*telemetry.AccessLogging{{Providers: []*telemetry.ProviderRef{{Name: model.AccessLogProviderName}}}},
				}),
			}
		}, proxy: productpage},
		{name: "telemetry_disabled", mutate: func(s *model.Snapshot) {
			s.MeshTelemetry = model.MeshTelemetry{TracingSampling: 1, TracingEndpoint: "127.0.0.1:4317", AccessLogging: true}
			s.Telemetries = []*model.Telemetry{tele("default", "quiet", &telemetry.Telemetry{
				Tracing:       []*telemetry.Tracing{{DisableSpanReporting: wrapperspb.Bool(true)}},
				AccessLogging: []*telemetry.AccessLogging{{Disabled: wrapperspb.Bool(true)}},
			})}
		}, proxy: productpage},
		{name: "telemetry_gateway", mutate: func(s *model.Snapshot) {
			gateway.mutate(s)
			s.MeshTelemetry = model.MeshTelemetry{TracingSampling: 100, TracingEndpoint: "collector.observability:4317", AccessLogging: true}
		}, proxy: func(s *model.Snapshot) *Proxy {
			p := gateway.proxy(s)
			p.Workload = "ingressgateway"
			return p
		}},
	}
}

func TestTelemetryGolden(t *testing.T) {
	for _, tc := range telemetryCases() {
		t.Run(tc.name, func(t *testing.T) {
			snap := testSnapshot()
			tc.mutate(snap)
			res, err := Translate(snap, tc.proxy(snap))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := dumpJSON(t, res)
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/xdstranslate -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestTelemetryEveryHCM checks, beyond the goldens, that every HTTP
// connection manager of a traced sidecar carries tracing and access_log,
// that every tcp_proxy (outbound and upstream TCP ports, the passthrough
// of a capturing sidecar) carries the access_log too, and that the
// proxy's clusters then hold the collector's.
func TestTelemetryEveryHCM(t *testing.T) {
	snap := testSnapshot()
	addUpstreams(snap)
	snap.MeshTelemetry = model.MeshTelemetry{TracingSampling: 1, TracingEndpoint: "127.0.0.1:4317", AccessLogging: true}
	p := productpage(snap)
	p.Capture = true
	res, err := Translate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	hcms, tcps := 0, 0
	for _, f := range telemetryFilters(t, res.Listeners) {
		if f.hcm != nil {
			hcms++
			if tracingCluster(f.hcm) != OTLPClusterName || len(f.accessLog) != 1 {
				t.Errorf("listener %q chain %q: tracing cluster %q, %d access logs; want %q and 1", f.listener, f.chain, tracingCluster(f.hcm), len(f.accessLog), OTLPClusterName)
			}
			continue
		}
		tcps++
		if len(f.accessLog) != 1 || f.accessLog[0].GetName() != StdoutAccessLogName {
			t.Errorf("listener %q chain %q: tcp_proxy access logs %v, want %s", f.listener, f.chain, f.accessLog, StdoutAccessLogName)
		}
	}
	if hcms < 4 {
		t.Errorf("found %d HTTP connection managers, want at least 4 (outbound, inbound, upstream)", hcms)
	}
	if tcps < 3 {
		t.Errorf("found %d tcp_proxy filters, want at least 3 (outbound, upstream, passthrough)", tcps)
	}
	if c := res.Clusters[len(res.Clusters)-1]; c.GetName() != OTLPClusterName || c.GetType() != cluster.Cluster_STATIC {
		t.Errorf("last cluster = %q (%v), want %q STATIC", c.GetName(), c.GetType(), OTLPClusterName)
	}
}

// TestCheckTracingCluster: a tracing config naming a cluster that is not
// published is an inconsistency.
func TestCheckTracingCluster(t *testing.T) {
	pol := &telemetryPolicy{tracing: true, sampling: 1, serviceName: "x", endpoint: "127.0.0.1:4317"}
	l := &listener.Listener{Name: "inbound|9080", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{
		hcmFilter(pol.apply(inlineManager("inbound_9080", nil))),
	}}}}
	err := Check(&Resources{Listeners: []*listener.Listener{l}})
	if err == nil || !strings.Contains(err.Error(), `cluster "weft-otlp" referenced by listener "inbound|9080" (tracing)`) {
		t.Errorf("Check without the collector's cluster = %v, want it missing", err)
	}
	if err := Check(&Resources{Listeners: []*listener.Listener{l}, Clusters: pol.withOTLP(nil)}); err != nil {
		t.Errorf("Check with the collector's cluster = %v", err)
	}
}

// TestTelemetrySharing: proxies of different workloads do not share a
// tracing config (it names the workload); the same workload does.
func TestTelemetrySharing(t *testing.T) {
	snap := testSnapshot()
	withCollector(snap)
	tr := New(snap)
	a := productpage(snap)
	b := productpage(snap)
	b.Workload = "productpage-v2"
	ra, _ := tr.Translate(a)
	ra2, _ := tr.Translate(productpage(snap))
	rb, _ := tr.Translate(b)
	if ra.Hashes != ra2.Hashes {
		t.Errorf("same workload: hashes differ")
	}
	if ra.Hashes.Listeners == rb.Hashes.Listeners {
		t.Errorf("different workloads share listeners whose tracing names the workload")
	}
}

// TestTelemetryAccessLogFilter: the most specific Telemetry that sets an
// access log filter decides it; one that turns logging on without a
// filter keeps the filter above it. The filter reaches the access_log of
// every HTTP connection manager and tcp_proxy.
func TestTelemetryAccessLogFilter(t *testing.T) {
	const meshWide, productpageOnly = `response.code >= 400`, `request.duration > duration('1s')`
	snap := testSnapshot()
	addUpstreams(snap)
	logs := func(expr string) []*telemetry.AccessLogging {
		a := &telemetry.AccessLogging{}
		if expr != "" {
			a.Filter = &telemetry.AccessLogging_Filter{Expression: expr}
		}
		return []*telemetry.AccessLogging{a}
	}
	snap.Telemetries = []*model.Telemetry{
		tele("default", "logs-on", &telemetry.Telemetry{AccessLogging: logs("")}),
		tele("default", "productpage", &telemetry.Telemetry{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			AccessLogging: logs(productpageOnly),
		}),
		tele(snap.MeshTelemetry.Root(), "mesh", &telemetry.Telemetry{AccessLogging: logs(meshWide)}),
	}
	reviews := sidecarProxy().WithSnapshot(snap)
	reviews.Labels = map[string]string{"app": "reviews"}
	for _, c := range []struct {
		proxy *Proxy
		want  string
	}{{productpage(snap), productpageOnly}, {reviews, meshWide}} {
		want, err := logfilter.Compile(c.want)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Translate(snap, c.proxy)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range telemetryFilters(t, res.Listeners) {
			n++
			if len(f.accessLog) != 1 || !proto.Equal(f.accessLog[0].GetFilter(), want) {
				t.Errorf("%s: listener %q chain %q: access log %v, want the filter of %q", c.proxy.Labels["app"], f.listener, f.chain, f.accessLog, c.want)
			}
		}
		if n == 0 {
			t.Errorf("%s: no access log", c.proxy.Labels["app"])
		}
	}
}

// TestTelemetryMatchModes: a Telemetry entry's match mode limits it to
// one side: here spans on the client side (outbound listeners, the
// outbound passthrough) and the access log on the server side (inbound
// listeners, the inbound passthrough) of a capturing sidecar; a gateway
// is a client.
func TestTelemetryMatchModes(t *testing.T) {
	snap := testSnapshot()
	addUpstreams(snap)
	withCollector(snap)
	snap.Telemetries = []*model.Telemetry{tele("default", "sides", &telemetry.Telemetry{
		// As in Istio, the mesh default (a collector: spans on
		// both sides) holds where no entry's mode reaches, so the server
		// side's spans are turned off explicitly.
		Tracing:       []*telemetry.Tracing{{Match: &telemetry.Tracing_TracingSelector{Mode: telemetry.WorkloadMode_SERVER}, DisableSpanReporting: wrapperspb.Bool(true)}},
		AccessLogging: []*telemetry.AccessLogging{{Match: &telemetry.AccessLogging_LogSelector{Mode: telemetry.WorkloadMode_SERVER}}},
	})}
	p := productpage(snap)
	p.Capture = true
	res, err := Translate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	sides := map[bool]int{}
	for _, f := range telemetryFilters(t, res.Listeners) {
		traced := !f.server // a tcp_proxy has no tracing
		if f.hcm != nil {
			traced = f.hcm.GetTracing() != nil
		}
		sides[f.server]++
		if logged := len(f.accessLog) > 0; traced != !f.server || logged != f.server {
			t.Errorf("listener %q chain %q (server side %v): traced %v, logged %v", f.listener, f.chain, f.server, traced, logged)
		}
	}
	if sides[true] == 0 || sides[false] == 0 {
		t.Errorf("filters by side %v, want both sides", sides)
	}
	if c := res.Clusters[len(res.Clusters)-1]; c.GetName() != OTLPClusterName {
		t.Errorf("last cluster = %q, want the collector's: the client side traces", c.GetName())
	}

	gw := goldenCases()[len(goldenCases())-1]
	gw.mutate(snap)
	res, err = Translate(snap, gw.proxy(snap))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range telemetryFilters(t, res.Listeners) {
		if f.hcm != nil && (f.hcm.GetTracing() == nil || len(f.accessLog) > 0) {
			t.Errorf("gateway listener %q: traced %v, %d access logs; want traced (client side) and not logged (server side)", f.listener, f.hcm.GetTracing() != nil, len(f.accessLog))
		}
	}
}

// sideTelemetry reports, per side of res's listeners (true: server),
// whether any HTTP connection manager traces, its sampling, and whether
// any filter logs.
func sideTelemetry(t *testing.T, res *Resources) (traced, logged map[bool]bool, sampling map[bool]float64) {
	t.Helper()
	traced, logged, sampling = map[bool]bool{}, map[bool]bool{}, map[bool]float64{}
	for _, f := range telemetryFilters(t, res.Listeners) {
		if f.hcm != nil && f.hcm.GetTracing() != nil {
			traced[f.server] = true
			sampling[f.server] = f.hcm.GetTracing().GetRandomSampling().GetValue()
		}
		logged[f.server] = logged[f.server] || len(f.accessLog) > 0
	}
	return traced, logged, sampling
}

// TestTelemetryModeOverridesOneSide: as in Istio, a more specific
// Telemetry whose entry is limited to one mode overrides that mode only:
// the other side keeps what the less specific levels set.
func TestTelemetryModeOverridesOneSide(t *testing.T) {
	snap := testSnapshot()
	withCollector(snap)
	snap.Telemetries = []*model.Telemetry{
		tele(snap.MeshTelemetry.Root(), "mesh", &telemetry.Telemetry{
			Tracing:       []*telemetry.Tracing{{RandomSamplingPercentage: wrapperspb.Double(10)}},
			AccessLogging: []*telemetry.AccessLogging{{}},
		}),
		tele("default", "server-side", &telemetry.Telemetry{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			Tracing:       []*telemetry.Tracing{{Match: &telemetry.Tracing_TracingSelector{Mode: telemetry.WorkloadMode_SERVER}, RandomSamplingPercentage: wrapperspb.Double(100)}},
			AccessLogging: []*telemetry.AccessLogging{{Match: &telemetry.AccessLogging_LogSelector{Mode: telemetry.WorkloadMode_SERVER}, Disabled: wrapperspb.Bool(true)}},
		}),
	}
	res, err := Translate(snap, productpage(snap))
	if err != nil {
		t.Fatal(err)
	}
	traced, logged, sampling := sideTelemetry(t, res)
	if !traced[false] || sampling[false] != 10 {
		t.Errorf("client side: traced %v, sampling %v; want traced at 10%% (the root's, which the SERVER entry leaves alone)", traced[false], sampling[false])
	}
	if !traced[true] || sampling[true] != 100 {
		t.Errorf("server side: traced %v, sampling %v; want traced at 100%%", traced[true], sampling[true])
	}
	if !logged[false] || logged[true] {
		t.Errorf("logged by side %v; want the client side only (the SERVER entry disables the server's)", logged)
	}
}

// TestTelemetryClientTracingOff: spans turned off on the client side only: a sidecar's
// inbound still traces (the mesh default) and needs the collector; a
// gateway, a client, traces nowhere and needs none.
func TestTelemetryClientTracingOff(t *testing.T) {
	snap := testSnapshot()
	withCollector(snap)
	snap.Telemetries = []*model.Telemetry{tele(snap.MeshTelemetry.Root(), "mesh", &telemetry.Telemetry{
		Tracing: []*telemetry.Tracing{{Match: &telemetry.Tracing_TracingSelector{Mode: telemetry.WorkloadMode_CLIENT}, DisableSpanReporting: wrapperspb.Bool(true)}},
	})}
	hasCollector := func(res *Resources) bool {
		for _, c := range res.Clusters {
			if c.GetName() == OTLPClusterName {
				return true
			}
		}
		return false
	}
	res, err := Translate(snap, productpage(snap))
	if err != nil {
		t.Fatal(err)
	}
	if traced, _, _ := sideTelemetry(t, res); traced[false] || !traced[true] || !hasCollector(res) {
		t.Errorf("sidecar: traced by side %v, collector %v; want the server side only, with the collector", traced, hasCollector(res))
	}
	gw := goldenCases()[len(goldenCases())-1]
	gw.mutate(snap)
	res, err = Translate(snap, gw.proxy(snap))
	if err != nil {
		t.Fatal(err)
	}
	if traced, _, _ := sideTelemetry(t, res); traced[false] || traced[true] || hasCollector(res) {
		t.Errorf("gateway: traced by side %v, collector %v; want neither", traced, hasCollector(res))
	}
}

// TestTelemetrySharingWithoutWorkload: proxies without a workload are
// named in their spans by their own names, so their outbound listeners,
// which the translation caches, are not shared.
func TestTelemetrySharingWithoutWorkload(t *testing.T) {
	snap := testSnapshot()
	withCollector(snap)
	tr := New(snap)
	for _, name := range []string{"productpage-v1-0", "productpage-v1-1"} {
		p := sidecarProxy().WithSnapshot(snap)
		p.Name, p.ID = name, p.ID+name
		res, err := tr.Translate(p)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range telemetryFilters(t, res.Listeners) {
			if f.hcm == nil {
				continue
			}
			otel := &trace.OpenTelemetryConfig{}
			if err := f.hcm.GetTracing().GetProvider().GetTypedConfig().UnmarshalTo(otel); err != nil {
				t.Fatal(err)
			}
			n++
			if otel.GetServiceName() != name {
				t.Errorf("proxy %s: listener %q traces as %q", name, f.listener, otel.GetServiceName())
			}
		}
		if n == 0 {
			t.Fatalf("proxy %s: no traced HTTP connection manager", name)
		}
	}
}

// telemetryFilter is one HTTP connection manager or tcp_proxy of a
// translation: where it is, and its access logs.
type telemetryFilter struct {
	listener, chain string
	// server is set on the server side: an inbound listener.
	server    bool
	hcm       *hcm.HttpConnectionManager // nil for a tcp_proxy
	accessLog []*accesslog.AccessLog
}

// telemetryFilters decodes every HTTP connection manager and tcp_proxy
// of ls, default filter chains included.
func telemetryFilters(t *testing.T, ls []*listener.Listener) []telemetryFilter {
	t.Helper()
	var out []telemetryFilter
	for _, l := range ls {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains, l.GetDefaultFilterChain())
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				tf := telemetryFilter{listener: l.GetName(), chain: fc.GetName(), server: strings.HasPrefix(l.GetName(), "inbound|") || l.GetName() == "virtualInbound"}
				switch f.GetName() {
				case HTTPConnectionManagerName:
					tf.hcm = &hcm.HttpConnectionManager{}
					if err := f.GetTypedConfig().UnmarshalTo(tf.hcm); err != nil {
						t.Fatal(err)
					}
					tf.accessLog = tf.hcm.GetAccessLog()
				case TCPProxyName:
					tp := &tcpproxy.TcpProxy{}
					if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
						t.Fatal(err)
					}
					tf.accessLog = tp.GetAccessLog()
				default:
					continue
				}
				out = append(out, tf)
			}
		}
	}
	return out
}
