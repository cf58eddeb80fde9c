// Package bookinfo is Weft's demo shop: a product page for one book that
// calls a details service and a reviews service (three versions), which in
// turn calls a ratings service, plus a traffic generator to keep the mesh
// busy. `weft demo-app NAME` runs one of them; `weft up` runs them all,
// each beside its sidecar.
//
// The apps know nothing of the mesh: they call each other by service name
// (http://reviews:9080) through the proxy named by HTTP_PROXY, and forward
// the tracing and routing headers they received, which is all a service
// has to do for the mesh to trace and route a request end to end.
package bookinfo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Apps lists the apps Run knows.
var Apps = []string{"productpage", "details", "reviews", "ratings", "traffic"}

// ForwardHeaders are the request headers every app copies from the
// request it serves onto the requests it makes: W3C and B3 trace context,
// the request id, and end-user, which routing rules match on.
var ForwardHeaders = []string{
	"x-request-id",
	"traceparent",
	"tracestate",
	"x-b3-traceid",
	"x-b3-spanid",
	"x-b3-parentspanid",
	"x-b3-sampled",
	"x-b3-flags",
	"b3",
	"end-user",
}

// env is what Run takes from the process, replaceable in tests.
type env struct {
	// getenv reads an environment variable.
	getenv func(string) string
	// proxy picks the proxy for an outgoing request.
	proxy func(*http.Request) (*url.URL, error)
	// onListen, if set, is told the address a server listens on.
	onListen func(net.Addr)
}

// Run runs the demo app named app with its command-line flags until ctx is
// done, writing an access log line per request to stdout and problems to
// stderr. It returns the process exit code: 0 after ctx ended, 1 on a
// failure, 2 on bad usage.
func Run(ctx context.Context, app string, args []string, stdout, stderr io.Writer) int {
	return run(ctx, app, args, stdout, stderr, env{getenv: os.Getenv, proxy: http.ProxyFromEnvironment})
}

func run(ctx context.Context, app string, args []string, stdout, stderr io.Writer, e env) int {
	fs := flag.NewFlagSet("weft demo-app "+app, flag.ContinueOnError)
	fs.SetOutput(stderr)
	envOr := func(name, def string) string {
		if v := e.getenv(name); v != "" {
			return v
		}
		return def
	}
	port := envOr("PORT", "9080")
	listen := fs.String("listen", "127.0.0.1:"+port, "address to listen on (default from $PORT)")
	fail := new(bool)
	if app != "traffic" {
		fail = fs.Bool("fail", false, "answer every request with 503 Service Unavailable (to watch outlier detection and locality failover)")
	}
	var (
		detailsURL, reviewsURL, ratingsURL *string
		version                            *string
		target, users                      *string
		rate                               *float64
		summaryEvery                       *time.Duration
	)
	switch app {
	case "productpage":
		detailsURL = fs.String("details-url", envOr("DETAILS_URL", "http://details:9080"), "details service base URL ($DETAILS_URL)")
		reviewsURL = fs.String("reviews-url", envOr("REVIEWS_URL", "http://reviews:9080"), "reviews service base URL ($REVIEWS_URL)")
	case "reviews":
		version = fs.String("version", "v1", "reviews version: v1 (no stars), v2 (black stars) or v3 (red stars)")
		ratingsURL = fs.String("ratings-url", envOr("RATINGS_URL", "http://ratings:9080"), "ratings service base URL ($RATINGS_URL)")
	case "details", "ratings":
	case "traffic":
		target = fs.String("target", "http://127.0.0.1:8080/productpage", "URL to send requests to")
		rate = fs.Float64("rate", 2, "requests per second (never exceeded)")
		users = fs.String("users", "jason", "comma-separated end-users; one request in five carries end-user: <next user>")
		summaryEvery = fs.Duration("summary-every", 10*time.Second, "how often to log a summary")
	default:
		fmt.Fprintf(stderr, "unknown demo app %q: want one of %s\n", app, strings.Join(Apps, ", "))
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "weft demo-app %s: unexpected arguments %q\n", app, fs.Args())
		return 2
	}

	log := &lineLog{w: stdout}
	client := newClient(e.proxy)
	defer client.CloseIdleConnections()

	if app == "traffic" {
		if *rate <= 0 {
			fmt.Fprintf(stderr, "weft demo-app traffic: --rate must be above 0, got %v\n", *rate)
			return 2
		}
		if _, err := url.ParseRequestURI(*target); err != nil {
			fmt.Fprintf(stderr, "weft demo-app traffic: --target: %v\n", err)
			return 2
		}
		g := &traffic{
			target: *target, rate: *rate, users: splitList(*users),
			summaryEvery: *summaryEvery, client: client, log: log,
		}
		g.run(ctx)
		return 0
	}

	var h http.Handler
	switch app {
	case "productpage":
		h = productPage{details: strings.TrimSuffix(*detailsURL, "/"), reviews: strings.TrimSuffix(*reviewsURL, "/"), client: client}.routes()
	case "details":
		h = detailsRoutes()
	case "reviews":
		if *version != "v1" && *version != "v2" && *version != "v3" {
			fmt.Fprintf(stderr, "weft demo-app reviews: --version must be v1, v2 or v3, got %q\n", *version)
			return 2
		}
		h = reviewsApp{version: *version, ratings: strings.TrimSuffix(*ratingsURL, "/"), client: client}.routes()
	case "ratings":
		h = ratingsRoutes()
	}
	if *fail {
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, app+" is failing on purpose (--fail)", http.StatusServiceUnavailable)
		})
	}
	if err := serve(ctx, app, *listen, h, log, e.onListen); err != nil {
		fmt.Fprintf(stderr, "weft demo-app %s: %v\n", app, err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// serve serves h on addr until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, app, addr string, h http.Handler, log *lineLog, onListen func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (use --listen or $PORT for another address)", addr, err)
	}
	log.printf("%s listening on http://%s", app, ln.Addr())
	if onListen != nil {
		onListen(ln.Addr())
	}
	srv := &http.Server{
		Handler:           accessLog(h, log),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// lineLog writes whole lines to a shared writer.
type lineLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineLog) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += n
	return n, err
}

// accessLog logs one short line per request:
// "GET /reviews/0 200 512B 3ms rid=... user=jason".
func accessLog(h http.Handler, log *lineLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		var extra strings.Builder
		if id := r.Header.Get("x-request-id"); id != "" {
			extra.WriteString(" rid=" + id)
		}
		if u := r.Header.Get("end-user"); u != "" {
			extra.WriteString(" user=" + u)
		}
		log.printf("%s %s %d %dB %s%s", r.Method, r.URL.RequestURI(), rec.status, rec.bytes,
			time.Since(start).Round(100*time.Microsecond), extra.String())
	})
}

// newClient returns the client every app calls other services with:
// through the proxy from the environment (the app's sidecar), with a
// timeout so a stuck dependency cannot hang a page.
func newClient(proxy func(*http.Request) (*url.URL, error)) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:               proxy,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// upstreamError is a failed call to another service.
type upstreamError struct {
	// status is the HTTP status, or 0 when no response came back.
	status int
	// reason is a short description: the body's error or first line, or
	// the transport error.
	reason string
}

func (e *upstreamError) Error() string {
	if e.status == 0 {
		return "no response: " + e.reason
	}
	return fmt.Sprintf("%d: %s", e.status, e.reason)
}

// get calls url with the forwarded headers of in and returns the 200
// response body, or an *upstreamError.
func get(ctx context.Context, client *http.Client, in *http.Request, target string) ([]byte, error) {
	status, body, err := getRaw(ctx, client, in, target)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &upstreamError{status: status, reason: reasonOf(body, status)}
	}
	return body, nil
}

// getRaw calls url with the forwarded headers of in and returns whatever
// came back; only a failure to get a response is an error.
func getRaw(ctx context.Context, client *http.Client, in *http.Request, target string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, &upstreamError{reason: err.Error()}
	}
	for _, name := range ForwardHeaders {
		for _, v := range in.Header.Values(name) {
			req.Header.Add(name, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, nil, &upstreamError{reason: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, &upstreamError{status: resp.StatusCode, reason: "reading body: " + err.Error()}
	}
	return resp.StatusCode, body, nil
}

// reasonOf makes a short reason from an error response body: its "error"
// field if it is JSON, else its first line, else the status text.
func reasonOf(body []byte, status int) string {
	var j struct {
		Error string `json:"error"`
	}
	if unmarshalQuiet(body, &j) && j.Error != "" {
		return j.Error
	}
	s := strings.TrimSpace(string(body))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = strings.ToLower(http.StatusText(status))
	}
	return s
}
