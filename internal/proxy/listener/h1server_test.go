package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// h1Test runs a Manager's HTTP/1.x server with a test handler on a real
// loopback socket and returns its address.
func h1Test(t *testing.T, h http.HandlerFunc) (*Manager, string) {
	t.Helper()
	m := New(Options{})
	m.handler = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.serveHTTPConn(&downConn{Conn: c, info: &connInfo{listener: "test"}})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return m, ln.Addr().String()
}

// rawExchange writes raw request bytes and reads responses with net/http's
// client-side parser.
type rawExchange struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawExchange {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawExchange{t: t, conn: c, br: bufio.NewReader(c)}
}

func (x *rawExchange) send(s string) {
	x.t.Helper()
	if _, err := io.WriteString(x.conn, s); err != nil {
		x.t.Fatal(err)
	}
}

// read reads one response to a request with the given method.
func (x *rawExchange) read(method string) (*http.Response, string) {
	x.t.Helper()
	resp, err := http.ReadResponse(x.br, &http.Request{Method: method})
	if err != nil {
		x.t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		x.t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection.
func (x *rawExchange) closed() bool {
	_ = x.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := x.br.ReadByte()
	return err == io.EOF
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s %s %s body=%q", r.Method, r.URL.RequestURI(), r.Proto, b)
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	_, addr := h1Test(t, echoHandler)
	x := dialRaw(t, addr)
	// Three requests in one write: answered in order on one connection.
	x.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	for _, want := range []string{`GET /a HTTP/1.1 body=""`, `POST /b HTTP/1.1 body="hello"`, `POST /c HTTP/1.1 body="abc"`} {
		resp, body := x.read("GET")
		if resp.StatusCode != 200 || body != want || resp.Close {
			t.Errorf("got %d %q close=%v, want 200 %q keep-alive", resp.StatusCode, body, resp.Close, want)
		}
		if resp.Header.Get("Date") == "" {
			t.Error("no Date header")
		}
	}
}

func TestH1ResponseFraming(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			// No length: chunked, with a declared and an undeclared trailer.
			w.Header().Set("Trailer", "X-Declared")
			io.WriteString(w, "part1 ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Declared", "d")
			w.Header().Set(http.TrailerPrefix+"X-Late", "l")
		case "/empty":
			// Nothing written: a zero length, not an endless body.
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/length":
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
		case "/short":
			// Declares more than it writes: the connection must end.
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		}
	})
	x := dialRaw(t, addr)
	x.send("GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := x.read("GET")
	if body != "part1 part2" || len(resp.TransferEncoding) != 1 || resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Late") != "l" {
		t.Errorf("chunked: body %q te %v trailers %v", body, resp.TransferEncoding, resp.Trailer)
	}
	x.send("GET /empty HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := x.read("GET"); resp.ContentLength != 0 || body != "" {
		t.Errorf("empty: length %d body %q", resp.ContentLength, body)
	}
	x.send("GET /nocontent HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := x.read("GET"); resp.StatusCode != 204 || resp.Header.Get("Content-Length") != "" {
		t.Errorf("204: %d %v", resp.StatusCode, resp.Header)
	}
	x.send("HEAD /length HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := x.read("HEAD"); resp.ContentLength != 3 || body != "" {
		t.Errorf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	x.send("GET /length HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := x.read("GET"); resp.ContentLength != 3 || body != "abc" {
		t.Errorf("GET: length %d body %q", resp.ContentLength, body)
	}
	// Still one connection after all of the above.
	x.send("GET /short HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(x.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil || string(b) != "abc" {
		t.Errorf("short body: %q %v, want abc and an unexpected EOF", b, err)
	}
}

func TestH1HTTP10(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "unknown length") // no Content-Length
	})
	// HTTP/1.0 without keep-alive: the body ends at the close.
	x := dialRaw(t, addr)
	x.send("GET / HTTP/1.0\r\n\r\n")
	resp, body := x.read("GET")
	if resp.ProtoMinor != 0 || body != "unknown length" || !resp.Close {
		t.Errorf("HTTP/1.0: %s %q close=%v", resp.Proto, body, resp.Close)
	}
	if !x.closed() {
		t.Error("HTTP/1.0 connection left open")
	}
}

func TestH1ExpectContinue(t *testing.T) {
	sawExpect := make(chan string, 1)
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		sawExpect <- r.Header.Get("Expect")
		echoHandler(w, r)
	})
	x := dialRaw(t, addr)
	x.send("PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp, err := http.ReadResponse(x.br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("want 100 Continue before the body, got %v %v", resp, err)
	}
	x.send("data")
	resp, body := x.read("PUT")
	if resp.StatusCode != 200 || body != `PUT /up HTTP/1.1 body="data"` {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if e := <-sawExpect; e != "" {
		t.Errorf("the handler saw Expect %q: the expectation is answered here and must not travel on", e)
	}
}

// A final response to a request still waiting for "100 Continue": the
// client may or may not send the body now, so the connection ends.
func TestH1ExpectContinueRefused(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden) // never reads the body
	})
	x := dialRaw(t, addr)
	x.send("PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp, _ := x.read("PUT")
	if resp.StatusCode != 403 || !resp.Close {
		t.Errorf("got %d close=%v, want 403 with Connection: close", resp.StatusCode, resp.Close)
	}
	if !x.closed() {
		t.Error("connection left open")
	}
}

func TestH1UnreadBodyIsDrained(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path) // never reads the body
	})
	x := dialRaw(t, addr)
	x.send("POST /first HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"/first", "/second"} {
		if _, body := x.read("GET"); body != want {
			t.Errorf("got %q, want %q", body, want)
		}
	}
}

func TestH1BadRequests(t *testing.T) {
	_, addr := h1Test(t, echoHandler)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"malformed request line", "NOT HTTP\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes+10000) + "\r\n\r\n", 431},
		{"conflicting framing", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := dialRaw(t, addr)
			go io.WriteString(x.conn, tc.req) // may block: the server stops reading early
			resp, _ := x.read("GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("got %d close=%v, want %d and a close", resp.StatusCode, resp.Close, tc.status)
			}
		})
	}
}

// A drain closes idle keep-alive connections at once; a busy one closes
// after its response, which says so.
func TestH1Drain(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	m, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inHandler <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})
	idle := dialRaw(t, addr)
	idle.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idle.read("GET")
	busy := dialRaw(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-inHandler
	m.StopAccepting()
	if !idle.closed() {
		t.Error("idle keep-alive connection not closed by the drain")
	}
	close(release)
	resp, body := busy.read("GET")
	if body != "ok" || !resp.Close {
		t.Errorf("busy connection: %q close=%v, want ok and Connection: close", body, resp.Close)
	}
}

// A connection opening with the HTTP/2 preface goes to the h2c server.
func TestH1HandsH2CToTheHTTP2Server(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Proto)
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Errorf("served as %q, want HTTP/2.0", b)
	}
}

// Authorization rules on destination ports and IPs read the local
// address from the request's context, as under net/http.
func TestH1LocalAddrInContext(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Context().Value(http.LocalAddrContextKey))
	})
	x := dialRaw(t, addr)
	x.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, body := x.read("GET"); body != addr {
		t.Errorf("local address in the context: %q, want %q", body, addr)
	}
}

// A handler that panics after taking over the connection must not bring
// the server down (the connection is the handler's).
func TestH1PanicAfterHijack(t *testing.T) {
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "alive")
	})
	x := dialRaw(t, addr)
	x.send("GET /hijack HTTP/1.1\r\nHost: h\r\n\r\n")
	if !x.closed() {
		t.Error("hijacked connection not closed")
	}
	y := dialRaw(t, addr)
	y.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, body := y.read("GET"); body != "alive" {
		t.Errorf("after the panic: %q", body)
	}
}

// A shutdown that runs out of time ends the requests still waiting (on an
// upstream that never answers) instead of waiting for them forever.
func TestH1ShutdownCancelsStuckRequests(t *testing.T) {
	m := New(Options{})
	ended := make(chan struct{})
	inHandler := make(chan struct{})
	m.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-r.Context().Done()
		close(ended)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			m.serveHTTPConn(&downConn{Conn: c, info: &connInfo{listener: "test"}})
		}
	}()
	x := dialRaw(t, ln.Addr().String())
	x.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	<-inHandler
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Shutdown(ctx) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck request's context was never cancelled")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// lengthEcho is echoHandler with a Content-Length, so that HTTP/1.0
// responses can keep the connection.
func lengthEcho(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s := fmt.Sprintf("%s %s %s body=%q", r.Method, r.URL.RequestURI(), r.Proto, b)
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	io.WriteString(w, s)
}

// RFC 9112 section 6.1: a server that receives a request with both
// Content-Length and Transfer-Encoding MAY reject it or process it by
// Transfer-Encoding alone; "Regardless, the server MUST close the
// connection after responding to such a request". It is refused with 400,
// as Envoy does unless allow_chunked_length is set: were the connection
// kept, bytes that a hop in front framing by Content-Length counted as
// this request's body would be served as a request of their own.
func TestH1ContentLengthAndTransferEncodingCloses(t *testing.T) {
	_, addr := h1Test(t, lengthEcho)
	x := dialRaw(t, addr)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	x.send("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(5+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\n" + smuggled)
	resp, body := x.read("POST")
	t.Logf("first response: %d close=%v %q", resp.StatusCode, resp.Close, body)
	if resp.StatusCode < 400 && !resp.Close {
		t.Errorf("response to a request with both Content-Length and Transfer-Encoding keeps the connection")
	}
	if want := "400 Bad Request: request has both Content-Length and Transfer-Encoding"; resp.StatusCode != 400 || body != want {
		t.Errorf("got %d %q, want 400 %q", resp.StatusCode, body, want)
	}
	_ = x.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if resp, err := http.ReadResponse(x.br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("bytes after the chunked body were served as a request: %d %q", resp.StatusCode, b)
	}
}

// RFC 9112 section 6.1: "A server or client that receives an HTTP/1.0
// message containing a Transfer-Encoding header field MUST treat the
// message as if the framing is faulty, even if a Content-Length is
// present, and close the connection after processing the message."
// Such a request is refused with 400: were the connection kept, the
// chunked body of a keep-alive HTTP/1.0 request, read by its
// Content-Length, would be served as a second request.
func TestH1HTTP10TransferEncodingCloses(t *testing.T) {
	_, addr := h1Test(t, lengthEcho)
	x := dialRaw(t, addr)
	x.send("POST /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
		"29\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n\r\n0\r\n\r\n")
	resp, body := x.read("POST")
	t.Logf("first response: %d close=%v %q", resp.StatusCode, resp.Close, body)
	if !resp.Close {
		t.Errorf("response to an HTTP/1.0 request with Transfer-Encoding keeps the connection")
	}
	if want := "400 Bad Request: HTTP/1.0 request has Transfer-Encoding"; resp.StatusCode != 400 || body != want {
		t.Errorf("got %d %q, want 400 %q", resp.StatusCode, body, want)
	}
	_ = x.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if resp, err := http.ReadResponse(x.br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("the chunked body was served as a request of its own: %d %q", resp.StatusCode, b)
	}
}

// A response that the server has written in full must reach the client
// even when the connection then closes with part of the request body
// unread (more than maxDrain). Closing a socket with unread input makes
// the kernel send a reset and drop what is still queued for sending, the
// end of the response; so the server half-closes and reads what comes
// first (lingerClose), as net/http's closeWriteAndWait does.
func TestH1ResponseSurvivesCloseWithUnreadBody(t *testing.T) {
	const respSize = 16 << 20
	payload := strings.Repeat("r", respSize)
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		// Refuses the upload without reading it (as a 413, an authz
		// denial or an upstream's early answer would).
		w.Header().Set("Content-Length", strconv.Itoa(respSize))
		io.WriteString(w, payload)
	})
	x := dialRaw(t, addr)
	_ = x.conn.SetDeadline(time.Now().Add(30 * time.Second))
	x.send("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n")
	go func() {
		chunk := []byte(strings.Repeat("b", 64<<10))
		for i := 0; i < 64; i++ { // 4 MiB of the body, then the client waits
			if _, err := x.conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(x.br, nil)
	if err != nil {
		t.Fatalf("reading the response head: %v", err)
	}
	// A client that reads at its own pace (the pause is its pace, not a
	// wait for the server): the end of the response is still queued at
	// the server when the server closes.
	var n int64
	buf := make([]byte, 256<<10)
	for {
		m, rerr := io.ReadFull(resp.Body, buf)
		n += int64(m)
		if rerr != nil {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF && n == respSize {
				err = nil
			} else {
				err = rerr
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil || n != respSize {
		t.Errorf("read %d of %d response bytes: %v", n, respSize, err)
	}
}

// A connection that lingers after its response (its client still
// sending, or not closing) holds up a shutdown only until the shutdown
// stops waiting, which closes it.
func TestH1ShutdownEndsLingeringConnection(t *testing.T) {
	m := New(Options{})
	m.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "refused") // never reads the body
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			m.serveHTTPConn(&downConn{Conn: c, info: &connInfo{listener: "test"}})
		}
	}()
	x := dialRaw(t, ln.Addr().String())
	// More body than the server drains to keep the connection.
	go io.WriteString(x.conn, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n"+strings.Repeat("b", 2*maxDrain))
	if _, body := x.read("POST"); body != "refused" {
		t.Fatalf("body %q", body)
	}
	if !x.closed() { // the server's half-close: it lingers now
		t.Fatal("the server did not end the connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = m.Shutdown(ctx)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took >= lingerTimeout {
		t.Errorf("Shutdown: %v after %v; want it to wait for the lingering connection until its deadline, and no longer", err, took)
	}
}
