package app_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestForwardingSemantics checks what the sidecars' forwarding passes on
// and what it keeps to one hop, through client and server sidecars over
// HTTP/1.1: informational responses, trailers, streamed responses flushed
// as they come, hop-by-hop and forwarding headers.
func TestForwardingSemantics(t *testing.T) {
	events := make(chan struct{})
	app := http.NewServeMux()
	app.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	app.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "c0ffee")
	})
	app.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		// The second event is sent only once the client has the first:
		// a proxy that buffers the stream never delivers either.
		select {
		case <-events:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	app.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		w.Header().Set("Connection", "X-Hop-Secret")
		w.Header().Set("X-Hop-Secret", "internal")
		w.Header().Set("X-End-To-End", "kept")
		w.Header().Set("X-Seen-Forwarded-Proto", strings.Join(r.Header.Values("X-Forwarded-Proto"), ";"))
		_, _ = io.WriteString(w, strings.Join(names, ","))
	})
	m := startMesh(t, app)
	c := m.client.HTTPClient(t)
	base := "http://httpbin:8000"

	t.Run("1xx relayed", func(t *testing.T) {
		var got []int
		var link string
		ctx := httptrace.WithClientTrace(ctxT(t), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, code)
			link = h.Get("Link")
			return nil
		}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/early-hints", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(got) != 1 || got[0] != http.StatusEarlyHints || link != "</style.css>; rel=preload" {
			t.Errorf("1xx seen %v with Link %q; want [103] with the app's Link", got, link)
		}
		if resp.StatusCode != 200 || string(body) != "final" || resp.Header.Get("Link") != "" {
			t.Errorf("final response %d %q, Link %q; want 200 \"final\" without the 103's Link", resp.StatusCode, body, resp.Header.Get("Link"))
		}
	})

	t.Run("trailers relayed", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"/trailers", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "body" || resp.Trailer.Get("X-Checksum") != "c0ffee" {
			t.Errorf("body %q, trailers %v; want \"body\" and X-Checksum: c0ffee", body, resp.Trailer)
		}
	})

	t.Run("event stream flushed per event", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"/events", nil)
		type first struct {
			resp *http.Response
			br   *bufio.Reader
			line string
			err  error
		}
		firstc := make(chan first, 1)
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				firstc <- first{err: err}
				return
			}
			br := bufio.NewReader(resp.Body)
			l, err := br.ReadString('\n')
			firstc <- first{resp, br, l, err}
		}()
		var f first
		select {
		case f = <-firstc:
			if f.err != nil {
				t.Fatal(f.err)
			}
			defer f.resp.Body.Close()
			if f.line != "data: one\n" {
				t.Fatalf("first event line %q", f.line)
			}
		case <-time.After(5 * time.Second):
			close(events)
			t.Fatal("the response and its first event did not arrive while the stream was open: the sidecars buffered them")
		}
		br := f.br
		close(events)
		rest, _ := io.ReadAll(br)
		if string(rest) != "\ndata: two\n\n" {
			t.Errorf("rest of the stream %q", rest)
		}
	})

	t.Run("hop-by-hop and forwarding headers stay on their hop", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"/headers", nil)
		req.Header.Set("Connection", "X-Client-Hop")
		req.Header.Set("X-Client-Hop", "1")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("Forwarded", "for=203.0.113.9")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
		req.Header.Set("X-Custom", "passed")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen := map[string]bool{}
		for n := range strings.SplitSeq(string(body), ",") {
			seen[n] = true
		}
		for _, n := range []string{"X-Client-Hop", "X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "Keep-Alive", "Proxy-Authorization"} {
			if seen[n] {
				t.Errorf("the app got %s; headers %s", n, body)
			}
		}
		// The client's claim of https is dropped; the mesh says what
		// the hop it received the request on was.
		if got := resp.Header.Get("X-Seen-Forwarded-Proto"); got != "http" {
			t.Errorf("the app got X-Forwarded-Proto %q, want \"http\"", got)
		}
		if !seen["X-Custom"] || !seen["X-Request-Id"] {
			t.Errorf("the app did not get X-Custom and X-Request-Id; headers %s", body)
		}
		if resp.Header.Get("X-Hop-Secret") != "" || resp.Header.Get("X-End-To-End") != "kept" {
			t.Errorf("response headers %v: want X-End-To-End and no X-Hop-Secret", resp.Header)
		}
	})
}

// rawApp serves connections with handle, one goroutine each, until the
// test ends; handle gets the connection and the request line and headers
// of its first request, already read.
func rawApp(t *testing.T, handle func(c net.Conn, br *bufio.Reader, path string)) string {
	t.Helper()
	return serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				return
			}
			handle(c, br, f[1])
		}
	})
}

// dialInbound opens a raw connection to the mesh's inbound listener,
// with a 10 s deadline, closed when the test ends.
func dialInbound(t *testing.T, m *mesh) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", m.inbound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// An app that answers before reading a request's body: the client then
// sends the rest of the body and its next request on the same
// connection, which the sidecar must read as such (the body's remainder
// goes nowhere else, and nothing reads the connection twice).
func TestEarlyResponseThenNextRequest(t *testing.T) {
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		if path == "/early" {
			_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nearly")
			_, _ = io.Copy(io.Discard, br) // reads the body it did not wait for, until the sidecar closes
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(path)+3)+"\r\n\r\nok:"+path)
	})
	conn := dialInbound(t, startMeshTo(t, app))
	br := bufio.NewReader(conn)
	read := func(what string) (int, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: body: %v", what, err)
		}
		return resp.StatusCode, string(b)
	}
	_, _ = io.WriteString(conn, "POST /early HTTP/1.1\r\nHost: httpbin\r\nTransfer-Encoding: chunked\r\n\r\n")
	if code, body := read("early answer"); code != 401 || body != "early" {
		t.Fatalf("early answer %d %q", code, body)
	}
	_, _ = io.WriteString(conn, "5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	if code, body := read("second request"); code != 200 || body != "ok:/second" {
		t.Fatalf("second request on the connection: %d %q", code, body)
	}
}

// A client that closes an upgraded connection ends it at the app too.
func TestUpgradeClosedByClient(t *testing.T) {
	appSaw := make(chan string, 1)
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		b, _ := io.ReadAll(br) // until the client's close reaches the app
		appSaw <- string(b)
		_ = c.Close()
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_, _ = io.WriteString(conn, "GET /up HTTP/1.1\r\nHost: httpbin\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nping")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	select {
	case got := <-appSaw:
		if got != "ping" {
			t.Errorf("the app read %q, want the bytes sent with the upgrade request", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the app's connection stayed open after the client closed the upgraded connection")
	}
}

// An app that answers 101 to a request that asked for no upgrade must not
// turn the client's connection into a raw tunnel to it (RFC 9110 section
// 15.2.2: a server must not switch to a protocol the client did not ask
// for). The client's next request on the connection must be served by the
// sidecar, not handed raw to the app.
func TestUnsolicitedSwitchingProtocols(t *testing.T) {
	rawSeen := make(chan string, 4)
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		if path == "/switch" {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
			line, _ := br.ReadString('\n') // what comes next on the "tunnel"
			rawSeen <- line
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	conn := dialInbound(t, startMeshTo(t, app))
	br := bufio.NewReader(conn)
	_, _ = io.WriteString(conn, "GET /switch HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("client that asked for no upgrade got 101 %v", resp.Header)
		_, _ = io.WriteString(conn, "GET /bypass HTTP/1.1\r\nHost: httpbin\r\n\r\n")
		select {
		case l := <-rawSeen:
			t.Errorf("the client's next request reached the app raw through the tunnel, bypassing the sidecar: %q", strings.TrimSpace(l))
		case <-time.After(2 * time.Second):
		}
		return
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Weft-Response-Flags") != "UPE" ||
		!strings.Contains(string(b), "upstream switched protocols without an Upgrade request") {
		t.Errorf("got %d %q flags %q, want 502 UPE saying the upstream switched protocols unasked",
			resp.StatusCode, b, resp.Header.Get("X-Weft-Response-Flags"))
	}
	// The sidecar closes its connection to the app rather than keep it.
	select {
	case l := <-rawSeen:
		if l != "" {
			t.Errorf("the app read %q after its 101, want the sidecar to close the connection", l)
		}
	case <-time.After(5 * time.Second):
		t.Error("the sidecar kept its connection to the app open after an unsolicited 101")
	}
	// The client's connection goes on carrying requests through the sidecar.
	_, _ = io.WriteString(conn, "GET /after HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("next request on the connection: %v", err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("next request on the connection: %d %q, want 200 ok", resp.StatusCode, b)
	}
}

// A field that the upstream's Connection header names is hop-by-hop
// (RFC 9110 section 7.6.1) even when the same header also says "close":
// the sidecar must not pass it on to the client.
func TestResponseConnectionCloseNamesHopByHopField(t *testing.T) {
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close, X-Hop-Secret\r\nX-Hop-Secret: internal\r\nContent-Length: 2\r\n\r\nok")
		_ = c.Close()
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.Header.Get("X-Hop-Secret"); v != "" {
		t.Errorf("client got X-Hop-Secret: %q, which the upstream's Connection header named (hop-by-hop); headers %v", v, resp.Header)
	}
}

// The same for a request: a field that the client's Connection header
// names beside "close" does not reach the app.
func TestRequestConnectionCloseNamesHopByHopField(t *testing.T) {
	heads := make(chan string, 1)
	app := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if l == "\r\n" {
				break
			}
			head.WriteString(l)
		}
		select {
		case heads <- head.String():
		default:
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: httpbin\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\n\r\n")
	select {
	case h := <-heads:
		if strings.Contains(strings.ToLower(h), "x-client-hop") {
			t.Errorf("the app got X-Client-Hop, which the client's Connection header named (hop-by-hop); head:\n%s", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the app")
	}
}

// A request target cannot contain a space (RFC 9112 section 3.2), but an
// HTTP/2 :path query can: the sidecar answers such a request 400 instead
// of writing a request line with extra words to an HTTP/1.1 app.
func TestSpaceInH2QueryRefused(t *testing.T) {
	lines := make(chan string, 1)
	app := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		lines <- line
		for {
			if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "httpbin"}, {":path", "/public?x /admin HTTP/1.1"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	status := ""
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	for status == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 1 {
			if _, err := dec.Write(h.HeaderBlockFragment()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if status != "400" {
		t.Errorf("status %s, want 400", status)
	}
	select {
	case l := <-lines:
		t.Errorf("the app got the request line %q", l)
	default:
	}
}
