package proxymetrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
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
	client.TCPOpened(&tc)
	client.TCPClosed(&tc, 4096, 100)
	ts := TCPConn{Inbound: true, Service: "reviews.default.svc.cluster.local"}
	server.TCPOpened(&ts)
	ts.Flags = "UF"
	server.TCPClosed(&ts, 0, 0)
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
	if n := testing.AllocsPerRun(100, func() { m.TCPOpened(&tc); m.TCPClosed(&tc, 1, 2) }); n != 0 {
		t.Errorf("TCP recording allocates %v times per call, want 0", n)
	}
}
