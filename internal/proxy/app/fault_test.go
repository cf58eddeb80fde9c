package app_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/httpproxy"
)

// TestFaultInjection runs a gateway proxy whose config is Weft's real
// translation of a VirtualService with fault injection (Istio's
// HTTPFaultInjection) in front of a real backend: aborts answer without
// reaching the backend, with the configured status and the FI flag,
// delays hold requests back before they are forwarded, a percentage
// applies to about that share of requests, and routes without a fault
// are untouched.
func TestFaultInjection(t *testing.T) {
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "backend ok")
	}))
	t.Cleanup(backend.Close)
	snap := meshModel(t, "faults.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(backend))+shopVirtualService+`  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /grpc-abort}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 0.4s, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /long}}]
    fault: {delay: {fixedDelay: 30s, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /both}}]
    fault: {delay: {fixedDelay: 0.2s, percentage: {value: 100}}, abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /unset}}]
    fault: {abort: {httpStatus: 500}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(t *testing.T, path string) (int, string, http.Header, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body), resp.Header, time.Since(start)
	}

	t.Run("abort", func(t *testing.T) {
		before := hits.Load()
		code, body, h, _ := get(t, "/abort")
		if code != 418 || strings.TrimSpace(body) != "fault filter abort" || h.Get(httpproxy.FlagsHeader) != "FI" {
			t.Errorf("got %d %q flags %q; want 418 \"fault filter abort\" flags FI", code, body, h.Get(httpproxy.FlagsHeader))
		}
		if hits.Load() != before {
			t.Error("an aborted request reached the backend")
		}
		// Counted for the service the route was for, with Envoy's flag.
		found := false
		for _, line := range strings.Split(adminGet(t, gw, "/stats/prometheus"), "\n") {
			if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `response_code="418"`) &&
				strings.Contains(line, `response_flags="FI"`) && strings.Contains(line, `destination_service="shop.default.svc.cluster.local"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no istio_requests_total with response_code 418, flags FI and the shop service:\n%s", adminGet(t, gw, "/stats/prometheus"))
		}
	})
	t.Run("gRPC abort of an HTTP request", func(t *testing.T) {
		// As Envoy: the gRPC status means nothing to an HTTP client.
		if code, body, h, _ := get(t, "/grpc-abort"); code != 200 || strings.TrimSpace(body) != "fault filter abort" || h.Get(httpproxy.FlagsHeader) != "FI" {
			t.Errorf("got %d %q flags %q; want 200 \"fault filter abort\" flags FI", code, body, h.Get(httpproxy.FlagsHeader))
		}
	})
	// grpcCall sends a unary gRPC request over h2c with prior knowledge,
	// as gRPC clients speak to a sidecar, and returns its grpc-status.
	grpcCall := func(t *testing.T, path string) string {
		t.Helper()
		protos := new(http.Protocols)
		protos.SetUnencryptedHTTP2(true)
		h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: protos}}
		req, _ := http.NewRequest("POST", base+path, strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// A trailers-only response: the status is in the headers.
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Grpc-Message") != "fault filter abort" {
			t.Errorf("HTTP/%d %d, grpc-message %q; want HTTP/2 200 and \"fault filter abort\"", resp.ProtoMajor, resp.StatusCode, resp.Header.Get("Grpc-Message"))
		}
		return resp.Header.Get("Grpc-Status")
	}
	t.Run("gRPC abort of a gRPC request", func(t *testing.T) {
		if got := grpcCall(t, "/grpc-abort/shop.Shop/List"); got != "14" {
			t.Errorf("grpc-status %q, want 14 (UNAVAILABLE)", got)
		}
	})
	t.Run("HTTP abort of a gRPC request", func(t *testing.T) {
		// gRPC's mapping of HTTP statuses: 418 is UNKNOWN (2).
		if got := grpcCall(t, "/abort/shop.Shop/List"); got != "2" {
			t.Errorf("grpc-status %q, want 2 (UNKNOWN, gRPC's status for HTTP 418)", got)
		}
	})
	t.Run("delay, then abort", func(t *testing.T) {
		before := hits.Load()
		code, body, h, took := get(t, "/both")
		if code != 503 || strings.TrimSpace(body) != "fault filter abort" || h.Get(httpproxy.FlagsHeader) != "DI,FI" {
			t.Errorf("got %d %q flags %q; want 503 \"fault filter abort\" flags DI,FI", code, body, h.Get(httpproxy.FlagsHeader))
		}
		if took < 200*time.Millisecond {
			t.Errorf("answered after %v; the delay is 200ms", took)
		}
		if hits.Load() != before {
			t.Error("an aborted request reached the backend")
		}
	})
	t.Run("delay", func(t *testing.T) {
		before := hits.Load()
		code, body, h, took := get(t, "/delay")
		if code != 200 || body != "backend ok" || hits.Load() != before+1 {
			t.Errorf("got %d %q (backend hits %d); want the backend's 200", code, body, hits.Load()-before)
		}
		if took < 400*time.Millisecond {
			t.Errorf("answered after %v; the delay is 400ms", took)
		}
		if h.Get(httpproxy.FlagsHeader) != "DI" {
			t.Errorf("flags %q; want DI (delay injected)", h.Get(httpproxy.FlagsHeader))
		}
	})
	t.Run("half of the requests", func(t *testing.T) {
		const n = 200
		aborted := 0
		for range n {
			switch code, body, _, _ := get(t, "/half"); code {
			case http.StatusServiceUnavailable:
				aborted++
			case http.StatusOK:
			default:
				t.Fatalf("got %d %q", code, body)
			}
		}
		// Binomial(200, 0.5): 60 and 140 are 5.7 standard deviations out.
		if aborted < 60 || aborted > 140 {
			t.Errorf("%d of %d aborted; want about half", aborted, n)
		}
	})
	t.Run("no percentage aborts nothing", func(t *testing.T) {
		for range 20 {
			if code, body, _, _ := get(t, "/unset"); code != 200 {
				t.Fatalf("got %d %q; a fault without a percentage applies to no request", code, body)
			}
		}
	})
	t.Run("client gone during a delay", func(t *testing.T) {
		// An HTTP/1.1 client that leaves while its request is held back
		// ends it then: the request never reaches the backend, and it is
		// counted with DI and DC within seconds, not when the 30 s delay
		// would have ended.
		before := hits.Load()
		conn, err := net.Dial("tcp", gw.ListenerAddr(t, "0.0.0.0_8080"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET /long HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(adminGet(t, gw, "/stats/prometheus"), `response_flags="DI,DC"`) {
			if time.Now().After(deadline) {
				t.Fatalf("no request counted with DI,DC within 5s of the client leaving:\n%s", adminGet(t, gw, "/stats/prometheus"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if hits.Load() != before {
			t.Error("the request of a client that left during the delay reached the backend")
		}
	})
	t.Run("routes without a fault", func(t *testing.T) {
		code, body, h, _ := get(t, "/other")
		if code != 200 || body != "backend ok" || h.Get(httpproxy.FlagsHeader) != "" {
			t.Errorf("got %d %q flags %q; want the backend's 200 without flags", code, body, h.Get(httpproxy.FlagsHeader))
		}
	})
}
