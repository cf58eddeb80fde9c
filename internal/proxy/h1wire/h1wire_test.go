package h1wire

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http/httpguts"
)

// Requests and responses net/http reads, with the cases that decide
// framing (smuggling) and the fields the proxy reads.
var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: a:80\r\nUser-Agent: t\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\nnext",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nok",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
	"GET http://example.com:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //double HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2Fb/c%20d HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a|b\"{c} HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x? HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x?a?b#frag HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: a\r\ncontent-type: x\r\nx-lower-case: v\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\nX: bare-lf\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX:  spaced  \t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: ctl\x01\r\n\r\n",
	"GET / HTTP/1.1\r\n: empty\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
	"GET /\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",
	"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
	"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun\u212aed\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Hop\r\nX-Hop: v\r\n\r\n",
}

var responseSeeds = []struct{ method, in string }{
	{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokNEXT"},
	{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n2\r\nok\r\n0\r\nGrpc-Status: 0\r\n\r\nNEXT"},
	{"GET", "HTTP/1.1 200 OK\r\n\r\nuntil close"},
	{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nNEXT"},
	{"HEAD", "HTTP/1.1 200 OK\r\n\r\nNEXT"},
	{"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n"},
	{"GET", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nNEXT"},
	{"GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nNEXT"},
	{"GET", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"},
	{"GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes"},
	{"GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"},
	{"GET", "HTTP/1.1  404  Not Found\r\n\r\n"},
	{"GET", "HTTP/1.1 20 OK\r\n\r\n"},
	{"GET", "HTTP/1.1 abc OK\r\n\r\n"},
	{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nok"},
	{"GET", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "ICY 200 OK\r\n\r\n"},
	{"GET", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"},
	{"GET", "HTTP/0.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\nNEXT"},
	{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chun\u212aed\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	{"GET", "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.1 000 Zero\r\n\r\n"},
	{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\nok\r\n0\r\n\r\nNEXT"},
	{"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nokNEXT"},
	{"GET", "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: v\r\nContent-Length: 2\r\n\r\nok"},
	{"GET", "HTTP/1.1 200 OK\r\nConnection: X-A\r\nConnection: Close ,X-B\r\nContent-Length: 2\r\n\r\nok"},
}

// readGo and readOurs read every message they can from in, bodies and
// trailers included, and describe each, so two readers can be compared
// message by message and on where they stop.
type message struct {
	Err                                string
	Method, RequestURI, Host, Proto    string
	URL                                string
	URLParts                           [9]string
	Status                             string
	StatusCode, ProtoMajor, ProtoMinor int
	Header, Trailer                    http.Header
	ContentLength                      int64
	TransferEncoding                   []string
	Close                              bool
	Body                               string
	BodyErr                            bool
}

func describeRequest(r *http.Request, err error) message {
	if err != nil {
		return message{Err: err.Error()}
	}
	u := r.URL
	m := message{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Proto: r.Proto, URL: u.String(),
		URLParts:   [9]string{u.Scheme, u.Opaque, u.User.String(), u.Host, u.Path, u.RawPath, u.RawQuery, u.Fragment, boolString(u.ForceQuery)},
		ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor, Header: r.Header, ContentLength: r.ContentLength,
		TransferEncoding: r.TransferEncoding, Close: r.Close}
	b, berr := io.ReadAll(r.Body)
	m.Body, m.BodyErr, m.Trailer = string(b), berr != nil, r.Trailer
	return m
}

func describeResponse(r *http.Response, err error) message {
	if err != nil {
		return message{Err: err.Error()}
	}
	m := message{Status: r.Status, StatusCode: r.StatusCode, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Header: r.Header, ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Close: r.Close}
	if r.StatusCode != http.StatusSwitchingProtocols {
		b, berr := io.ReadAll(r.Body)
		m.Body, m.BodyErr = string(b), berr != nil
	}
	m.Trailer = r.Trailer
	return m
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// stricter reports inputs this package refuses on purpose where net/http
// reads them: obsolete line folding, whitespace in a field name, a bare
// CR at the end of a field value.
func stricter(in string) bool {
	return strings.Contains(in, "\n ") || strings.Contains(in, "\n\t") || strings.Contains(in, "\r\r") ||
		slices.ContainsFunc(strings.Split(in, "\n"), func(l string) bool {
			k, _, ok := strings.Cut(l, ":")
			return ok && strings.ContainsAny(k, " \t")
		})
}

// headFields reports the field names in the head of a message that
// net/http read, canonical.
func headFields(in string) map[string]bool {
	fields := map[string]bool{}
	lines := strings.Split(in, "\n")
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			break
		}
		if k, _, ok := strings.Cut(l, ":"); ok {
			fields[textproto.CanonicalMIMEHeaderKey(k)] = true
		}
	}
	return fields
}

// faultyFraming reports a message with Transfer-Encoding and either
// Content-Length or an HTTP/1.0 version (RFC 9112 section 6.1): net/http
// reads it by one of the two, this package refuses such a request and
// reads such a response as net/http does but ends its connection (Close).
func faultyFraming(in string, major, minor int) bool {
	f := headFields(in)
	http11 := major > 1 || major == 1 && minor >= 1 || major == 0 && minor == 0
	return f["Transfer-Encoding"] && (f["Content-Length"] || !http11)
}

// compare checks that where net/http reads a message, so does this
// package, with the same fields, body, trailers and leftover bytes; and
// that it refuses whatever net/http refuses. stricter says that this
// package may refuse the message where net/http reads it.
func compare(t *testing.T, in string, goMsg, ourMsg message, goRest, ourRest string, stricter bool) {
	t.Helper()
	switch {
	case goMsg.Err != "" && ourMsg.Err == "":
		t.Fatalf("input %q: net/http refuses it (%s), this package reads %+v", in, goMsg.Err, ourMsg)
	case goMsg.Err == "" && ourMsg.Err != "":
		if !stricter {
			t.Fatalf("input %q: net/http reads %+v, this package refuses it: %s", in, goMsg, ourMsg.Err)
		}
		return
	case goMsg.Err != "":
		return
	}
	norm := func(h http.Header) http.Header {
		if len(h) == 0 {
			return nil
		}
		return h
	}
	goMsg.Header, ourMsg.Header = norm(goMsg.Header), norm(ourMsg.Header)
	goMsg.Trailer, ourMsg.Trailer = norm(goMsg.Trailer), norm(ourMsg.Trailer)
	if !reflect.DeepEqual(goMsg, ourMsg) {
		t.Fatalf("input %q:\nnet/http     %+v\nthis package %+v", in, goMsg, ourMsg)
	}
	if goRest != ourRest && !goMsg.BodyErr {
		t.Fatalf("input %q: net/http leaves %q for the next message, this package %q", in, goRest, ourRest)
	}
}

func rest(br *bufio.Reader) string {
	b, _ := io.ReadAll(br)
	return string(b)
}

func checkRequest(t *testing.T, in string) {
	gbr := bufio.NewReader(strings.NewReader(in))
	gr, gerr := http.ReadRequest(gbr)
	goMsg := describeRequest(gr, gerr)
	obr := bufio.NewReader(strings.NewReader(in))
	var hr Reader
	or, oerr := hr.ReadRequest(obr, new(http.Request))
	ourMsg := describeRequest(or, oerr)
	compare(t, in, goMsg, ourMsg, rest(gbr), rest(obr),
		stricter(in) || faultyFraming(in, goMsg.ProtoMajor, goMsg.ProtoMinor))
}

func checkResponse(t *testing.T, method, in string) {
	req := &http.Request{Method: method}
	gbr := bufio.NewReader(strings.NewReader(in))
	gr, gerr := http.ReadResponse(gbr, req)
	goMsg := describeResponse(gr, gerr)
	obr := bufio.NewReader(strings.NewReader(in))
	var hr Reader
	or, oerr := hr.ReadResponse(obr, req)
	ourMsg := describeResponse(or, oerr)
	if goMsg.Err == "" && ourMsg.Err == "" {
		// Where this package reads a response otherwise than net/http,
		// on purpose: a "Connection: close" that names other fields
		// keeps them, and faulty framing ends the connection.
		if ourConn := ourMsg.Header["Connection"]; ourConn != nil && goMsg.Header["Connection"] == nil {
			if !goMsg.Close || httpguts.HeaderValuesContainsToken(ourConn, "close") {
				t.Fatalf("input %q: net/http drops the Connection header, this package keeps %q", in, ourConn)
			}
			delete(ourMsg.Header, "Connection")
		}
		if faultyFraming(in, goMsg.ProtoMajor, goMsg.ProtoMinor) {
			goMsg.Close = true
		}
	}
	compare(t, in, goMsg, ourMsg, rest(gbr), rest(obr), stricter(in) || goMsg.StatusCode < 100)
}

func TestReadRequestAsNetHTTP(t *testing.T) {
	for _, in := range requestSeeds {
		checkRequest(t, in)
	}
}

func TestReadResponseAsNetHTTP(t *testing.T) {
	for _, s := range responseSeeds {
		checkResponse(t, s.method, s.in)
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, in := range requestSeeds {
		f.Add(in)
	}
	f.Fuzz(checkRequest)
}

func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(s.method == "HEAD", s.in)
	}
	f.Fuzz(func(t *testing.T, head bool, in string) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		checkResponse(t, method, in)
	})
}

// The request keeps the template's context; a head longer than the
// reader's buffer is read whole.
func TestReadRequestTemplateAndLongHead(t *testing.T) {
	type key struct{}
	tmpl := new(http.Request).WithContext(context.WithValue(context.Background(), key{}, "conn"))
	long := strings.Repeat("v", 10000)
	in := "GET /x HTTP/1.1\r\nHost: a\r\nX-Long: " + long + "\r\n\r\n"
	var hr Reader
	r, err := hr.ReadRequest(bufio.NewReaderSize(strings.NewReader(in), 16), tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if r.Context().Value(key{}) != "conn" || r.Header.Get("X-Long") != long || r.URL.Path != "/x" {
		t.Errorf("context value %v, X-Long of %d bytes, path %q", r.Context().Value(key{}), len(r.Header.Get("X-Long")), r.URL.Path)
	}
}

// Unsupported transfer codings are refused with 501, as net/http's server
// does.
func TestReadRequestTransferEncodingStatus(t *testing.T) {
	var hr Reader
	_, err := hr.ReadRequest(bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")), new(http.Request))
	se, ok := err.(*StatusError)
	if !ok || se.Status != http.StatusNotImplemented {
		t.Fatalf("error %v, want a 501 StatusError", err)
	}
}

func BenchmarkReadRequest(b *testing.B) {
	in := "POST /echo?x=1 HTTP/1.1\r\nHost: fortio.default.svc.cluster.local:8080\r\nUser-Agent: fortio.org/fortio-1.68.2\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\nX-Request-Id: 6f1c2b7e-2f4a-4c9e-9a53-0e0d4a1b9c77\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"
	sr := strings.NewReader(in)
	br := bufio.NewReader(sr)
	tmpl := new(http.Request)
	for _, name := range []string{"net-http", "h1wire"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var hr Reader
			for b.Loop() {
				sr.Reset(in)
				br.Reset(sr)
				var err error
				if name == "net-http" {
					_, err = http.ReadRequest(br)
				} else {
					_, err = hr.ReadRequest(br, tmpl)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A chunked body's trailers must end within the reader's buffer, as
// net/http requires.
func TestTrailersBounded(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n"
	var hr Reader
	r, err := hr.ReadRequest(bufio.NewReaderSize(strings.NewReader(in), 4<<10), new(http.Request))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.Body); err != errLongTrailer {
		t.Fatalf("reading the body: %v, want %v", err, errLongTrailer)
	}
}

// A body read on another goroutine and closed by this one: Close waits for
// the read, later reads fail, and nothing is read past the body.
func TestBodyCloseWaitsForRead(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var hr Reader
	r, err := hr.ReadRequest(br, new(http.Request))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r.Body)
		done <- string(b)
	}()
	if got := <-done; got != "body" {
		t.Fatalf("body %q", got)
	}
	if !r.Body.(*body).Complete() {
		t.Error("a body read to its end is not complete")
	}
	r.Body.Close()
	if n, err := r.Body.Read(make([]byte, 8)); n != 0 || err != http.ErrBodyReadAfterClose {
		t.Errorf("read after close: %d, %v", n, err)
	}
	next, err := hr.ReadRequest(br, new(http.Request))
	if err != nil || next.URL.Path != "/next" {
		t.Fatalf("next request: %v %v", next, err)
	}
}

// RFC 9112 section 6.1: a request with Transfer-Encoding and
// Content-Length, or with Transfer-Encoding in HTTP/1.0, may be an
// attempt to smuggle a request past a hop that frames it the other way;
// it is refused with 400 (an error that is no StatusError).
func TestReadRequestFaultyFraming(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"Transfer-Encoding and Content-Length",
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"request has both Content-Length and Transfer-Encoding"},
		{"Content-Length and an unsupported Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello",
			"request has both Content-Length and Transfer-Encoding"},
		{"Transfer-Encoding in HTTP/1.0",
			"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"HTTP/1.0 request has Transfer-Encoding"},
		{"Transfer-Encoding and Content-Length in HTTP/1.0",
			"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
			"HTTP/1.0 request has Transfer-Encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hr Reader
			_, err := hr.ReadRequest(bufio.NewReader(strings.NewReader(tc.in)), new(http.Request))
			if err == nil {
				t.Fatal("read, want an error")
			}
			if _, ok := err.(*StatusError); ok || err.Error() != tc.want {
				t.Errorf("error %#v, want %q (400)", err, tc.want)
			}
		})
	}
}

// A response with faulty framing (RFC 9112 section 6.1) is read as
// net/http reads it, by Transfer-Encoding in HTTP/1.1 and by
// Content-Length in HTTP/1.0, and ends its connection.
func TestReadResponseFaultyFramingCloses(t *testing.T) {
	for _, tc := range []struct {
		name, in, body, next string
	}{
		{"Transfer-Encoding and Content-Length",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\nok\r\n0\r\n\r\nNEXT", "ok", "NEXT"},
		{"Transfer-Encoding in HTTP/1.0",
			"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nokNEXT", "ok", "NEXT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			var hr Reader
			resp, err := hr.ReadResponse(br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != tc.body || !resp.Close || rest(br) != tc.next {
				t.Errorf("body %q (%v), close %v; want %q, a close and %q left", b, err, resp.Close, tc.body, tc.next)
			}
		})
	}
}

// A status code is three digits from 100 (RFC 9110 section 15): one below
// is a malformed response, not an informational one.
func TestReadResponseStatusBelow100(t *testing.T) {
	for _, code := range []string{"099", "000", "+99", "-10"} {
		t.Run(code, func(t *testing.T) {
			var hr Reader
			in := "HTTP/1.1 " + code + " Odd\r\nContent-Length: 0\r\n\r\n"
			if resp, err := hr.ReadResponse(bufio.NewReader(strings.NewReader(in)), nil); err == nil {
				t.Errorf("read status %d, want an error", resp.StatusCode)
			}
		})
	}
}

// A response's "close" connection option is taken out of its Connection
// header (Close says it), but the fields the header names stay named
// there, so a proxy still drops them as hop-by-hop (RFC 9110 section
// 7.6.1). A request's Connection header is left as it is.
func TestConnectionHeaderKeepsNamedFields(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		response   bool
		want       []string
	}{
		{"close alone", "Connection: close\r\n", true, nil},
		{"close and a field", "Connection: close, X-Hop\r\n", true, []string{"X-Hop"}},
		{"two headers", "Connection: X-A\r\nConnection: X-B ,CLOSE,\tX-C\r\n", true, []string{"X-A", "X-B, X-C"}},
		{"keep-alive and close", "Connection: keep-alive, close\r\n", true, []string{"keep-alive"}},
		{"no close", "Connection: X-Hop\r\n", true, []string{"X-Hop"}},
		{"request", "Connection: close, X-Hop\r\n", false, []string{"close, X-Hop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hr Reader
			var h http.Header
			var closes bool
			if tc.response {
				in := "HTTP/1.1 200 OK\r\n" + tc.head + "Content-Length: 0\r\n\r\n"
				resp, err := hr.ReadResponse(bufio.NewReader(strings.NewReader(in)), nil)
				if err != nil {
					t.Fatal(err)
				}
				h, closes = resp.Header, resp.Close
			} else {
				in := "GET / HTTP/1.1\r\nHost: a\r\n" + tc.head + "\r\n"
				req, err := hr.ReadRequest(bufio.NewReader(strings.NewReader(in)), new(http.Request))
				if err != nil {
					t.Fatal(err)
				}
				h, closes = req.Header, req.Close
			}
			if diff := cmp.Diff(tc.want, h["Connection"]); diff != "" {
				t.Errorf("Connection header (-want +got):\n%s", diff)
			}
			if wantClose := strings.Contains(strings.ToLower(tc.head), "close"); closes != wantClose {
				t.Errorf("Close %v, want %v", closes, wantClose)
			}
		})
	}
}
