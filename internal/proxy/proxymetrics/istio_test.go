package proxymetrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"weft.dev/weft/internal/proxy/peermeta"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var (
	productpage = peermeta.Workload{Name: "productpage-v1", Namespace: "default", App: "productpage", Version: "v1", ServiceAccount: "bookinfo-productpage"}
	reviews     = peermeta.Workload{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2"}
)

// record makes a fixed set of recordings: a client sidecar's and a
// server sidecar's.
func record() (client, server *Metrics) {
	client, server = New(), New()
	client.SetWorkload(productpage)
	server.SetWorkload(reviews)
	const svc = "reviews.default.svc.cluster.local"
	for _, r := range []HTTPRequest{
		{Peer: reviews, Service: svc, Code: 200, Duration: 3 * time.Millisecond, RequestBytes: 0, ResponseBytes: 120},
		{Peer: reviews, Service: svc, Code: 200, Duration: 700 * time.Microsecond, RequestBytes: 10, ResponseBytes: 5000},
		{Service: svc, Code: 503, Flags: "UF,URX", Duration: 40 * time.Millisecond, ResponseBytes: 91},
		{Peer: reviews, Service: svc, GRPC: true, Code: 200, GRPCStatus: "5", Duration: 2 * time.Second, RequestBytes: 7, ResponseBytes: 0},
		{Code: 404, Flags: "NR", Duration: 0},
	} {
		client.RecordHTTP(&r)
	}
	for _, r := range []HTTPRequest{
		{Inbound: true, Peer: productpage, Service: svc, Code: 200, Duration: time.Millisecond, ResponseBytes: 120},
		{Inbound: true, Service: svc, Code: 500, Duration: 20 * time.Millisecond, ResponseBytes: 3},
	} {
		server.RecordHTTP(&r)
	}
	tc := TCPConn{Service: "mongo.default.svc.cluster.local"}
	b := client.TCPOpened(&tc)
	b.Sent(4000)
	b.Received(100)
	b.Sent(96)
	client.TCPClosed(&tc)
	ts := TCPConn{Inbound: true, Service: "reviews.default.svc.cluster.local"}
	server.TCPOpened(&ts)
	ts.Flags = "UF"
	server.TCPClosed(&ts)
	return client, server
}

// exposition is the text exposition of the istio_* families.
func exposition(t *testing.T, m *Metrics) string {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "istio_") {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestIstioExpositionGolden(t *testing.T) {
	client, server := record()
	for _, tc := range []struct {
		name string
		m    *Metrics
	}{{"client", client}, {"server", server}} {
		t.Run(tc.name, func(t *testing.T) {
			got := exposition(t, tc.m)
			path := filepath.Join("testdata", "istio_"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("exposition (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPromlint lints every metric the proxy exposes. Istio's
// istio_request_duration_milliseconds keeps its name (dashboards query
// it), so the linter's advice to use seconds is the one problem allowed.
func TestPromlint(t *testing.T) {
	client, server := record()
	for _, m := range []*Metrics{client, server} {
		m.Request("c", 200, "UF")
		m.XDS("Cluster", true)
		m.XDS("Cluster", false)
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if p.Metric == "istio_request_duration_milliseconds" && strings.Contains(p.Text, `base unit "seconds"`) {
				continue
			}
			if strings.HasPrefix(p.Metric, "go_") || strings.HasPrefix(p.Metric, "process_") {
				continue // the client library's own collectors
			}
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestServiceOf(t *testing.T) {
	tests := []struct {
		name, cluster, meta string
		inbound             bool
		want                string
	}{
		{name: "outbound", cluster: "outbound|9080|v1|reviews.default.svc.cluster.local", want: "reviews.default.svc.cluster.local"},
		{name: "outbound whole service", cluster: "outbound|9080||reviews.default.svc.cluster.local", want: "reviews.default.svc.cluster.local"},
		{name: "inbound with metadata", cluster: "inbound|9080||", meta: "reviews.default.svc.cluster.local", inbound: true, want: "reviews.default.svc.cluster.local"},
		{name: "inbound without metadata", cluster: "inbound|9080||", inbound: true, want: ""},
		{name: "other cluster", cluster: "static", want: "static"},
		{name: "none", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServiceOf(tc.cluster, tc.meta, tc.inbound); got != tc.want {
				t.Errorf("ServiceOf(%q, %q, %v) = %q, want %q", tc.cluster, tc.meta, tc.inbound, got, tc.want)
			}
		})
	}
}

func TestRecordHTTPDoesNotAllocate(t *testing.T) {
	m := New()
	m.SetWorkload(productpage)
	r := HTTPRequest{Peer: reviews, Service: "reviews.default.svc.cluster.local", Code: 200, Duration: time.Millisecond, ResponseBytes: 10}
	m.RecordHTTP(&r)
	if n := testing.AllocsPerRun(100, func() { m.RecordHTTP(&r) }); n != 0 {
		t.Errorf("RecordHTTP allocates %v times per call, want 0", n)
	}
	tc := TCPConn{Service: "x"}
	m.TCPOpened(&tc)
	if n := testing.AllocsPerRun(100, func() { b := m.TCPOpened(&tc); b.Sent(1); b.Received(2); m.TCPClosed(&tc) }); n != 0 {
		t.Errorf("TCP recording allocates %v times per call, want 0", n)
	}
}

// seriesBy sums the values of one counter family by the value of one
// label.
func seriesBy(t *testing.T, m *Metrics, family, label string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestSeriesCap: spoofed peers each naming a new workload fill a family
// up to its cap; the rest are recorded as from an unknown peer and
// counted, and the TCP family has its own cap.
func TestSeriesCap(t *testing.T) {
	m := New()
	m.SetWorkload(productpage)
	m.SetMaxSeries(3)
	const svc = "reviews.default.svc.cluster.local"
	for i := range 10 {
		r := HTTPRequest{Inbound: true, Peer: peermeta.Workload{Name: "spoofed-" + strconv.Itoa(i), Namespace: "default"}, Service: svc, Code: 200}
		m.RecordHTTP(&r)
	}
	want := map[string]float64{"spoofed-0": 1, "spoofed-1": 1, "spoofed-2": 1, Unknown: 7}
	if diff := cmp.Diff(want, seriesBy(t, m, "istio_requests_total", "source_workload")); diff != "" {
		t.Errorf("istio_requests_total by source_workload (-want +got):\n%s", diff)
	}
	for i := range 5 {
		c := TCPConn{Inbound: true, Service: svc, PeerPrincipal: "spiffe://cluster.local/ns/default/sa/p" + strconv.Itoa(i), MTLS: true}
		m.TCPOpened(&c).Received(10)
		m.TCPClosed(&c)
	}
	wantTCP := map[string]float64{
		"spiffe://cluster.local/ns/default/sa/p0": 10, "spiffe://cluster.local/ns/default/sa/p1": 10,
		"spiffe://cluster.local/ns/default/sa/p2": 10, Unknown: 20,
	}
	if diff := cmp.Diff(wantTCP, seriesBy(t, m, "istio_tcp_received_bytes_total", "source_principal")); diff != "" {
		t.Errorf("istio_tcp_received_bytes_total by source_principal (-want +got):\n%s", diff)
	}
	// Overflows: 7 requests, 2 connections.
	if diff := cmp.Diff(map[string]float64{"http": 7, "tcp": 2}, seriesBy(t, m, "weft_proxy_istio_series_overflow_total", "family")); diff != "" {
		t.Errorf("weft_proxy_istio_series_overflow_total (-want +got):\n%s", diff)
	}
	// Recording an overflowing request takes neither a lock nor memory.
	r := HTTPRequest{Inbound: true, Peer: peermeta.Workload{Name: "spoofed-99"}, Service: svc, Code: 200}
	if n := testing.AllocsPerRun(100, func() { m.RecordHTTP(&r) }); n != 0 {
		t.Errorf("an overflowing request allocates %v times, want 0", n)
	}
}

func TestGRPCStatusLabelIsBounded(t *testing.T) {
	m := New()
	for _, s := range []string{"0", "16", "abc", "123", strings.Repeat("9", 100), "-1"} {
		m.RecordHTTP(&HTTPRequest{Service: "grpc.default.svc.cluster.local", GRPC: true, Code: 200, GRPCStatus: s})
	}
	want := map[string]float64{"0": 1, "16": 1, Unknown: 4}
	if diff := cmp.Diff(want, seriesBy(t, m, "istio_requests_total", "grpc_response_status")); diff != "" {
		t.Errorf("istio_requests_total by grpc_response_status (-want +got):\n%s", diff)
	}
}
