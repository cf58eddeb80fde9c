package bookinfo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// forwardProxy stands in for a sidecar's outbound listener: it takes
// absolute-form requests and forwards them by "host:port" to a real
// address, recording what it forwarded.
type forwardProxy struct {
	routes    map[string]string // "reviews:9080" -> "127.0.0.1:41234"
	transport *http.Transport

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	host   string
	path   string
	header http.Header
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, seenRequest{host: r.URL.Host, path: r.URL.Path, header: r.Header.Clone()})
	addr, ok := p.routes[r.URL.Host]
	p.mu.Unlock()
	if !ok {
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Host = r.URL.Host
	out.URL.Host = addr
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// requestsTo returns the forwarded requests for host.
func (p *forwardProxy) requestsTo(host string) []seenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []seenRequest
	for _, s := range p.seen {
		if s.host == host {
			out = append(out, s)
		}
	}
	return out
}

// mesh is the shop started for a test, behind one forward proxy.
type mesh struct {
	proxy   *forwardProxy
	page    string // productpage base URL
	client  *http.Client
	outputs map[string]*syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startApp runs one app on port 0 with the given proxy and environment and
// returns its address; it stops at the end of the test.
func startApp(ctx context.Context, t *testing.T, app string, args []string, proxyURL *url.URL, vars map[string]string, out *syncBuffer) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	addrc := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var stderr syncBuffer
	e := env{
		getenv:   func(k string) string { return vars[k] },
		proxy:    http.ProxyURL(proxyURL),
		onListen: func(a net.Addr) { addrc <- a },
	}
	go func() { done <- run(ctx, app, append([]string{"--listen", "127.0.0.1:0"}, args...), out, &stderr, e) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%s exited with %d: %s", app, code, stderr.String())
		}
	})
	select {
	case a := <-addrc:
		return a.String()
	case code := <-done:
		done <- code
		t.Fatalf("%s exited with %d before listening: %s", app, code, stderr.String())
	case <-ctx.Done():
		t.Fatalf("%s did not listen: %v", app, ctx.Err())
	}
	return ""
}

// startMesh starts ratings, details, reviews (version) and productpage
// behind a forward proxy. Services listed in down are left out of the
// proxy's routes, so calls to them get the proxy's 503.
func startMesh(ctx context.Context, t *testing.T, reviewsVersion string, down ...string) *mesh {
	t.Helper()
	fp := &forwardProxy{routes: map[string]string{}, transport: &http.Transport{}}
	ps := httptest.NewServer(fp)
	t.Cleanup(func() { ps.Close(); fp.transport.CloseIdleConnections() })
	proxyURL, _ := url.Parse(ps.URL)

	m := &mesh{proxy: fp, outputs: map[string]*syncBuffer{}}
	vars := map[string]string{}
	start := func(name, app string, args ...string) string {
		m.outputs[name] = &syncBuffer{}
		return startApp(ctx, t, app, args, proxyURL, vars, m.outputs[name])
	}
	routes := map[string]string{
		"ratings:9080": start("ratings", "ratings"),
		"details:9080": start("details", "details"),
		"reviews:9080": start("reviews", "reviews", "--version", reviewsVersion),
	}
	for _, d := range down {
		delete(routes, d+":9080")
	}
	fp.mu.Lock()
	fp.routes = routes
	fp.mu.Unlock()
	// The *_URL variables name services the proxy routes, as in `weft up`.
	vars["DETAILS_URL"] = "http://details:9080"
	vars["REVIEWS_URL"] = "http://reviews:9080/"
	m.page = "http://" + start("productpage", "productpage")
	m.client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(m.client.CloseIdleConnections)
	return m
}

func (m *mesh) get(ctx context.Context, t *testing.T, path string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.page+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProductPage(t *testing.T) {
	tests := []struct {
		name    string
		version string
		down    []string
		want    []string
		notWant []string
	}{
		{
			name:    "v1 has no stars",
			version: "v1",
			want:    []string{`<span class="reviews-version">reviews-v1</span>`, "The Comedy of Errors", "William Shakespeare", "Two pairs of twins"},
			notWant: []string{"★", `class="unavailable"`},
		},
		{
			name:    "v2 has black stars",
			version: "v2",
			want:    []string{`<span class="reviews-version">reviews-v2</span>`, `<div class="stars" style="color:black" title="5 of 5">★★★★★</div>`, `title="4 of 5">★★★★☆</div>`},
			notWant: []string{"color:red", `class="unavailable"`},
		},
		{
			name:    "v3 has red stars",
			version: "v3",
			want:    []string{`<span class="reviews-version">reviews-v3</span>`, `<div class="stars" style="color:red" title="5 of 5">★★★★★</div>`},
			notWant: []string{"color:black", `class="unavailable"`},
		},
		{
			name:    "reviews down",
			version: "v2",
			down:    []string{"reviews"},
			want:    []string{"Sorry, reviews are unavailable right now (503: no healthy upstream).", "ISBN-10"},
			notWant: []string{`<span class="reviews-version">`, "★"},
		},
		{
			name:    "ratings down",
			version: "v3",
			down:    []string{"ratings"},
			want:    []string{"reviews-v3", "ratings are unavailable right now (503: no healthy upstream)"},
			notWant: []string{"★"},
		},
		{
			name:    "details down",
			version: "v1",
			down:    []string{"details"},
			want:    []string{"Sorry, details are unavailable right now (503: no healthy upstream).", "reviews-v1"},
			notWant: []string{"ISBN-10"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			m := startMesh(ctx, t, tc.version, tc.down...)
			status, body := m.get(ctx, t, "/productpage", nil)
			if status != http.StatusOK {
				t.Errorf("status = %d, want 200", status)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(body, nw) {
					t.Errorf("page has %q:\n%s", nw, body)
				}
			}
		})
	}
}

func TestHeadersForwarded(t *testing.T) {
	ctx := testContext(t)
	m := startMesh(ctx, t, "v2")
	in := map[string]string{
		"x-request-id": "weft-test-rid-1",
		"end-user":     "jason",
		"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"x-b3-sampled": "1",
		"user-agent":   "weft-test", // not forwarded
	}
	if status, _ := m.get(ctx, t, "/productpage", in); status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	want := map[string]string{
		"X-Request-Id": "weft-test-rid-1",
		"End-User":     "jason",
		"Traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-B3-Sampled": "1",
	}
	for _, host := range []string{"details:9080", "reviews:9080", "ratings:9080"} {
		seen := m.proxy.requestsTo(host)
		if len(seen) != 1 {
			t.Fatalf("%d requests to %s, want 1", len(seen), host)
		}
		got := map[string]string{}
		for k := range want {
			got[k] = seen[0].header.Get(k)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("headers reaching %s (-want +got):\n%s", host, diff)
		}
		if ua := seen[0].header.Get("User-Agent"); ua == "weft-test" {
			t.Errorf("user-agent forwarded to %s", host)
		}
	}
	if log := m.outputs["ratings"].String(); !strings.Contains(log, "GET /ratings/0 200") || !strings.Contains(log, "rid=weft-test-rid-1 user=jason") {
		t.Errorf("ratings access log lacks the request:\n%s", log)
	}
}

func TestAPIReviews(t *testing.T) {
	tests := []struct {
		name    string
		down    []string
		status  int
		want    Reviews
		wantErr string
	}{
		{
			name:   "passthrough with version",
			status: http.StatusOK,
			want: Reviews{ID: "0", Version: "v3", Reviews: []Review{
				{Reviewer: "Reviewer1", Text: reviewTexts[0].Text, Rating: &Rating{Stars: 5, Color: "red"}},
				{Reviewer: "Reviewer2", Text: reviewTexts[1].Text, Rating: &Rating{Stars: 4, Color: "red"}},
			}},
		},
		{
			name:    "reviews down passes the status through",
			down:    []string{"reviews"},
			status:  http.StatusServiceUnavailable,
			wantErr: "no healthy upstream\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			m := startMesh(ctx, t, "v3", tc.down...)
			status, body := m.get(ctx, t, "/api/v1/products/0/reviews", nil)
			if status != tc.status {
				t.Errorf("status = %d, want %d", status, tc.status)
			}
			if tc.wantErr != "" {
				if body != tc.wantErr {
					t.Errorf("body = %q, want %q", body, tc.wantErr)
				}
				return
			}
			var got Reviews
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reviews (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSmallRoutes(t *testing.T) {
	ctx := testContext(t)
	m := startMesh(ctx, t, "v1")
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{path: "/healthz", status: 200, want: "ok"},
		{path: "/", status: 200, want: `<a href="/productpage">`},
		{path: "/nothing", status: 404, want: "404 page not found"},
		{path: "/api/v1/products/x/reviews", status: 400, want: `product id must be a non-negative number, got \"x\"`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			status, body := m.get(ctx, t, tc.path, nil)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, status, body, tc.status, tc.want)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		app  string
		args []string
		code int
		want string
	}{
		{name: "unknown app", app: "cart", code: 2, want: `unknown demo app "cart": want one of productpage, details, reviews, ratings, traffic`},
		{name: "bad version", app: "reviews", args: []string{"--version", "v9"}, code: 2, want: `--version must be v1, v2 or v3, got "v9"`},
		{name: "bad flag", app: "details", args: []string{"--nope"}, code: 2, want: "flag provided but not defined: -nope"},
		{name: "bad rate", app: "traffic", args: []string{"--rate", "0"}, code: 2, want: "--rate must be above 0"},
		{name: "bad listen address", app: "details", args: []string{"--listen", "256.0.0.1:1"}, code: 1, want: "listening on 256.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			code := run(testContext(t), tc.app, tc.args, &stdout, &stderr, env{getenv: func(string) string { return "" }})
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("run = %d, stderr %q; want %d with %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

func TestUserFor(t *testing.T) {
	tests := []struct {
		name  string
		users []string
		want  []string
	}{
		{name: "one user every fifth", users: []string{"jason"}, want: []string{"jason", "", "", "", "", "jason", "", "", "", "", "jason"}},
		{name: "users take turns", users: []string{"jason", "ann"}, want: []string{"jason", "", "", "", "", "ann", "", "", "", "", "jason"}},
		{name: "no users", users: nil, want: []string{"", "", "", "", "", "", "", "", "", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for i := range 11 {
				got = append(got, userFor(i, tc.users))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTraffic(t *testing.T) {
	ctx := testContext(t)
	const n = 12
	const rate = 100.0
	var (
		mu    sync.Mutex
		users []string
	)
	enough := make(chan struct{})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		users = append(users, r.Header.Get("end-user"))
		if len(users) == n {
			close(enough)
		}
		if len(users)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer target.Close()

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	begin := time.Now()
	go func() {
		done <- run(tctx, "traffic", []string{"--target", target.URL + "/productpage", "--rate", "100", "--summary-every", "50ms"}, &stdout, &stderr, env{getenv: func(string) string { return "" }})
	}()
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	elapsed := time.Since(begin)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("traffic exited %d: %s", code, stderr.String())
	}
	// n requests at most `rate` per second take at least (n-1)/rate.
	if min := time.Duration(float64(n-1) / rate * float64(time.Second)); elapsed < min {
		t.Errorf("%d requests in %s, faster than %v/s allows (%s)", n, elapsed, rate, min)
	}
	mu.Lock()
	jason := strings.Count(strings.Join(users, ","), "jason")
	mu.Unlock()
	if jason < 2 {
		t.Errorf("%d of the first %d requests had end-user jason, want about one in five", jason, n)
	}
	out := stdout.String()
	for _, w := range []string{"traffic: " + target.URL + "/productpage at 100 requests/s", "ok, errors: 503 x", "traffic: done after"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestFail: with --fail an app answers every request with 503.
func TestFail(t *testing.T) {
	ctx := testContext(t)
	addr := startApp(ctx, t, "reviews", []string{"--fail"}, nil, map[string]string{}, &syncBuffer{})
	for _, path := range []string{"/reviews/0", "/healthz"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "reviews is failing on purpose") {
			t.Errorf("GET %s = %d %q; want 503 saying reviews fails on purpose", path, resp.StatusCode, body)
		}
	}
}
