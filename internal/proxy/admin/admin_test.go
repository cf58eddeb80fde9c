package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/proxymetrics"
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
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
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
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.wantCode)
			}
			if tc.wantBody != "" && !strings.Contains(string(b), tc.wantBody) {
				t.Errorf("%s lacks %s:\n%s", tc.path, tc.wantBody, b)
			}
		})
	}
}
