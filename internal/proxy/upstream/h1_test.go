package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/readwait"
)

// h1Server is a real HTTP/1.1 server on loopback that counts the
// connections it accepted.
type h1Server struct {
	addr  string
	conns atomic.Int32
}

func startH1Server(t *testing.T, h http.Handler) *h1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h1Server{addr: ln.Addr().String()}
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// h1Cluster returns a plaintext cluster whose HTTP/1.1 pool reaches addr.
func h1Cluster(t *testing.T, addr string, edit func(*proxyconfig.Cluster)) *Cluster {
	t.Helper()
	cfg := cluster(proxyconfig.LBRoundRobin)
	if edit != nil {
		edit(cfg)
	}
	eps := &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{{Weight: 1, Endpoints: []proxyconfig.Endpoint{{Address: addr, Weight: 1}}}}}
	m := NewManager()
	t.Cleanup(m.CloseIdle)
	return m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
}

func h1Get(ctx context.Context, c *Cluster, addr, path string, body io.Reader) (int, string, error) {
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Transport(false).RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestH1ReusesConnections(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %q", r.Method, r.URL.RequestURI(), r.Host, b)
	}))
	c := h1Cluster(t, srv.addr, nil)
	ctx := testCtx(t)
	for i := range 20 {
		var body io.Reader
		want := fmt.Sprintf("GET /x?i=%d %s %q", i, srv.addr, "")
		if i%2 == 1 {
			body = strings.NewReader("payload")
			want = fmt.Sprintf("POST /x?i=%d %s %q", i, srv.addr, "payload")
		}
		code, got, err := h1Get(ctx, c, srv.addr, fmt.Sprintf("/x?i=%d", i), body)
		if err != nil || code != 200 || got != want {
			t.Fatalf("request %d: %d %q %v, want 200 %q", i, code, got, err, want)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d connections, want 1", n)
	}
	if n := c.ActiveConnections(); n != 1 {
		t.Errorf("cluster counts %d connections, want 1 (idle)", n)
	}
}

// A keep-alive connection the upstream closes while it is idle: the next
// request on it must not fail.
func TestH1StaleConnectionIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				// One response without "Connection: close", then a close.
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	addr := ln.Addr().String()
	c := h1Cluster(t, addr, nil)
	ctx := testCtx(t)
	for i := range 5 {
		code, body, err := h1Get(ctx, c, addr, "/", nil)
		if err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if n := accepted.Load(); n < 5 {
		t.Errorf("%d connections for 5 requests on a server that closes after each", n)
	}
}

// The check done before reusing a connection idle for long: it sees the
// upstream's close.
func TestH1AliveSeesUpstreamClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closeNow := make(chan struct{})
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		<-closeNow
	}()
	addr := ln.Addr().String()
	c := h1Cluster(t, addr, nil)
	if _, _, err := h1Get(testCtx(t), c, addr, "/", nil); err != nil {
		t.Fatal(err)
	}
	pc := c.tr.Load().h1.takeIdle(addr)
	if pc == nil {
		t.Fatal("no idle connection after a request")
	}
	defer pc.conn.Close()
	if !pc.alive() {
		t.Fatal("an open idle connection looks closed")
	}
	close(closeNow)
	deadline := time.Now().Add(5 * time.Second)
	for pc.alive() {
		if time.Now().After(deadline) {
			t.Fatal("a connection closed by the upstream still looks alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestH1MaxRequestsPerConnection(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := h1Cluster(t, srv.addr, func(cfg *proxyconfig.Cluster) { cfg.MaxRequestsPerConnection = 2 })
	ctx := testCtx(t)
	for i := range 5 {
		if code, _, err := h1Get(ctx, c, srv.addr, "/", nil); err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	if n := srv.conns.Load(); n != 3 {
		t.Errorf("5 requests with max 2 per connection used %d connections, want 3", n)
	}
}

// With max_connections reached, a request waits for a connection to come
// back instead of failing.
func TestH1WaitsForAConnection(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int32
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		<-release
		io.WriteString(w, "ok")
	}))
	c := h1Cluster(t, srv.addr, func(cfg *proxyconfig.Cluster) { cfg.Thresholds.MaxConnections = 1 })
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := h1Get(ctx, c, srv.addr, "/", nil)
			if err == nil && (code != 200 || body != "ok") {
				err = fmt.Errorf("%d %q", code, body)
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no request reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("max_connections 1: the server saw %d connections", n)
	}
	if c.Overflows.Load() != 0 {
		t.Errorf("waiting requests were counted as %d overflows", c.Overflows.Load())
	}
}

func TestH1ChunkedBodyAndTrailers(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		fmt.Fprintf(w, "te=%v len=%d body=%q err=%v trailer=%q", r.TransferEncoding, r.ContentLength, b, err, r.Trailer.Get("X-Check"))
		w.Header().Set("X-Sum", "42")
	}))
	c := h1Cluster(t, srv.addr, nil)
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, "http://"+srv.addr+"/", pr)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Check": nil}
	go func() {
		for _, part := range []string{"hello ", "streamed ", "world"} {
			io.WriteString(pw, part)
		}
		req.Trailer.Set("X-Check", "done")
		pw.Close()
	}()
	resp, err := c.Transport(false).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `te=[chunked] len=-1 body="hello streamed world" err=<nil> trailer="done"`
	if err != nil || string(b) != want {
		t.Errorf("got %q (%v), want %q", b, err, want)
	}
	if resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("response trailer X-Sum = %q, want 42", resp.Trailer.Get("X-Sum"))
	}
}

// A response body closed before its end takes its connection with it; the
// next request gets a fresh one and a correct response.
func TestH1EarlyCloseDropsTheConnection(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	}))
	c := h1Cluster(t, srv.addr, nil)
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.addr+"/big", nil)
	resp, err := c.Transport(false).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body, err := h1Get(ctx, c, srv.addr, "/small", nil)
	if err != nil || code != 200 || body != "small" {
		t.Errorf("after an early close: %d %q %v", code, body, err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the cut one is not reused)", n)
	}
}

// Cancelling a request (a route or per-try timeout) unblocks it at once
// and says why.
func TestH1CancelUnblocks(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	c := h1Cluster(t, srv.addr, nil)
	cause := errors.New("per-try timeout")
	ctx, cancel := context.WithCancelCause(testCtx(t))
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, _, err := h1Get(ctx, c, srv.addr, "/", nil)
	if !errors.Is(err, cause) {
		t.Errorf("cancelled request: %v, want the cancellation cause", err)
	}
	if n := c.ActiveConnections(); n != 0 {
		t.Errorf("the cancelled request's connection is still counted (%d)", n)
	}
}

// 1xx responses reach the caller's trace hook and the final response
// follows.
func TestH1InformationalResponses(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	}))
	c := h1Cluster(t, srv.addr, nil)
	var got []int
	ctx := httptraceContext(testCtx(t), func(code int) { got = append(got, code) })
	code, body, err := h1Get(ctx, c, srv.addr, "/", nil)
	if err != nil || code != 200 || body != "final" {
		t.Fatalf("%d %q %v", code, body, err)
	}
	if len(got) != 1 || got[0] != http.StatusEarlyHints {
		t.Errorf("1xx seen: %v, want [103]", got)
	}
}

func httptraceContext(ctx context.Context, f func(code int)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		f(code)
		return nil
	}})
}

// A connection in use when its cluster is dropped, or when its endpoint
// leaves the cluster, is closed when its request ends instead of waiting
// idle for an hour.
func TestH1ConnectionsOfRetiredPoolsClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *Manager, cfg *proxyconfig.Cluster, eps *proxyconfig.Endpoints)
	}{
		{"cluster removed", func(m *Manager, _ *proxyconfig.Cluster, _ *proxyconfig.Endpoints) { m.Update(nil, nil) }},
		{"endpoint removed", func(m *Manager, cfg *proxyconfig.Cluster, _ *proxyconfig.Endpoints) {
			m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": endpoints(1)})
		}},
		{"settings changed", func(m *Manager, cfg *proxyconfig.Cluster, eps *proxyconfig.Endpoints) {
			c2 := *cfg
			c2.IdleTimeout *= 2
			m.Update(map[string]*proxyconfig.Cluster{"c": &c2}, map[string]*proxyconfig.Endpoints{"c": eps})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			inFlight := make(chan struct{}, 1)
			srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inFlight <- struct{}{}
				<-release
				io.WriteString(w, "ok")
			}))
			cfg := cluster(proxyconfig.LBRoundRobin)
			cfg.IdleTimeout = time.Hour // only the change may close the connection
			eps := &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{{Weight: 1, Endpoints: []proxyconfig.Endpoint{{Address: srv.addr, Weight: 1}}}}}
			m := NewManager()
			c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
			done := make(chan error, 1)
			go func() {
				_, _, err := h1Get(testCtx(t), c, srv.addr, "/", nil)
				done <- err
			}()
			<-inFlight
			tc.change(m, cfg, eps)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.ActiveConnections() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still open after the request ended", c.ActiveConnections())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// With max_connections reached by an idle connection to one endpoint, a
// request to another endpoint closes it and goes through instead of
// waiting for ever.
func TestH1IdleConnectionYieldsItsSlot(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	a, b := startH1Server(t, ok), startH1Server(t, ok)
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.Thresholds.MaxConnections = 1
	cfg.IdleTimeout = time.Hour
	eps := &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{{Weight: 1, Endpoints: []proxyconfig.Endpoint{{Address: a.addr, Weight: 1}, {Address: b.addr, Weight: 1}}}}}
	m := NewManager()
	t.Cleanup(m.CloseIdle)
	c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	ctx := testCtx(t)
	for _, addr := range []string{a.addr, b.addr, a.addr} {
		if code, _, err := h1Get(ctx, c, addr, "/", nil); err != nil || code != 200 {
			t.Fatalf("request to %s: %d %v", addr, code, err)
		}
	}
	if n := c.ActiveConnections(); n != 1 {
		t.Errorf("%d connections, want 1 (max_connections)", n)
	}
}

// An upstream that sends a body with a HEAD response leaves bytes the
// next request must never read as its own response.
func TestH1LeftoverBytesDropTheConnection(t *testing.T) {
	addr := rawH1Upstream(t, func(conn net.Conn, req *http.Request) {
		if req.Method == http.MethodHead {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET")
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npublic")
	})
	c := h1Cluster(t, addr, nil)
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+addr+"/", nil)
	resp, err := c.Transport(false).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body, err := h1Get(ctx, c, addr, "/", nil); err != nil || body != "public" {
		t.Errorf("GET after a HEAD answered with a body: %q %v, want public", body, err)
	}
}

// An upstream that sends the body of a response that has none by rule (to
// HEAD, 204, 304) a moment after its head: the bytes arrive after the
// connection went back to the pool, and the next request on it, well
// within staleCheckAfter, must not read them as its own response (another
// client's, in a sidecar).
func TestH1LateLeftoverBytesAreNotTheNextResponse(t *testing.T) {
	for _, tc := range []struct {
		name, method, head string
	}{
		{"HEAD", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n"},
		{"204", http.MethodGet, "HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n"},
		{"304", http.MethodGet, "HTTP/1.1 304 Not Modified\r\nContent-Length: 38\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headDone := make(chan struct{}) // the pool has the bodyless response
			straySent := make(chan struct{})
			addr := rawH1Upstream(t, func(conn net.Conn, req *http.Request) {
				if req.URL.Path == "/bodyless" {
					// Head first; the (wrong) body once the connection
					// is idle, and it looks like a response.
					io.WriteString(conn, tc.head)
					<-headDone
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET")
					close(straySent)
					return
				}
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npublic")
			})
			c := h1Cluster(t, addr, nil)
			ctx := testCtx(t)
			req, _ := http.NewRequestWithContext(ctx, tc.method, "http://"+addr+"/bodyless", nil)
			resp, err := c.Transport(false).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			close(headDone)
			<-straySent // the connection is idle for far less than staleCheckAfter
			if _, body, err := h1Get(ctx, c, addr, "/", nil); err != nil || body != "public" {
				t.Errorf("GET after a %s answered with a late body: %q %v, want public", tc.name, body, err)
			}
		})
	}
}

// Only a response without a body by rule marks its connection for a peek
// on its next reuse (a peek costs a syscall); a clean marked connection is
// still reused.
func TestH1RecheckOnlyAfterBodylessResponses(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		case "/chunked":
			w.(http.Flusher).Flush() // no length known: chunked
			io.WriteString(w, "body")
		default:
			io.WriteString(w, "body")
		}
	}))
	c := h1Cluster(t, srv.addr, nil)
	tr := c.Transport(false).(*h1Transport)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name, method, path string
		want               bool
	}{
		{"GET with a body", http.MethodGet, "/", false},
		{"HEAD", http.MethodHead, "/", true},
		{"GET after HEAD", http.MethodGet, "/", false},
		{"204", http.MethodGet, "/204", true},
		{"304", http.MethodGet, "/304", true},
		{"Content-Length 0", http.MethodGet, "/empty", false},
		{"chunked", http.MethodGet, "/chunked", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, "http://"+srv.addr+tc.path, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.mu.Lock()
			l := tr.idle[srv.addr]
			tr.mu.Unlock()
			if len(l) != 1 {
				t.Fatalf("%d idle connections, want 1", len(l))
			}
			if l[0].recheck != tc.want {
				t.Errorf("recheck = %v, want %v", l[0].recheck, tc.want)
			}
		})
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (a clean connection passes its check)", n)
	}
}

// A 101 hands the caller the connection only when its request asked for
// an upgrade; a 101 to any other request leaves the caller no connection
// (its body is empty) and the pool closes it (RFC 9110 section 15.2.2).
func TestH1SwitchingProtocolsOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name     string
		header   http.Header
		upgraded bool
	}{
		{"upgrade asked", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"test"}}, true},
		{"no upgrade asked", nil, false},
		{"Upgrade without Connection", http.Header{"Upgrade": {"test"}}, false},
		{"Connection without Upgrade", http.Header{"Connection": {"Upgrade"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			closed := make(chan error, 1) // the upstream's read after its 101
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = br.ReadByte()
				closed <- err
			}()
			addr := ln.Addr().String()
			c := h1Cluster(t, addr, nil)
			req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, "http://"+addr+"/", nil)
			req.Header = tc.header
			resp, err := c.Transport(false).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			rwc, upgraded := resp.Body.(io.ReadWriteCloser)
			if upgraded != tc.upgraded {
				t.Fatalf("body %T: upgraded connection %v, want %v", resp.Body, upgraded, tc.upgraded)
			}
			if upgraded {
				io.WriteString(rwc, "x")
				if err := <-closed; err != nil {
					t.Errorf("the upstream read %v, want the byte written on the upgraded connection", err)
				}
				rwc.Close()
				return
			}
			if err := <-closed; err != io.EOF {
				t.Errorf("the upstream read %v after its unasked 101, want EOF (the pool closes the connection)", err)
			}
			if n := c.ActiveConnections(); n != 0 {
				t.Errorf("cluster counts %d connections, want 0", n)
			}
		})
	}
}

// An upstream that streams its answer while it reads a large request body
// (full duplex): writing the body first would block both sides once the
// socket buffers fill.
func TestH1FullDuplexLargeBody(t *testing.T) {
	srv := startH1Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		io.Copy(w, r.Body)
	}))
	c := h1Cluster(t, srv.addr, nil)
	const size = 16 << 20
	body := strings.Repeat("x", size)
	code, got, err := h1Get(testCtx(t), c, srv.addr, "/", strings.NewReader(body))
	if err != nil || code != 200 || len(got) != size {
		t.Fatalf("echo of %d bytes: %d, %d bytes, %v", size, code, len(got), err)
	}
	// The connection is reused once the writer is done.
	if code, _, err := h1Get(testCtx(t), c, srv.addr, "/", strings.NewReader("small")); err != nil || code != 200 {
		t.Fatalf("next request: %d %v", code, err)
	}
}

// An upstream that sends an unasked response right behind one framed by
// its Content-Length, in the same write: the body, longer than the pool's
// 4 KiB read buffer, is read to its end straight from the socket, which
// leaves the stray response in the socket, not in the buffer, and the
// next request on the connection, well within staleCheckAfter, must not
// read it as its own (another client's, in a gateway). On loopback the
// write arrives whole, before the body's last read.
func TestH1StrayResponseInTheSocketIsNotTheNextResponse(t *testing.T) {
	if !readsTellWhatIsLeft(t) {
		t.Skip("connections here are not readwait.Conns (no TCP_INQ, or not Linux): the pool cannot see bytes left in the socket")
	}
	body := strings.Repeat("x", 16<<10)
	addr := rawH1Upstream(t, func(conn net.Conn, req *http.Request) {
		if req.URL.Path == "/large" {
			io.WriteString(conn, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET", len(body), body))
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npublic")
	})
	c := h1Cluster(t, addr, nil)
	ctx := testCtx(t)
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/large", nil)
		resp, err := c.Transport(false).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read as a proxy copies a body: large reads, each up to what
		// the body has left.
		n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 32<<10))
		resp.Body.Close()
		if err != nil || n != int64(len(body)) {
			t.Fatalf("large body: %d bytes, %v; want %d", n, err, len(body))
		}
		if _, got, err := h1Get(ctx, c, addr, "/", nil); err != nil || got != "public" {
			t.Fatalf("GET after a response followed by a stray one: %q %v, want public", got, err)
		}
	}
}

// rawH1Upstream serves HTTP/1.1 on loopback by writing each answer
// itself: answer gets the connection and each request read from it, in
// order, and writes whatever bytes it likes. It returns the address.
func rawH1Upstream(t *testing.T, answer func(conn net.Conn, req *http.Request)) string {
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
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					answer(conn, req)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// readsTellWhatIsLeft reports whether the pool's connections here tell
// after each read whether bytes were left in the socket (readwait).
func readsTellWhatIsLeft(t *testing.T) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ok := readwait.Wrap(c).(interface{ Unread() bool })
	return ok
}
