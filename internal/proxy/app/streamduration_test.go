package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"weft.dev/weft/internal/proxy/httpproxy"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// streamRoute is a route to the test service with a route timeout (nil:
// Envoy's default) and a max_stream_duration (nil: none).
func streamRoute(timeout *durationpb.Duration, msd *routev3.RouteAction_MaxStreamDuration) []*routev3.Route {
	r := proxytest.PrefixRoute("/", svcCluster)
	r.GetRoute().Timeout = timeout
	r.GetRoute().MaxStreamDuration = msd
	return []*routev3.Route{r}
}

// cancelSeen is a backend's record of requests whose context ended before
// the handler did: the proxy cancelled its upstream request.
type cancelSeen struct {
	ch       chan string // paths, as the handler saw them cancelled
	mu       sync.Mutex
	timeouts []string // grpc-timeout headers as they came
}

func newCancelSeen() *cancelSeen { return &cancelSeen{ch: make(chan string, 16)} }

func (c *cancelSeen) cancelled(r *http.Request) { c.ch <- r.URL.Path }

func (c *cancelSeen) sawTimeout(r *http.Request) {
	c.mu.Lock()
	c.timeouts = append(c.timeouts, r.Header.Get("Grpc-Timeout"))
	c.mu.Unlock()
}

func (c *cancelSeen) lastTimeout() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timeouts) == 0 {
		return "(none)"
	}
	return c.timeouts[len(c.timeouts)-1]
}

// countedWith reports whether p's istio_requests_total has a series with
// status code and response flags flags ("-" for none).
func countedWith(t *testing.T, p *proxytest.Proxy, code, flags string) bool {
	t.Helper()
	want := fmt.Sprintf(`response_code=%q,response_flags=%q`, code, flags)
	for _, l := range strings.Split(adminGet(t, p, "/stats/prometheus"), "\n") {
		if strings.HasPrefix(l, "istio_requests_total{") && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// wait fails the test unless the backend saw path's request cancelled
// within 5s.
func (c *cancelSeen) wait(t *testing.T, path string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-c.ch:
			if p == path {
				return
			}
		case <-deadline:
			t.Errorf("the upstream request for %s was not cancelled", path)
			return
		}
	}
}

// streamBackend serves the paths the stream duration tests use: /slow
// waits 5s before its headers, /trickle sends headers then a byte every
// 50ms for 5s, /echo answers the body it read, /upgrade switches to an
// echoing protocol; each records a request cancelled before it ended.
func streamBackend(seen *cancelSeen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.sawTimeout(r)
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
				io.WriteString(w, "late")
			case <-r.Context().Done():
				seen.cancelled(r)
			}
		case "/trickle":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			for range 100 {
				select {
				case <-time.After(50 * time.Millisecond):
					if _, err := io.WriteString(w, "x"); err != nil {
						seen.cancelled(r)
						return
					}
					w.(http.Flusher).Flush()
				case <-r.Context().Done():
					seen.cancelled(r)
					return
				}
			}
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				seen.cancelled(r)
				return
			}
			w.Write(b)
		case "/upgrade":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			if _, err := io.Copy(conn, brw); err == nil {
				seen.ch <- r.URL.Path // the proxy closed the upgraded connection
			} else {
				seen.cancelled(r)
			}
		}
	})
}

// TestMaxStreamDuration: a route's max_stream_duration bounds the whole
// stream from the request's start, as Envoy's does: before response
// headers the client gets a local reply, 504 once its request body was
// read and 408 while it was still coming, with no response flag; a
// response already started is cut (the client sees the body end early);
// an upgraded connection is closed; the upstream request is cancelled in
// each case. The route timeout still applies beside it and answers 504 UT
// when it ends first.
func TestMaxStreamDuration(t *testing.T) {
	seen := newCancelSeen()
	backend := serveHTTP(t, streamBackend(seen))
	msd := func(d time.Duration) *routev3.RouteAction_MaxStreamDuration {
		return &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(d)}
	}
	const bound = 300 * time.Millisecond
	// No route timeout: only the stream bound ends these.
	co := startClientOnly(t, []string{backend}, nil, streamRoute(durationpb.New(0), msd(bound)), nil)

	t.Run("headers late", func(t *testing.T) {
		start := time.Now()
		resp, body := get(t, co.c, "http://httpbin:8000/slow", nil)
		took := time.Since(start)
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(httpproxy.FlagsHeader) != "" || !strings.HasPrefix(body, "downstream duration timeout") {
			t.Errorf("got %d flags %q body %q; want 504, no flags, \"downstream duration timeout...\"", resp.StatusCode, resp.Header.Get(httpproxy.FlagsHeader), body)
		}
		if took < bound || took > 3*time.Second {
			t.Errorf("answered after %v; the bound is %v", took, bound)
		}
		seen.wait(t, "/slow")
		if !countedWith(t, co.p, "504", "-") {
			t.Errorf("no istio_requests_total for 504 without flags:\n%s", adminGet(t, co.p, "/stats/prometheus"))
		}
	})
	t.Run("request body still coming", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() {
			for range 20 {
				if _, err := io.WriteString(pw, "a"); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			pw.Close()
		}()
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://httpbin:8000/echo", pr)
		resp, err := co.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(httpproxy.FlagsHeader) != "" || !strings.HasPrefix(string(b), "downstream duration timeout") {
			t.Errorf("got %d flags %q body %q; want 408, no flags, \"downstream duration timeout...\"", resp.StatusCode, resp.Header.Get(httpproxy.FlagsHeader), b)
		}
		seen.wait(t, "/echo")
	})
	t.Run("response started", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://httpbin:8000/trickle", nil)
		start := time.Now()
		resp, err := co.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != 200 || err == nil {
			t.Errorf("got %d, %d body bytes, read error %v; want 200 and the body cut", resp.StatusCode, len(b), err)
		}
		if took < bound || took > 3*time.Second {
			t.Errorf("cut after %v; the bound is %v", took, bound)
		}
		seen.wait(t, "/trickle")
		// Recorded as Envoy's reset at the bound: no flag (not UC).
		proxytest.Eventually(t, 5*time.Second, "the cut response counted as 200 without flags", func() bool {
			return countedWith(t, co.p, "200", "-")
		})
	})
	t.Run("upgraded connection", func(t *testing.T) {
		conn, err := net.Dial("tcp", co.p.ListenerAddr(t, xdsmeta.ListenerOutbound))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprint(conn, "GET /upgrade HTTP/1.1\r\nHost: httpbin:8000\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		fmt.Fprint(conn, "ping")
		got := make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
			t.Fatalf("echo %q %v", got, err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("read a byte nobody sent")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the upgraded connection outlived its max_stream_duration")
		}
		if took := time.Since(start); took < bound {
			t.Errorf("closed after %v; the bound is %v", took, bound)
		}
		seen.wait(t, "/upgrade")
	})
	t.Run("route timeout first", func(t *testing.T) {
		co := startClientOnly(t, []string{backend}, nil, streamRoute(durationpb.New(200*time.Millisecond), msd(5*time.Second)), nil)
		resp, body := get(t, co.c, "http://httpbin:8000/slow", nil)
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(httpproxy.FlagsHeader) != "UT" {
			t.Errorf("got %d flags %q body %q; want 504 UT", resp.StatusCode, resp.Header.Get(httpproxy.FlagsHeader), body)
		}
		seen.wait(t, "/slow")
	})
}

// grpcRequest sends a unary gRPC request over h2c with prior knowledge to
// addr, with grpc-timeout gt ("" for none), and returns its grpc-status
// and grpc-message (trailers-only or in the trailers) and how long it took.
func grpcRequest(t *testing.T, addr, host, path, gt string) (string, string, time.Duration) {
	t.Helper()
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Host = host
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	if gt != "" {
		req.Header.Set("Grpc-Timeout", gt)
	}
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	st, msg := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	if st == "" {
		st, msg = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	}
	return st, msg, took
}

// grpcBackend answers gRPC requests OK (trailers-only) after the delay
// its path names (/ms/<n>/...), recording a request cancelled before.
func grpcBackend(seen *cancelSeen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.sawTimeout(r)
		var ms int
		fmt.Sscanf(r.URL.Path, "/ms/%d/", &ms)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "0")
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
			seen.cancelled(r)
		}
	})
}

// TestGRPCTimeoutHeaderMax: with max_stream_duration's
// grpc_timeout_header_max, a gRPC request's grpc-timeout bounds its stream
// (capped at the max, less the offset) in place of the route timeout and
// max_stream_duration, answered DEADLINE_EXCEEDED, and the upstream is
// told the bound in its grpc-timeout; without grpc_timeout_header_max the
// proxy does not enforce the header, as Envoy.
func TestGRPCTimeoutHeaderMax(t *testing.T) {
	seen := newCancelSeen()
	backend := serveHTTP(t, grpcBackend(seen))
	sec := func(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
	for _, tc := range []struct {
		name      string
		timeout   *durationpb.Duration
		msd       *routev3.RouteAction_MaxStreamDuration
		gt        string        // the request's grpc-timeout
		backendMS int           // the backend's delay
		want      string        // grpc-status
		at        time.Duration // when the proxy answers (0: when the backend does)
		upstream  string        // the grpc-timeout the backend sees
	}{
		{name: "header within the max", timeout: sec(10 * time.Second),
			msd: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: sec(10 * time.Second), GrpcTimeoutHeaderMax: sec(10 * time.Second)},
			gt:  "200m", backendMS: 5000, want: "4", at: 200 * time.Millisecond, upstream: "200m"},
		{name: "header capped at the max", timeout: sec(10 * time.Second),
			msd: &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: sec(300 * time.Millisecond)},
			gt:  "20S", backendMS: 5000, want: "4", at: 300 * time.Millisecond, upstream: "300m"},
		{name: "offset", timeout: sec(10 * time.Second),
			msd: &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: sec(0), GrpcTimeoutHeaderOffset: sec(300 * time.Millisecond)},
			gt:  "600m", backendMS: 5000, want: "4", at: 300 * time.Millisecond, upstream: "300m"},
		{name: "header replaces a shorter route timeout", timeout: sec(100 * time.Millisecond),
			msd: &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: sec(10 * time.Second)},
			gt:  "5S", backendMS: 400, want: "0", upstream: "5S"},
		{name: "max_stream_duration, no header", timeout: sec(10 * time.Second),
			msd:       &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: sec(300 * time.Millisecond), GrpcTimeoutHeaderMax: sec(10 * time.Second)},
			backendMS: 5000, want: "4", at: 300 * time.Millisecond, upstream: "300m"},
		{name: "no header max: header not enforced", timeout: sec(10 * time.Second),
			msd: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: sec(10 * time.Second)},
			gt:  "200m", backendMS: 600, want: "0", upstream: "200m"},
		{name: "no max_stream_duration: header not enforced", timeout: sec(10 * time.Second),
			gt: "200m", backendMS: 600, want: "0", upstream: "200m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := startClientOnly(t, []string{backend}, nil, streamRoute(tc.timeout, tc.msd), proxytest.HTTP2(proxytest.EDSCluster(svcCluster, 0)))
			path := fmt.Sprintf("/ms/%d/test.Svc/Call", tc.backendMS)
			st, msg, took := grpcRequest(t, co.p.ListenerAddr(t, xdsmeta.ListenerOutbound), "httpbin:8000", path, tc.gt)
			if st != tc.want {
				t.Fatalf("grpc-status %q (%q) after %v; want %s", st, msg, took, tc.want)
			}
			at := tc.at
			if at == 0 {
				at = time.Duration(tc.backendMS) * time.Millisecond
			}
			if took < at || took > at+2*time.Second {
				t.Errorf("answered after %v; want about %v", took, at)
			}
			if tc.want == "4" {
				if !strings.HasPrefix(msg, "downstream duration timeout") {
					t.Errorf("grpc-message %q; want the proxy's \"downstream duration timeout...\"", msg)
				}
				seen.wait(t, path)
			}
			if got := seen.lastTimeout(); got != tc.upstream {
				t.Errorf("the upstream got grpc-timeout %q; want %q", got, tc.upstream)
			}
		})
	}
}

// TestVirtualServiceTimeoutEnforced: a VirtualService's timeout, which
// Weft translates for its proxies to a route timeout beside a
// grpc_timeout_header_max of the same value (what Istio asks of its
// sidecars), is enforced whole (no field listed as not enforced): an HTTP
// request is answered 504 UT at the timeout, counted from the end of the
// request (after a fault's delay, as in Envoy); a gRPC request at its
// shorter grpc-timeout, or at the timeout, with DEADLINE_EXCEEDED.
func TestVirtualServiceTimeoutEnforced(t *testing.T) {
	seen := newCancelSeen()
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ms/") {
			grpcBackend(seen).ServeHTTP(w, r)
			return
		}
		streamBackend(seen).ServeHTTP(w, r)
	}))
	_, port, _ := net.SplitHostPort(backend)
	snap := meshModel(t, "timeout.yaml", gatewayYAML+serviceEntryYAML("shop", port)+shopVirtualService+`  - match: [{uri: {prefix: /delayed}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    timeout: 0.3s
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
    timeout: 0.5s
`)
	gw := startEnforcingGateway(t, snap)
	addr := gw.ListenerAddr(t, "0.0.0.0_8080")

	start := time.Now()
	resp, err := http.Get("http://" + addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(httpproxy.FlagsHeader) != "UT" || took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("HTTP: %d flags %q %q after %v; want 504 UT at 0.5s", resp.StatusCode, resp.Header.Get(httpproxy.FlagsHeader), body, took)
	}
	seen.wait(t, "/slow")

	// The timeout starts once the request is in, after a fault's delay,
	// as Envoy's route timeout: the delayed request is served.
	start = time.Now()
	resp, err = http.Get("http://" + addr + "/delayed")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusOK || resp.Header.Get(httpproxy.FlagsHeader) != "DI" || took < time.Second || took > 3*time.Second {
		t.Errorf("delayed: %d flags %q %q after %v; want 200 DI after the 1s delay", resp.StatusCode, resp.Header.Get(httpproxy.FlagsHeader), body, took)
	}

	for _, tc := range []struct {
		gt   string
		at   time.Duration
		path string
	}{
		{"200m", 200 * time.Millisecond, "/ms/5000/shop.Shop/List"},
		{"20S", 500 * time.Millisecond, "/ms/5000/shop.Shop/List"},
		{"", 500 * time.Millisecond, "/ms/5000/shop.Shop/List"},
	} {
		path := tc.path
		st, msg, took := grpcRequest(t, addr, "shop", path, tc.gt)
		if st != "4" || took < tc.at || took > tc.at+2*time.Second {
			t.Errorf("gRPC %s with grpc-timeout %q: grpc-status %q (%q) after %v; want 4 (DEADLINE_EXCEEDED) at %v", path, tc.gt, st, msg, took, tc.at)
		}
		seen.wait(t, path)
	}
}
