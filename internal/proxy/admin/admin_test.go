package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/xdsclient"
)

func TestStatsHandler(t *testing.T) {
	m := proxymetrics.New()
	m.Request("outbound|8000||httpbin.default.svc.cluster.local", 200, "")
	var ready atomic.Bool
	srv := httptest.NewServer(admin.StatsHandler(m, ready.Load, ""))
	t.Cleanup(srv.Close)
	const want = `weft_proxy_requests_total{cluster="outbound|8000||httpbin.default.svc.cluster.local",code="200"} 1`
	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string
	}{
		{name: "stats prometheus", method: http.MethodGet, path: "/stats/prometheus", wantCode: 200, wantBody: want},
		{name: "metrics", method: http.MethodGet, path: "/metrics", wantCode: 200, wantBody: want},
		{name: "no config dump", method: http.MethodGet, path: "/config_dump", wantCode: 404},
		{name: "not ready yet", method: http.MethodGet, path: "/healthz/ready", wantCode: 503},
		{name: "no quitquitquit", method: http.MethodPost, path: "/quitquitquit", wantCode: 404},
		{name: "no drain", method: http.MethodPost, path: "/drain", wantCode: 404},
	}
	tests = append(tests,
		struct {
			name, method, path string
			wantCode           int
			wantBody           string
		}{name: "ready", method: http.MethodGet, path: "/ready", wantCode: 200, wantBody: "ready"},
		struct {
			name, method, path string
			wantCode           int
			wantBody           string
		}{name: "healthz ready", method: http.MethodGet, path: "/healthz/ready", wantCode: 200, wantBody: "ready"})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "ready" {
				ready.Store(true)
			}
			code, b := call(t, srv, tc.method, tc.path)
			if code != tc.wantCode {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, code, tc.wantCode)
			}
			if tc.wantBody != "" && !strings.Contains(string(b), tc.wantBody) {
				t.Errorf("%s lacks %s:\n%s", tc.path, tc.wantBody, b)
			}
		})
	}
}

// /config_dump prints the route config the control plane sends (its retry
// policy names the previous-hosts predicate by type), and a resource
// with a nested config of a type this build does not link is listed
// with the reason instead of failing the whole dump.
func TestConfigDumpNestedTypes(t *testing.T) {
	good := &routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{{
		Name: "svc", Domains: []string{"*"},
		RetryPolicy: &routev3.RetryPolicy{RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(t, &previoushosts.PreviousHostsPredicate{})},
		}}},
	}}}
	bad := &routev3.RouteConfiguration{Name: "81", VirtualHosts: []*routev3.VirtualHost{{
		Name: "other", Domains: []string{"*"},
		TypedPerFilterConfig: map[string]*anypb.Any{"x": {TypeUrl: "type.googleapis.com/example.NotLinked", Value: []byte{0x0a, 0x01, 'x'}}},
	}}}
	raw := map[string][]byte{}
	for _, rc := range []*routev3.RouteConfiguration{good, bad} {
		b, err := proto.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		raw[rc.Name] = b
	}
	res := &xdsclient.Resources{Raw: map[string]*xdsclient.RawResources{xdsclient.RouteType: xdsclient.NewRawResources(raw)}}
	srv := httptest.NewServer(admin.Handler(admin.Deps{Resources: func() *xdsclient.Resources { return res }, Metrics: proxymetrics.New()}))
	t.Cleanup(srv.Close)
	code, b := call(t, srv, http.MethodGet, "/config_dump")
	if code != 200 {
		t.Fatalf("/config_dump = %d:\n%s", code, b)
	}
	var dump struct {
		Routes struct {
			Resources []map[string]any `json:"resources"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		t.Fatal(err)
	}
	rs := dump.Routes.Resources
	if len(rs) != 2 {
		t.Fatalf("%d route configs dumped, want 2:\n%s", len(rs), b)
	}
	if rs[0]["name"] != "80" || !strings.Contains(string(b), "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate") {
		t.Errorf("route config 80 not dumped with its retry host predicate:\n%s", b)
	}
	if rs[1]["name"] != "81" || !strings.Contains(fmt.Sprint(rs[1]["dump_error"]), "example.NotLinked") {
		t.Errorf("route config 81 not listed with the reason it cannot be printed:\n%s", b)
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// call sends a request without a body to srv and returns the response's
// status and body.
func call(t *testing.T, srv *httptest.Server, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
