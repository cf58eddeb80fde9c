package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/upstream"
)

// attemptState is the request state roundTrip needs: the cluster, the
// route (its retry policy) and the downstream request.
func attemptState(c *upstream.Cluster, a *proxyconfig.RouteAction, down *http.Request) *reqState {
	return &reqState{parent: context.Background(), start: time.Now(), down: down, action: a, cluster: c, target: &Target{}}
}

// A retry that finds no host, or that the max_requests /
// max_pending_requests breaker refuses, must give back the max_retries
// slot StartRetry took for it (Envoy's retries() resource is released
// when the retry ends, whatever ends it). Here it is never given back:
// every such request shrinks the cluster's retry budget for good, and
// once max_retries slots (3 by default) have leaked, no request of the
// cluster is ever retried again.
func TestRetrySlotReleasedWhenRetryIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup makes the first request's retry fail before it is
		// sent; it returns what undoes that for the second request.
		od    *proxyconfig.Outlier
		th    func(*proxyconfig.Thresholds)
		setup func(c *upstream.Cluster) (undo func())
	}{
		{
			name: "no healthy upstream",
			// One 5xx ejects the only host; panic is off: the retry finds no host.
			od: &proxyconfig.Outlier{Consecutive5xx: 1, Enforcing5xx: 100, BaseEjection: time.Hour, MaxEjection: time.Hour,
				Interval: time.Second, MaxEjectionPercent: 100, PanicPercent: 0},
			setup: func(*upstream.Cluster) func() { return nil },
		},
		{
			name: "max_pending_requests overflow",
			// One connection, no pending request: with another request
			// in flight and the first attempt's connection idle, the
			// retry counts as pending and overflows.
			th: func(th *proxyconfig.Thresholds) { th.MaxConnections, th.MaxPendingRequests = 1, 0 },
			setup: func(c *upstream.Cluster) func() {
				if err := c.StartRequest(true); err != nil {
					t.Fatal(err)
				}
				return c.EndRequest
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n := calls.Add(1); n == 1 || n == 2 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, "ok")
			}))
			defer srv.Close()
			th := proxyconfig.DefaultThresholds
			th.MaxRetries = 1
			if tc.th != nil {
				tc.th(&th)
			}
			cfg := &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: proxyconfig.LBRoundRobin,
				Thresholds: th, ConnectTimeout: time.Second, IdleTimeout: time.Minute, Outlier: tc.od}
			eps := map[string]*proxyconfig.Endpoints{"c": {ClusterName: "c", OverprovisioningFactor: proxyconfig.DefaultOverprovisioningFactor,
				Localities: []proxyconfig.Locality{{Endpoints: []proxyconfig.Endpoint{{Address: srv.Listener.Addr().String(), Weight: 1}}}}}}
			m := upstream.NewManager()
			c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, eps)["c"]
			a := &proxyconfig.RouteAction{Timeout: 5 * time.Second, Retry: &proxyconfig.RetryPolicy{On: proxyconfig.Retry5xx, NumRetries: 1,
				BaseInterval: time.Millisecond, MaxInterval: time.Millisecond}}
			p := New(Options{})
			do := func() (int, error) {
				down := httptest.NewRequest("GET", "http://svc/", nil)
				rs := attemptState(c, a, down)
				defer rs.end()
				out := down.WithContext(rs)
				out.URL = &url.URL{Scheme: "http", Path: "/"}
				out.Body = nil
				resp, err := p.roundTrip(rs, out, false)
				if err != nil {
					return 0, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, nil
			}

			// First request: 503, and its retry is refused before it is sent.
			undo := tc.setup(c)
			if code, err := do(); err == nil {
				t.Fatalf("first request: got %d, want its retry refused", code)
			} else {
				t.Logf("first request: %v", err)
			}
			if undo != nil {
				undo()
			}
			// Second request, nothing in the way (outlier detection off,
			// the same Cluster and counters): the upstream answers 503,
			// then 200 to the retry.
			cp := *cfg
			cp.Outlier = nil
			c = m.Update(map[string]*proxyconfig.Cluster{"c": &cp}, eps)["c"]
			code, err := do()
			if err != nil || code != http.StatusOK {
				t.Errorf("second request: got %d, %v; want 200 after one retry (max_retries 1, no retry in flight); overflows %d",
					code, err, c.Overflows.Load())
			}
		})
	}
}

// An upstream that answers 503 as soon as it has a request's head (an
// early answer: it never waits for the body), reading and discarding
// what follows.
func earlyAnswerUpstream(t *testing.T, answered *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				answered.Add(1)
				io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
				io.Copy(io.Discard, br)
			}()
		}
	}()
	return ln.Addr().String()
}

// A streaming request (chunked body, the client sends its next piece
// later) answered early with a retriable 503: the proxy must retry it or
// answer the client now. It does neither: deciding whether the body can
// be replayed waits for the lock that the abandoned attempt's body writer
// holds while it waits for the client's next bytes, so the answer is held
// until the client sends more (forever for a client that waits for the
// answer first). The route timeout does not end the wait either (and in
// Serve it is not even armed, since it starts once the body was read).
func TestEarlyAnswerToStreamingBodyIsNotHeld(t *testing.T) {
	var answered atomic.Int32
	addr := earlyAnswerUpstream(t, &answered)
	cfg := &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: proxyconfig.LBRoundRobin,
		Thresholds: proxyconfig.DefaultThresholds, ConnectTimeout: time.Second, IdleTimeout: time.Minute}
	eps := &proxyconfig.Endpoints{ClusterName: "c", OverprovisioningFactor: proxyconfig.DefaultOverprovisioningFactor,
		Localities: []proxyconfig.Locality{{Endpoints: []proxyconfig.Endpoint{{Address: addr, Weight: 1}}}}}
	c := upstream.NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	a := &proxyconfig.RouteAction{Timeout: time.Second, Retry: &proxyconfig.RetryPolicy{On: proxyconfig.Retry5xx, NumRetries: 1,
		BaseInterval: time.Millisecond, MaxInterval: time.Millisecond}}

	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("first piece of a streamed body")) // then nothing until the client hears back
	down := httptest.NewRequest("POST", "http://svc/upload", pr)
	down.ContentLength = -1
	rs := attemptState(c, a, down)
	defer rs.end()
	// Serve arms the route timer only once the body was read; arm it
	// now to show that even a running route timeout does not end the
	// wait.
	rs.startTimer()
	out := down.WithContext(rs)
	out.URL = &url.URL{Scheme: "http", Path: "/upload"}

	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := New(Options{}).roundTrip(rs, out, false)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.resp.Body.Close()
			t.Logf("answered %d after %d upstream attempts", r.resp.StatusCode, answered.Load())
		} else {
			t.Logf("answered with error %v after %d upstream attempts", r.err, answered.Load())
		}
	case <-time.After(3 * time.Second):
		t.Errorf("no answer 3 s after the upstream's 503 (upstream attempts: %d; the route timeout is 1 s): the round trip waits for the client's next body bytes", answered.Load())
		pw.CloseWithError(io.ErrUnexpectedEOF) // unblock it
		<-done
	}
}

// retry_on "reset-before-request" retries a reset only when nothing of
// the request was sent upstream yet (Envoy's RetryStateImpl::
// wouldRetryFromReset: "Only return a positive retry decision if we
// haven't sent any bytes upstream"), which is what makes it safe for
// non-idempotent requests. The sidecar reads it as plain "reset": a POST
// that the upstream received whole (and may have acted on) before the
// connection dropped is sent again.
func TestResetBeforeRequestDoesNotReplayASentPOST(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var received atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Read the whole request (head and its 5-byte body), then
				// drop the connection without an answer.
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err == nil {
					io.Copy(io.Discard, req.Body)
					received.Add(1)
				}
				conn.Close()
			}()
		}
	}()

	rc, err := proxyconfig.ParseRouteConfig(&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				RetryPolicy:      &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,reset-before-request"},
			}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	a := rc.VirtualHosts[0].Routes[0].Action

	cfg := &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: proxyconfig.LBRoundRobin,
		Thresholds: proxyconfig.DefaultThresholds, ConnectTimeout: time.Second, IdleTimeout: time.Minute}
	eps := &proxyconfig.Endpoints{ClusterName: "c", OverprovisioningFactor: proxyconfig.DefaultOverprovisioningFactor,
		Localities: []proxyconfig.Locality{{Endpoints: []proxyconfig.Endpoint{{Address: ln.Addr().String(), Weight: 1}}}}}
	c := upstream.NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]

	down := httptest.NewRequest("POST", "http://svc/orders", strings.NewReader("order"))
	rs := attemptState(c, a, down)
	defer rs.end()
	out := down.WithContext(rs)
	out.URL = &url.URL{Scheme: "http", Path: "/orders"}
	resp, err := New(Options{}).roundTrip(rs, out, false)
	if err == nil {
		resp.Body.Close()
	}
	if n := received.Load(); n != 1 {
		t.Errorf("the upstream received the POST %d times (round trip error: %v); want once: the reset came after the request was sent, which reset-before-request does not retry", n, err)
	}
}

// Weft's control plane (xdstranslate.retryPolicy) gives every retry
// policy Envoy's previous_hosts retry host predicate with
// host_selection_retry_max_attempts 5, as Istio does: a retry must go to
// a host not tried yet. On a consistent-hash cluster (Istio
// consistentHash) the sidecar sends every retry of a request to the same
// host, so retries of a failing host never reach a healthy one.
func TestRetryAvoidsPreviousHosts(t *testing.T) {
	var badHits, goodHits atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodHits.Add(1)
		io.WriteString(w, "ok")
	}))
	defer good.Close()

	pred, err := anypb.New(&previoushosts.PreviousHostsPredicate{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := proxyconfig.ParseRouteConfig(&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}},
				RetryPolicy: &routev3.RetryPolicy{
					RetryOn:                       "connect-failure,refused-stream,retriable-status-codes",
					RetriableStatusCodes:          []uint32{503},
					NumRetries:                    wrapperspb.UInt32(2),
					HostSelectionRetryMaxAttempts: 40, // each re-pick lands on the failing host half the time: 5 would fail 1 run in 32
					RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
						Name:       "envoy.retry_host_predicates.previous_hosts",
						ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: pred},
					}},
				},
			}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	a := rc.VirtualHosts[0].Routes[0].Action
	if len(rc.Unenforced) > 0 {
		t.Logf("unenforced: %v", rc.Unenforced)
	}

	cfg := &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: proxyconfig.LBRingHash,
		Thresholds: proxyconfig.DefaultThresholds, ConnectTimeout: time.Second, IdleTimeout: time.Minute, RingMinSize: 1024, RingMaxSize: 8 << 20}
	eps := &proxyconfig.Endpoints{ClusterName: "c", OverprovisioningFactor: proxyconfig.DefaultOverprovisioningFactor,
		Localities: []proxyconfig.Locality{{Endpoints: []proxyconfig.Endpoint{
			{Address: bad.Listener.Addr().String(), Weight: 1}, {Address: good.Listener.Addr().String(), Weight: 1}}}}}
	c := upstream.NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]

	// A hash key whose host is the failing one.
	var hash uint64
	for k := uint64(1); ; k++ {
		h, err := c.Pick("", k*0x9e3779b97f4a7c15, true)
		if err != nil {
			t.Fatal(err)
		}
		if h.Addr == bad.Listener.Addr().String() {
			hash = k * 0x9e3779b97f4a7c15
			break
		}
	}
	p := New(Options{})
	down := httptest.NewRequest("GET", "http://svc/", nil)
	rs := attemptState(c, a, down)
	rs.hash, rs.hasHash = hash, true
	defer rs.end()
	out := down.WithContext(rs)
	out.URL = &url.URL{Scheme: "http", Path: "/"}
	out.Body = nil
	resp, err := p.roundTrip(rs, out, false)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || badHits.Load() != 1 {
		t.Errorf("got %d %q; the failing host got %d attempts and the other %d; want the retry on the host not tried yet (previous_hosts): 200, 1 and 1",
			resp.StatusCode, strings.TrimSpace(string(body)), badHits.Load(), goodHits.Load())
	}
}

// An upstream that switches protocols unasked broke the protocol: the
// attempt fails (502 UPE, never a tunnel) and outlier detection counts it
// against the host, which one such answer ejects here.
func TestUnaskedSwitchCountsAsFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
					io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
				}
			}()
		}
	}()
	cfg := &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: proxyconfig.LBRoundRobin,
		Thresholds: proxyconfig.DefaultThresholds, ConnectTimeout: time.Second, IdleTimeout: time.Minute,
		Outlier: &proxyconfig.Outlier{Consecutive5xx: 1, Enforcing5xx: 100, ConsecutiveGateway: 1, EnforcingGateway: 100,
			BaseEjection: time.Hour, MaxEjection: time.Hour, Interval: time.Second, MaxEjectionPercent: 100}}
	eps := &proxyconfig.Endpoints{ClusterName: "c", OverprovisioningFactor: proxyconfig.DefaultOverprovisioningFactor,
		Localities: []proxyconfig.Locality{{Endpoints: []proxyconfig.Endpoint{{Address: ln.Addr().String(), Weight: 1}}}}}
	c := upstream.NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	down := httptest.NewRequest("GET", "http://svc/", nil)
	rs := attemptState(c, &proxyconfig.RouteAction{Timeout: 5 * time.Second}, down)
	defer rs.end()
	out := down.WithContext(rs)
	out.URL = &url.URL{Scheme: "http", Path: "/"}
	out.Body = nil
	resp, err := New(Options{}).roundTrip(rs, out, false)
	var fe *flagError
	if err == nil || !errors.As(err, &fe) || fe.status != http.StatusBadGateway || fe.flag != "UPE" {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("round trip: %v, %v; want a 502 UPE failure", resp, err)
	}
	if h, err := c.Pick("", 0, false); err == nil {
		t.Errorf("host %s still picked after an unasked 101; want it ejected", h.Addr)
	}
}
