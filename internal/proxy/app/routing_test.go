package app_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// clientOnly is a client sidecar whose service cluster points straight at
// endpoints (no server sidecar).
type clientOnly struct {
	cp  *proxytest.ControlPlane
	p   *proxytest.Proxy
	c   *http.Client
	eps []string
}

func startClientOnly(t *testing.T, eps []string, weights []uint32, routes []*routev3.Route, cluster *clusterv3.Cluster, extra ...proto.Message) *clientOnly {
	t.Helper()
	co := &clientOnly{cp: proxytest.StartControlPlane(t), eps: eps}
	co.p = proxytest.StartProxy(t, co.cp, "client", proxytest.ProxyOptions{})
	co.set(t, weights, routes, cluster, extra...)
	co.p.WaitReady(t)
	co.c = co.p.HTTPClient(t)
	return co
}

func (co *clientOnly) resources(weights []uint32, routes []*routev3.Route, cluster *clusterv3.Cluster, extra ...proto.Message) []proto.Message {
	if routes == nil {
		routes = []*routev3.Route{proxytest.PrefixRoute("/", svcCluster)}
	}
	if cluster == nil {
		cluster = proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)
	}
	return append([]proto.Message{
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: svcPort, Filter: proxytest.HCMRDS("8000")}),
		proxytest.RouteConfig("8000", proxytest.VirtualHost(svcFQDN+":8000", domains("httpbin", svcPort), routes...)),
		cluster,
		proxytest.WeightedCLA(cluster.GetName(), co.eps, weights),
	}, extra...)
}

func (co *clientOnly) set(t *testing.T, weights []uint32, routes []*routev3.Route, cluster *clusterv3.Cluster, extra ...proto.Message) {
	co.cp.Set(t, co.p.NodeID(), co.resources(weights, routes, cluster, extra...)...)
}

// flaky answers failCode to the first fail requests, then 200 with the
// request body echoed.
type flaky struct {
	fail     int32
	failCode int
	delay    time.Duration // delay of failing requests
	n        atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if f.n.Add(1) <= f.fail {
		if f.delay > 0 {
			select {
			case <-time.After(f.delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(f.failCode)
		return
	}
	fmt.Fprintf(w, "ok %s", body)
}

func retryRoute(retryOn string, n uint32, perTry time.Duration, timeout *durationpb.Duration) []*routev3.Route {
	r := proxytest.PrefixRoute("/", svcCluster)
	ra := r.GetRoute()
	ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(n)}
	if perTry > 0 {
		ra.RetryPolicy.PerTryTimeout = durationpb.New(perTry)
	}
	ra.Timeout = timeout
	return []*routev3.Route{r}
}

func TestRetriesAndTimeouts(t *testing.T) {
	tests := []struct {
		name      string
		backend   *flaky
		endpoints []string // default: the backend
		routes    []*routev3.Route
		method    string
		wantCode  int
		wantFlags string
		wantBody  string
		wantCalls int32
	}{
		{name: "5xx retried until success", backend: &flaky{fail: 2, failCode: 503}, routes: retryRoute("5xx", 3, 0, nil),
			wantCode: 200, wantBody: "ok ", wantCalls: 3},
		{name: "body replayed on retry", backend: &flaky{fail: 1, failCode: 500}, routes: retryRoute("5xx", 1, 0, nil), method: http.MethodPost,
			wantCode: 200, wantBody: "ok hello", wantCalls: 2},
		{name: "retries exhausted", backend: &flaky{fail: 9, failCode: 503}, routes: retryRoute("gateway-error", 2, 0, nil),
			wantCode: 503, wantFlags: "URX", wantCalls: 3},
		{name: "status not retriable", backend: &flaky{fail: 9, failCode: 500}, routes: retryRoute("gateway-error", 2, 0, nil),
			wantCode: 500, wantCalls: 1},
		{name: "retriable status codes", backend: &flaky{fail: 1, failCode: 418}, routes: func() []*routev3.Route {
			r := retryRoute("retriable-status-codes", 1, 0, nil)
			r[0].GetRoute().RetryPolicy.RetriableStatusCodes = []uint32{418}
			return r
		}(), wantCode: 200, wantBody: "ok ", wantCalls: 2},
		{name: "no retry policy", backend: &flaky{fail: 1, failCode: 503}, wantCode: 503, wantCalls: 1},
		{name: "connect failure retried and exhausted", backend: &flaky{}, endpoints: []string{"127.0.0.1:1"}, routes: retryRoute("connect-failure", 2, 0, nil),
			wantCode: 503, wantFlags: "UF,URX", wantCalls: 0},
		{name: "route timeout", backend: &flaky{fail: 1, failCode: 200, delay: 5 * time.Second}, routes: retryRoute("", 0, 0, durationpb.New(100*time.Millisecond)),
			wantCode: 504, wantFlags: "UT", wantCalls: 1},
		{name: "per-try timeout retried", backend: &flaky{fail: 1, failCode: 200, delay: 5 * time.Second}, routes: retryRoute("5xx", 2, 100*time.Millisecond, nil),
			wantCode: 200, wantBody: "ok ", wantCalls: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveHTTP(t, tc.backend)
			eps := tc.endpoints
			if eps == nil {
				eps = []string{addr}
			}
			co := startClientOnly(t, eps, nil, tc.routes, nil)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader("hello")
			}
			req, _ := http.NewRequestWithContext(ctxT(t), method, "http://httpbin:8000/x", body)
			resp, err := co.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.wantCode, b)
			}
			if got := resp.Header.Get("X-Weft-Response-Flags"); got != tc.wantFlags {
				t.Errorf("flags %q, want %q (body %q)", got, tc.wantFlags, b)
			}
			if tc.wantBody != "" && string(b) != tc.wantBody {
				t.Errorf("body %q, want %q", b, tc.wantBody)
			}
			if got := tc.backend.n.Load(); got != tc.wantCalls {
				t.Errorf("backend called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

// idBackend answers its id.
func idBackends(t *testing.T, n int) []string {
	var addrs []string
	for i := range n {
		id := fmt.Sprintf("b%d", i)
		addrs = append(addrs, serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) })))
	}
	return addrs
}

func hashRoute(header string) []*routev3.Route {
	r := proxytest.PrefixRoute("/", svcCluster)
	r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: header}}}}
	return []*routev3.Route{r}
}

func TestLoadBalancingDistribution(t *testing.T) {
	const n = 300
	tests := []struct {
		name    string
		lb      clusterv3.Cluster_LbPolicy
		weights []uint32
		routes  []*routev3.Route
		keys    int // distinct hash keys; 0 = no hash header
		check   func(t *testing.T, counts map[string]int, byKey map[string]map[string]int)
	}{
		{name: "round robin", lb: clusterv3.Cluster_ROUND_ROBIN, check: exact(map[string]int{"b0": 100, "b1": 100, "b2": 100})},
		{name: "weighted round robin", lb: clusterv3.Cluster_ROUND_ROBIN, weights: []uint32{1, 2, 3}, check: exact(map[string]int{"b0": 50, "b1": 100, "b2": 150})},
		{name: "random", lb: clusterv3.Cluster_RANDOM, check: within(50, 150)},
		{name: "least request", lb: clusterv3.Cluster_LEAST_REQUEST, check: within(40, 160)},
		{name: "ring hash", lb: clusterv3.Cluster_RING_HASH, routes: hashRoute("x-user"), keys: 30, check: sticky},
		{name: "maglev", lb: clusterv3.Cluster_MAGLEV, routes: hashRoute("x-user"), keys: 30, check: sticky},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eps := idBackends(t, 3)
			co := startClientOnly(t, eps, tc.weights, tc.routes, proxytest.EDSCluster(svcCluster, tc.lb))
			counts := map[string]int{}
			byKey := map[string]map[string]int{}
			for i := range n {
				hdr := map[string]string{}
				key := ""
				if tc.keys > 0 {
					key = fmt.Sprintf("user-%d", i%tc.keys)
					hdr["x-user"] = key
				}
				resp, body := get(t, co.c, "http://httpbin:8000/", hdr)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				counts[body]++
				if byKey[key] == nil {
					byKey[key] = map[string]int{}
				}
				byKey[key][body]++
			}
			tc.check(t, counts, byKey)
		})
	}
}

func exact(want map[string]int) func(*testing.T, map[string]int, map[string]map[string]int) {
	return func(t *testing.T, got map[string]int, _ map[string]map[string]int) {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("distribution (-want +got):\n%s", diff)
		}
	}
}

func within(lo, hi int) func(*testing.T, map[string]int, map[string]map[string]int) {
	return func(t *testing.T, got map[string]int, _ map[string]map[string]int) {
		if len(got) != 3 {
			t.Errorf("hosts used: %v, want 3", got)
		}
		for h, c := range got {
			if c < lo || c > hi {
				t.Errorf("host %s got %d requests, want [%d, %d] (all: %v)", h, c, lo, hi, got)
			}
		}
	}
}

func sticky(t *testing.T, got map[string]int, byKey map[string]map[string]int) {
	for k, hosts := range byKey {
		if len(hosts) != 1 {
			t.Errorf("key %s went to %d hosts: %v", k, len(hosts), hosts)
		}
	}
	if len(got) < 2 {
		t.Errorf("30 keys all went to one host: %v", got)
	}
}

func TestNACKKeepsPreviousConfig(t *testing.T) {
	eps := idBackends(t, 1)
	co := startClientOnly(t, eps, nil, nil, nil)
	if resp, body := get(t, co.c, "http://httpbin:8000/", nil); resp.StatusCode != 200 || body != "b0" {
		t.Fatalf("before: %d %q", resp.StatusCode, body)
	}
	bad := []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: nil}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: svcCluster}}},
	}}
	co.set(t, nil, bad, nil)
	proxytest.Eventually(t, 5*time.Second, "NACK", func() bool {
		return strings.Contains(adminGet(t, co.p, "/config_dump"), "last_nack")
	})
	dump := adminGet(t, co.p, "/config_dump")
	if !strings.Contains(dump, `route configuration \"8000\"`) || !strings.Contains(dump, "safe_regex") {
		t.Errorf("NACK reason does not name the resource and field:\n%s", dump)
	}
	if resp, body := get(t, co.c, "http://httpbin:8000/", nil); resp.StatusCode != 200 || body != "b0" {
		t.Fatalf("after NACK: %d %q, want the old route", resp.StatusCode, body)
	}
	if stats := adminGet(t, co.p, "/stats/prometheus"); !strings.Contains(stats, `weft_proxy_xds_nacks_total{type="RouteConfiguration"}`) {
		t.Errorf("NACK not counted:\n%s", stats)
	}
	// A good config after the bad one is applied.
	co.set(t, nil, []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 299}},
	}}, nil)
	proxytest.Eventually(t, 5*time.Second, "new config", func() bool {
		resp, _ := get(t, co.c, "http://httpbin:8000/", nil)
		return resp.StatusCode == 299
	})
}

func TestConfigSwapUnderLoad(t *testing.T) {
	eps := idBackends(t, 2)
	split := func(i int) []*routev3.Route {
		r := proxytest.PrefixRoute("/", fmt.Sprintf("c%d", i%2))
		r.RequestHeadersToAdd = nil
		return []*routev3.Route{r}
	}
	clusters := []proto.Message{
		proxytest.EDSCluster("c0", clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA("c0", eps[0]),
		proxytest.EDSCluster("c1", clusterv3.Cluster_LEAST_REQUEST), proxytest.CLA("c1", eps[1]),
	}
	co := startClientOnly(t, eps, nil, split(0), nil, clusters...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := co.c.Get("http://httpbin:8000/")
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		co.set(t, nil, split(i), nil, clusters...)
		want := fmt.Sprintf("b%d", i%2)
		proxytest.Eventually(t, 5*time.Second, "swap applied", func() bool {
			_, body := get(t, co.c, "http://httpbin:8000/", nil)
			return body == want
		})
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d ok, %d failed during 50 swaps; first failure: %v", ok.Load(), failed.Load(), firstErr.Load())
	}
}

func TestShutdownUnderLoadLosesNoAcceptedRequest(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "done")
	})
	co := startClientOnly(t, []string{serveHTTP(t, slow)}, nil, nil, nil)
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	var bad atomic.Value
	started := make(chan struct{}, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				resp, err := co.c.Get("http://httpbin:8000/")
				if err != nil {
					if errors.Is(err, syscall.ECONNREFUSED) {
						refused.Add(1)
						return
					}
					bad.CompareAndSwap(nil, err.Error())
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "done" {
					bad.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, b))
					return
				}
				ok.Add(1)
				select {
				case started <- struct{}{}:
				default:
				}
			}
		}()
	}
	for range 16 {
		<-started
	}
	co.p.Stop(t)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Errorf("a request failed during shutdown: %v", v)
	}
	if ok.Load() == 0 {
		t.Errorf("no request succeeded")
	}
	t.Logf("%d requests completed, %d clients saw the listener closed", ok.Load(), refused.Load())
}

func TestControlPlaneOutageKeepsServing(t *testing.T) {
	eps := idBackends(t, 1)
	co := startClientOnly(t, eps, nil, nil, nil)
	co.cp.Stop()
	proxytest.Eventually(t, 5*time.Second, "stream loss noticed", func() bool {
		return strings.Contains(co.p.Logs.String(), "xds stream ended")
	})
	if resp, body := get(t, co.c, "http://httpbin:8000/", nil); resp.StatusCode != 200 || body != "b0" {
		t.Fatalf("during outage: %d %q, want the last config", resp.StatusCode, body)
	}
	co.cp.Restart(t)
	co.set(t, nil, []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 299}},
	}}, nil)
	proxytest.Eventually(t, 10*time.Second, "config after reconnect", func() bool {
		resp, _ := get(t, co.c, "http://httpbin:8000/", nil)
		return resp.StatusCode == 299
	})
}

// TestRouteTimeoutStartsAfterTheRequestBody: as in Envoy, a route's
// timeout runs from the end of the request body: a slow upload longer
// than the timeout is answered, and a response slower than the timeout
// after a body is cut with 504 (UT), for chunked HTTP/1.1 uploads and for
// HTTP/2 (h2c) requests of a declared length, whose server reports the end
// of the body only on a read after its last bytes.
func TestRouteTimeoutStartsAfterTheRequestBody(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		backend   *flaky
		gaps      time.Duration // between the body's three parts
		h2c       bool          // an h2c request with Content-Length to the listener
		wantCode  int
		wantFlags string
		wantBody  string
	}{
		{name: "slow upload answered", backend: &flaky{}, gaps: 250 * time.Millisecond, wantCode: 200, wantBody: "ok abc"},
		{name: "slow response cut", backend: &flaky{fail: 1, failCode: 200, delay: 5 * time.Second}, wantCode: 504, wantFlags: "UT"},
		{name: "h2c body of a declared length, slow response cut", backend: &flaky{fail: 1, failCode: 200, delay: 5 * time.Second}, h2c: true, wantCode: 504, wantFlags: "UT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			co := startClientOnly(t, []string{serveHTTP(t, tc.backend)}, nil, retryRoute("", 0, 0, durationpb.New(timeout)), nil)
			var resp *http.Response
			var err error
			if tc.h2c {
				p := new(http.Protocols)
				p.SetUnencryptedHTTP2(true)
				tr := &http.Transport{Protocols: p}
				defer tr.CloseIdleConnections()
				req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://"+co.p.ListenerAddr(t, xdsmeta.ListenerOutbound)+"/x", strings.NewReader("abc"))
				req.Host = "httpbin:8000"
				resp, err = tr.RoundTrip(req)
			} else {
				pr, pw := io.Pipe()
				go func() {
					for i, part := range []string{"a", "b", "c"} {
						if i > 0 {
							time.Sleep(tc.gaps)
						}
						if _, err := io.WriteString(pw, part); err != nil {
							return
						}
					}
					pw.Close()
				}()
				req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://httpbin:8000/x", pr)
				resp, err = co.c.Do(req)
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode || resp.Header.Get("X-Weft-Response-Flags") != tc.wantFlags {
				t.Fatalf("status %d flags %q (body %q), want %d %q", resp.StatusCode, resp.Header.Get("X-Weft-Response-Flags"), b, tc.wantCode, tc.wantFlags)
			}
			if tc.wantBody != "" && string(b) != tc.wantBody {
				t.Fatalf("body %q, want %q", b, tc.wantBody)
			}
		})
	}
}

// TestRetriedBodiesUnderConcurrency: request bodies kept for retries (small
// ones in buffers reused across requests) are replayed intact: concurrent
// POSTs of distinct bodies, whose first upstream attempt fails with 503,
// each get their own body back from the retry. (Three at a time: the
// cluster's default max_retries circuit breaker allows three retries in
// flight.)
func TestRetriedBodiesUnderConcurrency(t *testing.T) {
	var calls atomic.Int64
	var seen sync.Map
	backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if _, again := seen.LoadOrStore(r.Header.Get("X-Test-Request"), true); !again {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	co := startClientOnly(t, []string{backend}, nil, retryRoute("5xx", 2, 0, nil), nil)
	const workers, each = 3, 40
	ctx := ctxT(t)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				size := 1000
				if i%5 == 4 {
					size = 6000 // past the pooled buffers' size
				}
				want := strings.Repeat(fmt.Sprintf("<%d.%d>", w, i), size/3+1)[:size]
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://httpbin:8000/echo", strings.NewReader(want))
				req.Header.Set("X-Test-Request", fmt.Sprintf("%d.%d", w, i))
				resp, err := co.c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(got) != want {
					errs <- fmt.Errorf("worker %d request %d: status %d, body of %d bytes (%.40q...), want its own %d bytes", w, i, resp.StatusCode, len(got), got, len(want))
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 2*workers*each {
		t.Fatalf("%d upstream attempts for %d requests: the retries did not happen", n, workers*each)
	}
}

// The route timeout reaches an attempt that runs under its own per-try
// context (derived from the request's) and cuts it with 504 UT, also for
// a request that carries a grpc-timeout.
func TestRouteTimeoutThroughPerTryContext(t *testing.T) {
	for _, gt := range []string{"", "10S"} {
		backend := &flaky{fail: 1, failCode: 200, delay: 5 * time.Second}
		co := startClientOnly(t, []string{serveHTTP(t, backend)}, nil,
			retryRoute("5xx", 0, 3*time.Second, durationpb.New(100*time.Millisecond)), nil)
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://httpbin:8000/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		if gt != "" {
			req.Header.Set("Grpc-Timeout", gt)
		}
		start := time.Now()
		resp, err := co.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("X-Weft-Response-Flags") != "UT" || time.Since(start) > 2*time.Second {
			t.Errorf("grpc-timeout %q: %d %q after %v; want 504 UT at the route timeout (100ms)", gt, resp.StatusCode, resp.Header.Get("X-Weft-Response-Flags"), time.Since(start))
		}
	}
}
