package h2client

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
)

// h2cServer runs net/http's HTTP/2 server (h2c with prior knowledge) on
// loopback: an implementation of its own to test the client against.
func h2cServer(t *testing.T, h http.Handler, maxStreams uint32) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	conns = new(atomic.Int32)
	srv := &http.Server{Handler: h, Protocols: p, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: int(maxStreams)},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), conns
}

func newPool(t *testing.T) *Pool {
	t.Helper()
	d := &net.Dialer{}
	p := New(Options{Dial: d.DialContext, IdleTimeout: time.Minute})
	t.Cleanup(p.Retire)
	return p
}

func do(t *testing.T, p *Pool, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// completeBody is a request body that says it has arrived in full, as the
// sidecar's HTTP/2 server's does for a gRPC call's message.
type completeBody struct{ io.Reader }

func (completeBody) Close() error   { return nil }
func (completeBody) Complete() bool { return true }

func TestRoundTrips(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprintf("%s %s %s %s len=%d ua=%q te=%q conn=%q", r.Proto, r.Method, r.Host, r.RequestURI, r.ContentLength, r.Header.Get("User-Agent"), r.Header.Get("Te"), r.Header.Get("Connection")))
		w.Header().Set("Trailer", "X-Req-Trailer")
		_, _ = w.Write(b)
		w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Up"))
	})
	addr, conns := h2cServer(t, h, 0)
	p := newPool(t)
	for _, tc := range []struct {
		name     string
		body     func() io.ReadCloser
		length   int64
		trailer  http.Header
		header   http.Header
		wantSeen string
		wantBody string
		wantTr   string
	}{
		{name: "get", header: http.Header{"User-Agent": {""}, "Connection": {"keep-alive"}, "Te": {"trailers"}},
			wantSeen: `HTTP/2.0 GET svc.test /p?q=1 len=0 ua="" te="trailers" conn=""`},
		{name: "body of known length, arrived", body: func() io.ReadCloser { return completeBody{strings.NewReader("hello")} }, length: 5,
			wantSeen: `HTTP/2.0 POST svc.test /p?q=1 len=5 ua="" te="" conn=""`, wantBody: "hello"},
		{name: "streamed body with trailers", body: func() io.ReadCloser { return io.NopCloser(strings.NewReader("streamed")) }, length: -1,
			trailer:  http.Header{"X-Up": {"t1"}},
			wantSeen: `HTTP/2.0 POST svc.test /p?q=1 len=-1 ua="" te="" conn=""`, wantBody: "streamed", wantTr: "t1"},
		{name: "arrived body past the inline bound", body: func() io.ReadCloser { return completeBody{bytes.NewReader(bytes.Repeat([]byte("x"), 200<<10))} }, length: -1,
			wantSeen: `HTTP/2.0 POST svc.test /p?q=1 len=-1 ua="" te="" conn=""`, wantBody: strings.Repeat("x", 200<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.body != nil {
				method = "POST"
			}
			req, _ := http.NewRequest(method, "http://"+addr+"/p?q=1", nil)
			req.Host = "svc.test"
			if tc.body != nil {
				req.Body = tc.body()
			}
			req.ContentLength = tc.length
			req.Trailer = tc.trailer
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, body := do(t, p, req)
			if got := resp.Header.Get("X-Seen"); got != tc.wantSeen {
				t.Errorf("server saw %s, want %s", got, tc.wantSeen)
			}
			if body != tc.wantBody || resp.Trailer.Get("X-Req-Trailer") != tc.wantTr || resp.ProtoMajor != 2 {
				t.Errorf("got %d bytes, trailer %q over %s; want %d bytes, %q", len(body), resp.Trailer.Get("X-Req-Trailer"), resp.Proto, len(tc.wantBody), tc.wantTr)
			}
		})
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests, want 1", n)
	}
}

// TestLargeBodiesAndManyStreams: 24 concurrent 2 MiB echoes through a
// server that allows 8 streams per connection: flow control both ways,
// more connections when the streams of one are taken.
func TestLargeBodiesAndManyStreams(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
	addr, conns := h2cServer(t, h, 8)
	p := newPool(t)
	payload := make([]byte, 2<<20)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(payload)
	want := sha256.Sum256(payload)
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", "http://"+addr+"/", io.NopCloser(bytes.NewReader(payload)))
			req.ContentLength = int64(len(payload))
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || sha256.Sum256(got) != want {
				t.Errorf("request %d: %d bytes back, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	if n := conns.Load(); n < 3 {
		t.Errorf("%d connections for 24 streams at 8 a connection", n)
	}
}

// TestCancelResetsStream: a request whose context ends resets its stream;
// the server's handler sees its context end; the connection serves on.
func TestCancelResetsStream(t *testing.T) {
	handlerGone := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		handlerGone <- struct{}{}
	})
	addr, conns := h2cServer(t, h, 0)
	p := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/wait", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("body after cancel: %v", err)
	}
	select {
	case <-handlerGone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handler never saw the reset")
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/ok", nil)
	if _, body := do(t, p, req); body != "ok" || conns.Load() != 1 {
		t.Errorf("after the reset: %q on %d connections", body, conns.Load())
	}
}

// TestRefusedStreamIsReported: a stream the server refuses fails with an
// error that names REFUSED_STREAM (the proxy's retry_on refused-stream).
func TestRefusedStreamIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fr := http2.NewFramer(c, c)
		buf := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if hf, ok := f.(*http2.HeadersFrame); ok {
				_ = fr.WriteRSTStream(hf.StreamID, http2.ErrCodeRefusedStream)
			}
		}
	}()
	p := newPool(t)
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	_, err = p.RoundTrip(req)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "REFUSED_STREAM") {
		t.Fatalf("RoundTrip: %v, want a RefusedError naming REFUSED_STREAM", err)
	}
}

// TestGoAwayResendsUnprocessed: streams above a GOAWAY's last stream were
// not processed, and go again on a new connection.
func TestGoAwayResendsUnprocessed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				defer c.Close()
				fr := http2.NewFramer(c, c)
				fr.ReadMetaHeaders = nil
				buf := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				_ = fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					hf, ok := f.(*http2.HeadersFrame)
					if !ok {
						continue
					}
					if n == 1 {
						// The first connection takes nothing.
						_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
						continue
					}
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: []byte{0x88}, EndStream: true, EndHeaders: true}) // :status 200
				}
			}()
		}
	}()
	p := newPool(t)
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	resp, body := do(t, p, req)
	if resp.StatusCode != 200 || body != "" || accepted.Load() != 2 {
		t.Fatalf("got %d %q after %d connections, want 200 on the second", resp.StatusCode, body, accepted.Load())
	}
}

// TestInformationalAndContinue: 1xx responses reach the request's trace;
// a body waiting for "100 Continue" goes once it comes.
func TestInformationalAndContinue(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		b, _ := io.ReadAll(r.Body) // net/http sends 100 Continue at this read
		_, _ = w.Write(b)
	})
	addr, _ := h2cServer(t, h, 0)
	p := newPool(t)
	var got []string
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		mu.Unlock()
		return nil
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	do(t, p, req)
	req, _ = http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", io.NopCloser(strings.NewReader("payload")))
	req.ContentLength = 7
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	_, body := do(t, p, req)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"103 </a.css>; rel=preload", "100 "}, got); diff != "" || body != "payload" {
		t.Errorf("body %q; informational responses (-want +got):\n%s", body, diff)
	}
	if time.Since(start) >= continueTimeout {
		t.Errorf("the body waited %v: for the timeout, not the go-ahead", time.Since(start))
	}
}

// TestDialErrorIsReturned: the dialer's error reaches the caller as it
// is (the proxy tells a connect failure from it).
func TestDialErrorIsReturned(t *testing.T) {
	dialErr := errors.New("no route")
	p := New(Options{Dial: func(context.Context, string, string) (net.Conn, error) { return nil, dialErr }})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	if _, err := p.RoundTrip(req); !errors.Is(err, dialErr) {
		t.Fatalf("RoundTrip: %v, want the dial error", err)
	}
}

// TestIdleConnectionsClose: CloseIdleConnections and the idle timeout
// close connections without streams.
func TestIdleConnectionsClose(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	addr, conns := h2cServer(t, h, 0)
	d := &net.Dialer{}
	p := New(Options{Dial: d.DialContext, IdleTimeout: 200 * time.Millisecond})
	defer p.Retire()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	do(t, p, req)
	deadline := time.Now().Add(10 * time.Second)
	for len(p.all()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection still open past the idle timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	do(t, p, req)
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want a second after the idle close", n)
	}
	p.CloseIdleConnections()
	if n := len(p.all()); n != 0 {
		t.Errorf("%d connections left after CloseIdleConnections", n)
	}
}

// TestTrailersRaceFree: trailers that arrive with the response's headers
// and body in one segment are filled in on the reader's goroutine of the
// response, at its end, never while the caller reads the announced map
// (run under -race).
func TestTrailersRaceFree(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Millisecond) // the caller has the response meanwhile
		_, _ = io.WriteString(w, "m")
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok")
	})
	addr, _ := h2cServer(t, h, 0)
	p := newPool(t)
	for range 50 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		announced := 0
		for range 3 { // the proxy ranges over it at once, and reads it again later
			announced = 0
			for range resp.Trailer {
				announced++
			}
			time.Sleep(2 * time.Millisecond)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if announced != 2 || resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "ok" {
			t.Fatalf("announced %d, trailers %v", announced, resp.Trailer)
		}
	}
}

// TestEarlyResponseStopsUpload: a server that answers in full before it
// reads the request's body, and neither reads nor resets it, does not
// leave the body's writer waiting for window: the stream is reset and
// its slot freed.
func TestEarlyResponseStopsUpload(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reset := make(chan http2.ErrCode, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fr := http2.NewFramer(c, c)
		buf := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.HeadersFrame:
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: []byte{0x88}, EndStream: true, EndHeaders: true}) // :status 200
			case *http2.RSTStreamFrame:
				reset <- f.ErrCode
				return
			}
		}
	}()
	p := newPool(t)
	pr, pw := io.Pipe()
	go func() {
		// More than the server's 64 KiB window: without the reset, the
		// writer would wait for window forever.
		_, _ = pw.Write(make([]byte, 1<<20))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/", pr)
	resp, body := do(t, p, req)
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	select {
	case code := <-reset:
		if code != http2.ErrCodeCancel {
			t.Fatalf("stream reset with %v, want CANCEL", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upload was never cut: its writer waits for window")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cc := p.all()[0]
		cc.mu.Lock()
		n := len(cc.streams)
		cc.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still held", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
