package h2server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// client is net/http's HTTP/2 client, speaking h2c with prior knowledge.
func client(t *testing.T) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestRequestsAndResponses(t *testing.T) {
	type seen struct {
		Method, Proto, Host, URI, Cookie, Agent string
		ContentLength                           int64
	}
	got := make(chan seen, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.Proto, r.Host, r.RequestURI, r.Header.Get("Cookie"), r.Header.Get("User-Agent"), r.ContentLength}
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			_, _ = io.WriteString(w, "dropped")
			return
		case "/dated":
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		}
		w.Header().Set("X-Answer", "42")
		w.Header()["Connection"] = []string{"close"} // not sent over HTTP/2
		_, _ = io.WriteString(w, "hello "+r.Method)
	})
	addr, _ := serve(t, h, Options{Date: func() string { return "Thu, 01 Jan 2026 00:00:00 GMT" }})
	c := client(t)
	for _, tc := range []struct {
		name, method, path, body string
		wantSeen                 seen
		wantCode                 int
		wantBody, wantDate       string
	}{
		{"get", "GET", "/a?b=c", "", seen{"GET", "HTTP/2.0", "svc.test", "/a?b=c", "x=1; y=2", "weft-test", 0}, 200, "hello GET", "Thu, 01 Jan 2026 00:00:00 GMT"},
		{"post", "POST", "/p", "12345", seen{"POST", "HTTP/2.0", "svc.test", "/p", "x=1; y=2", "weft-test", 5}, 200, "hello POST", "Thu, 01 Jan 2026 00:00:00 GMT"},
		{"head", "HEAD", "/h", "", seen{"HEAD", "HTTP/2.0", "svc.test", "/h", "x=1; y=2", "weft-test", 0}, 200, "", "Thu, 01 Jan 2026 00:00:00 GMT"},
		{"no content", "GET", "/nocontent", "", seen{"GET", "HTTP/2.0", "svc.test", "/nocontent", "x=1; y=2", "weft-test", 0}, 204, "", "Thu, 01 Jan 2026 00:00:00 GMT"},
		{"date of the handler", "GET", "/dated", "", seen{"GET", "HTTP/2.0", "svc.test", "/dated", "x=1; y=2", "weft-test", 0}, 200, "hello GET", "Mon, 02 Jan 2006 15:04:05 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, body)
			req.Host = "svc.test"
			req.Header.Set("User-Agent", "weft-test")
			req.AddCookie(&http.Cookie{Name: "x", Value: "1"})
			req.AddCookie(&http.Cookie{Name: "y", Value: "2"})
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if diff := cmp.Diff(tc.wantSeen, <-got); diff != "" {
				t.Errorf("request the handler saw (-want +got):\n%s", diff)
			}
			if resp.StatusCode != tc.wantCode || string(b) != tc.wantBody || resp.ProtoMajor != 2 {
				t.Errorf("got %d %q over %s, want %d %q over HTTP/2", resp.StatusCode, b, resp.Proto, tc.wantCode, tc.wantBody)
			}
			if d := resp.Header.Get("Date"); d != tc.wantDate {
				t.Errorf("Date %q, want %q", d, tc.wantDate)
			}
			if tc.wantCode == 200 && resp.Header.Get("X-Answer") != "42" {
				t.Errorf("headers %v lack X-Answer", resp.Header)
			}
		})
	}
}

// TestLargeBodiesBothWays streams 8 MiB up and back down through one
// stream while the handler reads and writes at once: flow control in
// both directions, past every window.
func TestLargeBodiesBothWays(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 7000)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	addr, _ := serve(t, h, Options{})
	c := client(t)
	payload := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(payload)
	var wg sync.WaitGroup
	for i := range 3 { // three streams at once share the connection's windows
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(payload[i:]))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
				return
			}
			if sha256.Sum256(got) != sha256.Sum256(payload[i:]) {
				t.Errorf("stream %d: echoed %d bytes, not the %d sent", i, len(got), len(payload[i:]))
			}
		}()
	}
	wg.Wait()
}

// TestTrailers: a request's trailers reach the handler after its body;
// the response's trailers, declared and Trailer-prefixed, reach the
// client; a gRPC-style response with no body ends with trailers.
func TestTrailers(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Declared")
		w.Header().Set("Content-Type", "application/grpc")
		if len(b) > 0 {
			_, _ = w.Write(b)
		}
		w.Header().Set("X-Declared", "d-"+r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	addr, _ := serve(t, h, Options{})
	c := client(t)
	for _, body := range []string{"some body", ""} {
		t.Run(fmt.Sprintf("body %q", body), func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() { _, _ = io.WriteString(pw, body); pw.Close() }()
			req, _ := http.NewRequest("POST", "http://"+addr+"/t", pr)
			req.Trailer = http.Header{"X-Req-Trailer": nil}
			req.Trailer.Set("X-Req-Trailer", "up")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.Header{"X-Declared": {"d-up"}, "Grpc-Status": {"0"}}
			if diff := cmp.Diff(want, resp.Trailer); diff != "" || string(b) != body {
				t.Errorf("body %q, trailers (-want +got):\n%s", b, diff)
			}
		})
	}
}

// TestClientResetCancelsHandler: a client that gives up resets its
// stream, and the handler's context ends; the connection serves on.
func TestClientResetCancelsHandler(t *testing.T) {
	cancelled := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(20 * time.Second):
			cancelled <- errors.New("handler not cancelled")
		}
	})
	addr, conns := serve(t, h, Options{})
	c := client(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/wait", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v", err)
	}
	resp, err = c.Get("http://" + addr + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := len(conns()); n != 1 {
		t.Errorf("%d connections, want the one", n)
	}
}

// TestHandlerPanicResetsStream: a handler that panics (the proxy's
// http.ErrAbortHandler when an upstream fails mid-response) resets its
// stream only.
func TestHandlerPanicResetsStream(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "fine")
	})
	addr, conns := serve(t, h, Options{})
	c := client(t)
	resp, err := c.Get("http://" + addr + "/abort")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeInternal {
		t.Fatalf("aborted response: %v, want a stream error INTERNAL_ERROR", err)
	}
	resp, err = c.Get("http://" + addr + "/fine")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	first := conns()[0]
	first.mu.Lock()
	closed := first.closed || first.goingAway
	first.mu.Unlock()
	if string(b) != "fine" || closed {
		t.Errorf("after the reset: %q; the first connection closed or going away: %v", b, closed)
	}
}

// TestShutdownLetsStreamsFinish: Shutdown sends GOAWAY; the stream in
// flight completes; the connection then closes and Serve returns.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	addr, conns := serve(t, h, Options{})
	c := client(t)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/slow")
		if err != nil {
			res <- result{"", err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	sc := conns()[0]
	sc.Shutdown()
	close(release)
	if r := <-res; r.err != nil || r.body != "done" {
		t.Fatalf("stream in flight at shutdown: %q, %v", r.body, r.err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sc.mu.Lock()
		closed := sc.closed
		sc.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection still open after its last stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInformationalResponses: a 103 the handler writes reaches the
// client before the final response.
func TestInformationalResponses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		delete(w.Header(), "Link")
		_, _ = io.WriteString(w, "final")
	})
	addr, _ := serve(t, h, Options{})
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if diff := cmp.Diff([]string{"103 </style.css>; rel=preload"}, hints); diff != "" || string(b) != "final" || resp.Header.Get("Link") != "" {
		t.Errorf("body %q, Link %q, informational (-want +got):\n%s", b, resp.Header.Get("Link"), diff)
	}
}

// rawConn is a client that writes frames by hand, for what net/http's
// client never sends.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: t, c: c, fr: http2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rawConn) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	if err := rc.tryHeaders(id, end, fields...); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) tryHeaders(id uint32, end bool, fields ...string) error {
	rc.hbuf.Reset()
	for i := 0; i < len(fields); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

// until reads frames until one satisfies ok, and returns it.
func (rc *rawConn) until(what string, ok func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(f) {
			return f
		}
	}
}

// TestOversizedHeadersGet431: a header block past MaxHeaderListSize is
// answered 431, and the connection serves on.
func TestOversizedHeadersGet431(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	addr, _ := serve(t, h, Options{MaxHeaderListSize: 2048})
	rc := dialRaw(t, addr)
	fields := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	for i := range 6 {
		fields = append(fields, fmt.Sprintf("x-big-%d", i), strings.Repeat("b", 500))
	}
	rc.headers(1, true, fields...)
	f := rc.until("the response", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if got := f.PseudoValue("status"); got != "431" || f.StreamID != 1 {
		t.Fatalf("stream %d: status %q, want 431", f.StreamID, got)
	}
	rc.headers(3, true, ":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a")
	f = rc.until("the response", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if got := f.PseudoValue("status"); got != "200" || f.StreamID != 3 {
		t.Fatalf("stream %d: status %q, want 200", f.StreamID, got)
	}
}

// TestResetFloodIsRefused: a client that opens streams and resets them
// at once, faster than their handlers end, is told ENHANCE_YOUR_CALM
// instead of starting handlers without bound.
func TestResetFloodIsRefused(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	var mu sync.Mutex
	running := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		running++
		mu.Unlock()
		<-block // ignores its context, as a stuck handler would
	})
	addr, _ := serve(t, h, Options{MaxConcurrentStreams: 4})
	rc := dialRaw(t, addr)
	for id := uint32(1); id < 200; id += 2 {
		if err := rc.tryHeaders(id, true, ":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"); err != nil {
			break // the server closed the connection
		}
		if err := rc.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break // the server closed the connection
		}
	}
	f := rc.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", f.ErrCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if running > 8 {
		t.Fatalf("%d handlers started for a connection of at most 4 streams", running)
	}
}

// TestUnreadBodiesGiveBackWindow: requests answered without their bodies
// read (a denied request, a local reply) give the connection's window
// back, so that a long-lived connection keeps taking bodies: 3 MiB of
// them through a 1 MiB window.
func TestUnreadBodiesGiveBackWindow(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	})
	addr, conns := serve(t, h, Options{})
	c := client(t)
	body := bytes.Repeat([]byte("b"), 16<<10)
	for i := range 200 {
		resp, err := c.Post("http://"+addr+"/deny", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	resp, err := c.Post("http://"+addr+"/read", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprint(len(body)) || len(conns()) != 1 {
		t.Fatalf("last body read %q bytes on %d connections", b, len(conns()))
	}
}

// TestExpectContinueAnswered: a client that waits for "100 Continue"
// gets it when the handler first reads the body.
func TestExpectContinueAnswered(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			t.Errorf("Expect passed to the handler: %q", r.Header.Get("Expect"))
		}
		_, _ = io.Copy(w, r.Body)
	})
	addr, _ := serve(t, h, Options{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p, ExpectContinueTimeout: 20 * time.Second}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("after the go-ahead"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "after the go-ahead" || time.Since(start) > 10*time.Second {
		t.Fatalf("got %q after %v: the client waited for its timeout", b, time.Since(start))
	}
}

// TestDeclaredTrailersWithoutBody: a handler that declares a trailer,
// sets it and writes no body (a gRPC error) sends it.
func TestDeclaredTrailersWithoutBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14")
	})
	addr, _ := serve(t, h, Options{})
	resp, err := client(t).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("Grpc-Status"); got != "14" {
		t.Fatalf("trailer Grpc-Status %q (headers %v), want 14", got, resp.Header)
	}
}
