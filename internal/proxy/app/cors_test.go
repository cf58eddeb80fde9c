package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCORS runs a gateway proxy whose config is Weft's translation of a
// VirtualService with a corsPolicy in front of a real backend: a
// preflight from an allowed origin is answered by the proxy with the
// policy, one from another origin goes on to the backend, and responses
// to an allowed origin's requests (only those) carry the CORS headers.
func TestCORS(t *testing.T) {
	var hits, preflights atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method == http.MethodOptions {
			preflights.Add(1)
		}
		w.Header().Set("X-Total", "3")
		io.WriteString(w, "backend ok")
	}))
	t.Cleanup(backend.Close)
	snap := meshModel(t, "cors.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(backend))+shopVirtualService+`  - match: [{uri: {prefix: /strict}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example.com"}]
      allowMethods: [GET]
      maxAge: 60s
      unmatchedPreflights: IGNORE
  - match: [{uri: {prefix: /open}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    corsPolicy:
      allowOrigins: [{exact: "*"}]
      allowMethods: ["*"]
      allowHeaders: ["*"]
      unmatchedPreflights: IGNORE
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example.com"}, {regex: "https://.*\\.partner\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [X-Custom]
      exposeHeaders: [X-Total]
      maxAge: 86400s
      allowCredentials: true
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(t *testing.T, method, origin string, preflight bool, path ...string) (*http.Response, string) {
		t.Helper()
		target := base + "/items"
		if len(path) > 0 {
			target = base + path[0]
		}
		req, _ := http.NewRequest(method, target, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if preflight {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "X-Custom")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	t.Run("preflight from an allowed origin", func(t *testing.T) {
		before := preflights.Load()
		resp, _ := do(t, "OPTIONS", "https://app.partner.example", true)
		want := map[string]string{
			"Access-Control-Allow-Origin": "https://app.partner.example", "Access-Control-Allow-Methods": "GET,POST",
			"Access-Control-Allow-Headers": "X-Custom", "Access-Control-Max-Age": "86400", "Access-Control-Allow-Credentials": "true",
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if resp.StatusCode != 200 || preflights.Load() != before {
			t.Errorf("status %d, backend saw %d preflights; want 200 from the proxy", resp.StatusCode, preflights.Load()-before)
		}
	})
	t.Run("preflights are counted against the service", func(t *testing.T) {
		found := false
		for _, line := range strings.Split(adminGet(t, gw, "/stats/prometheus"), "\n") {
			if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `request_protocol="http"`) &&
				strings.Contains(line, `destination_service="shop.default.svc.cluster.local"`) && strings.Contains(line, `response_code="200"`) {
				found = true
			}
		}
		if !found {
			t.Error("no istio_requests_total with response_code 200 for the shop service after a preflight answered by the proxy")
		}
	})
	t.Run("any origin, and what the preflight asks for", func(t *testing.T) {
		resp, _ := do(t, "OPTIONS", "https://anyone.example", true, "/open")
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://anyone.example" ||
			resp.Header.Get("Access-Control-Allow-Methods") != "POST" || resp.Header.Get("Access-Control-Allow-Headers") != "X-Custom" {
			t.Errorf("status %d, headers %v; want the origin, POST and X-Custom granted", resp.StatusCode, resp.Header)
		}
	})
	t.Run("preflight from another origin, ignored", func(t *testing.T) {
		before := preflights.Load()
		resp, _ := do(t, "OPTIONS", "https://evil.example", true, "/strict")
		if resp.StatusCode != 200 || preflights.Load() != before || resp.Header.Get("Access-Control-Allow-Origin") != "" ||
			resp.Header.Get("Access-Control-Allow-Methods") != "GET" || resp.Header.Get("Access-Control-Max-Age") != "60" {
			t.Errorf("status %d, headers %v, backend saw %d preflights; want the proxy's 200 with the policy but no origin",
				resp.StatusCode, resp.Header, preflights.Load()-before)
		}
	})
	t.Run("preflight from another origin goes on", func(t *testing.T) {
		before := preflights.Load()
		resp, body := do(t, "OPTIONS", "https://evil.example", true)
		if body != "backend ok" || preflights.Load() != before+1 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("got %q, ACAO %q; want the backend's answer without CORS headers", body, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("request from an allowed origin", func(t *testing.T) {
		resp, body := do(t, "GET", "https://shop.example.com", false)
		if body != "backend ok" || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
			resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Expose-Headers") != "X-Total" {
			t.Errorf("got %q with headers %v; want the backend's answer with the CORS headers", body, resp.Header)
		}
	})
	for _, origin := range []string{"https://evil.example", ""} {
		t.Run("request from origin "+origin, func(t *testing.T) {
			resp, body := do(t, "GET", origin, false)
			if body != "backend ok" || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Expose-Headers") != "" {
				t.Errorf("got %q with headers %v; want no CORS headers", body, resp.Header)
			}
		})
	}
}
