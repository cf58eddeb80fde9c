// Package h1wire reads HTTP/1.x message heads into net/http's Request and
// Response, for the sidecar's HTTP/1.x server and upstream pool. It keeps
// net/http's rules (the same fields set, the same framing decisions, the
// same refusals; a fuzz test compares the two) with a fraction of the
// allocations: the head is copied into one string that every key, value
// and the request target point into, the Request or Response shares one
// allocation with its URL and body reader, and header values share one
// slice. It departs from net/http where net/http's leniency would hurt a
// proxy: obsolete line folding and whitespace inside a field name are
// refused (RFC 9112 section 5); a request with both Transfer-Encoding and
// Content-Length, or with Transfer-Encoding in HTTP/1.0, is refused, and
// such a response ends its connection (RFC 9112 section 6.1); a status
// code below 100 is refused; and a response's Connection header loses its
// "close" option but keeps the fields it names (RFC 9110 section 7.6.1).
package h1wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// Reader reads message heads from one connection. Its scratch buffer is
// reused from one message to the next; it is not safe for concurrent use.
type Reader struct {
	scratch []byte
}

// StatusError is a request refused with a status other than 400 Bad
// Request (501 for a transfer coding other than chunked).
type StatusError struct {
	Status int
	Msg    string
}

func (e *StatusError) Error() string { return e.Msg }

// readHead reads a start line and header block up to and including the
// empty line, and returns it as one string. Its size is bounded by the
// caller's reader (heads) or by readTrailer (trailers).
func (hr *Reader) readHead(br *bufio.Reader) (string, error) {
	b := hr.scratch[:0]
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		b = append(b, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			hr.scratch = b[:0]
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if isEmptyLine(b[lineStart:]) {
			break
		}
		lineStart = len(b)
	}
	if cap(b) <= 64<<10 {
		hr.scratch = b[:0] // kept for the next message; not a huge one
	}
	return string(b), nil
}

func isEmptyLine(l []byte) bool {
	return len(l) == 1 && l[0] == '\n' || len(l) == 2 && l[0] == '\r' && l[1] == '\n'
}

// nextLine cuts the first line off s, without its CRLF or LF.
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseHeader parses header lines up to the empty line into a new map.
func parseHeader(s string) (http.Header, error) {
	n := strings.Count(s, "\n")
	h := make(http.Header, n)
	vals := make([]string, n)
	for {
		var line string
		line, s = nextLine(s)
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("malformed header: obsolete line folding: %q", clip(line))
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("malformed header: missing colon: %q", clip(line))
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("malformed header line: %q", clip(line))
		}
		v = trimSpaceTab(v)
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, fmt.Errorf("malformed header line: %q", clip(line))
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(k)
		if vv, ok := h[key]; ok {
			h[key] = append(vv, v)
			continue
		}
		vv := vals[:1:1]
		vals = vals[1:]
		vv[0] = v
		h[key] = vv
	}
}

// trimSpaceTab trims spaces and tabs from both ends of a field value.
func trimSpaceTab(v string) string {
	i, j := 0, len(v)
	for i < j && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	return v[i:j]
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// request is a Request with its URL and body reader, allocated together.
type request struct {
	req  http.Request
	url  url.URL
	body body
}

// ReadRequest reads a request head from br; its body, if any, reads from
// br. The request starts as a copy of tmpl (its context and any fields
// the caller sets for every request of the connection).
func (hr *Reader) ReadRequest(br *bufio.Reader, tmpl *http.Request) (*http.Request, error) {
	head, err := hr.readHead(br)
	if err != nil {
		return nil, err
	}
	line, rest := nextLine(head)
	method, after, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(after, " ")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("malformed HTTP request %q", clip(line))
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return nil, fmt.Errorf("malformed HTTP version %q", clip(proto))
	}
	if !httpguts.ValidHeaderFieldName(method) { // a token, as a field name is
		return nil, fmt.Errorf("invalid method %q", clip(method))
	}
	rq := &request{req: *tmpl}
	r := &rq.req
	r.Method, r.RequestURI, r.Proto, r.ProtoMajor, r.ProtoMinor = method, target, proto, major, minor
	if err := parseTarget(&rq.url, method, target); err != nil {
		return nil, err
	}
	r.URL = &rq.url
	if r.Header, err = parseHeader(rest); err != nil {
		return nil, err
	}
	hosts := r.Header["Host"]
	if len(hosts) > 1 {
		return nil, errors.New("too many Host headers")
	}
	r.Host = r.URL.Host
	if r.Host == "" && len(hosts) == 1 {
		r.Host = hosts[0]
	}
	delete(r.Header, "Host")
	fixPragmaCacheControl(r.Header)
	r.Close = shouldClose(major, minor, r.Header, false)
	f, err := readFraming(r.Header, major, minor, false, 200, method)
	if err != nil {
		return nil, err
	}
	r.ContentLength, r.Close, r.Trailer = f.length, r.Close || f.close, f.trailer
	if f.chunked {
		r.TransferEncoding = chunkedTE()
	}
	r.Body = rq.body.start(br, f, &r.Trailer)
	return r, nil
}

// parseTarget parses a request target as net/http's ReadRequest does:
// origin form (/path?query) by hand when it is plain, anything else
// (absolute form, CONNECT's authority, escapes) by url.ParseRequestURI.
func parseTarget(u *url.URL, method, target string) error {
	if plainOriginForm(target) {
		path, query, hasQuery := strings.Cut(target, "?")
		*u = url.URL{Path: path, RawQuery: query}
		if hasQuery && query == "" {
			u.ForceQuery = true
		}
		return nil
	}
	raw := target
	authority := method == http.MethodConnect && !strings.HasPrefix(raw, "/")
	if authority {
		raw = "http://" + raw
	}
	pu, err := url.ParseRequestURI(raw)
	if err != nil {
		return err
	}
	if authority {
		pu.Scheme = ""
	}
	*u = *pu
	return nil
}

// plainOriginForm reports whether target is "/" followed by bytes that
// url.ParseRequestURI keeps as they are: no escapes, nothing that would
// make the URL's RawPath differ from its Path, at most one '?'.
func plainOriginForm(t string) bool {
	if len(t) == 0 || t[0] != '/' || strings.HasPrefix(t, "//") {
		return false
	}
	inQuery := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == '$' || c == '&' ||
			c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@':
		case c == '?' && !inQuery:
			inQuery = true
		case inQuery && c == '%':
			// A query is kept raw; escapes in it are the app's.
		default:
			return false
		}
	}
	return true
}

// response is a Response with its body reader, allocated together.
// MalformedError is a response head that breaks HTTP/1.x's rules: the
// peer, not the connection, is at fault.
type MalformedError struct{ Err error }

func (e *MalformedError) Error() string { return e.Err.Error() }
func (e *MalformedError) Unwrap() error { return e.Err }

type response struct {
	resp http.Response
	body body
}

// ReadResponse reads a response head to req from br; its body, if any,
// reads from br. A head that was read but breaks HTTP/1.x's rules fails
// with a *MalformedError; a read that fails returns its own error.
func (hr *Reader) ReadResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	head, err := hr.readHead(br)
	if err != nil {
		return nil, err
	}
	resp, err := hr.parseResponse(br, head, req)
	if err != nil {
		return nil, &MalformedError{err}
	}
	return resp, nil
}

// parseResponse parses a response head read from br; its body reads from
// br.
func (hr *Reader) parseResponse(br *bufio.Reader, head string, req *http.Request) (*http.Response, error) {
	var err error
	line, rest := nextLine(head)
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return nil, fmt.Errorf("malformed HTTP response %q", clip(line))
	}
	status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(status, " ")
	if len(code) != 3 {
		return nil, fmt.Errorf("malformed HTTP status code %q", clip(code))
	}
	// Three digits, the first of them 1 to 9 (RFC 9110 section 15): net/http
	// reads "099", which a caller would then take for an informational
	// response, or hand to a ResponseWriter that panics on it.
	statusCode, err := strconv.Atoi(code)
	if err != nil || statusCode < 100 {
		return nil, fmt.Errorf("malformed HTTP status code %q", clip(code))
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return nil, fmt.Errorf("malformed HTTP version %q", clip(proto))
	}
	rp := &response{}
	resp := &rp.resp
	resp.Status, resp.StatusCode, resp.Proto, resp.ProtoMajor, resp.ProtoMinor, resp.Request = status, statusCode, proto, major, minor, req
	if resp.Header, err = parseHeader(rest); err != nil {
		return nil, err
	}
	fixPragmaCacheControl(resp.Header)
	method := http.MethodGet
	if req != nil && req.Method != "" {
		method = req.Method
	}
	resp.Close = shouldClose(major, minor, resp.Header, true)
	f, err := readFraming(resp.Header, major, minor, true, statusCode, method)
	if err != nil {
		return nil, err
	}
	resp.ContentLength, resp.Close, resp.Trailer = f.length, resp.Close || f.close || f.faulty, f.trailer
	if f.chunked {
		resp.TransferEncoding = chunkedTE()
	}
	resp.Body = rp.body.start(br, f, &resp.Trailer)
	return resp, nil
}

func chunkedTE() []string { return []string{"chunked"} }

// framing is how a message's body is delimited.
type framing struct {
	length  int64 // Content-Length; -1 chunked or until close
	chunked bool
	close   bool // the body ends at the connection's close
	// faulty: the framing is suspect (RFC 9112 section 6.1), so the
	// connection carries no message after this one.
	faulty  bool
	body    int // bodyNone, bodyLength, bodyChunked, bodyUntilClose
	trailer http.Header
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// readFraming applies RFC 9112's body length rules as net/http does:
// one Transfer-Encoding, "chunked", on HTTP/1.1 only (it wins over and
// removes Content-Length); Content-Length values that agree; no body for
// HEAD responses, 1xx, 204 and 304; a response with neither reads until
// the connection closes, a request with neither has none. Unlike
// net/http, it refuses a request with Transfer-Encoding and
// Content-Length, or with Transfer-Encoding in HTTP/1.0, and marks such a
// response faulty.
func readFraming(h http.Header, major, minor int, isResponse bool, status int, method string) (framing, error) {
	var f framing
	if major == 0 && minor == 0 {
		major, minor = 1, 1 // as net/http: an unversioned message is framed as HTTP/1.1
	}
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		http11 := major > 1 || major == 1 && minor >= 1
		_, hasCL := h["Content-Length"]
		// RFC 9112 section 6.1: Transfer-Encoding with Content-Length, or
		// in an HTTP/1.0 message, may be a smuggling attempt, and either
		// way the connection must end after the message. A request is
		// refused, as Envoy does (net/http reads the first by
		// Transfer-Encoding and the second by Content-Length, and keeps
		// the connection); a response is read as net/http reads it, and
		// ends its connection (faulty).
		switch {
		case !isResponse && !http11:
			return f, fmt.Errorf("HTTP/%d.%d request has Transfer-Encoding", major, minor)
		case !isResponse && hasCL:
			return f, errTEAndCL
		case hasCL || !http11:
			f.faulty = true
		}
		if http11 {
			if len(te) != 1 {
				return f, &StatusError{http.StatusNotImplemented, fmt.Sprintf("too many transfer encodings: %q", te)}
			}
			if !ASCIIEqualFold(te[0], "chunked") {
				return f, &StatusError{http.StatusNotImplemented, fmt.Sprintf("unsupported transfer encoding: %q", te[0])}
			}
			f.chunked = true
		}
	}
	cls := h["Content-Length"]
	if len(cls) > 1 {
		first := textproto.TrimString(cls[0])
		for _, v := range cls[1:] {
			if textproto.TrimString(v) != first {
				return f, fmt.Errorf("http: message cannot contain multiple Content-Length headers; got %q", cls)
			}
		}
		cls = []string{first}
		h["Content-Length"] = cls
	}
	n := int64(-1)
	if len(cls) > 0 {
		var err error
		if n, err = parseContentLength(cls[0]); err != nil {
			return f, err
		}
	}
	head := isResponse && method == http.MethodHead
	bodyAllowed := !(status/100 == 1 || status == 204 || status == 304)
	var length int64 // the body's length; -1: chunked or until close
	switch {
	case head || !bodyAllowed:
		length = 0
	case f.chunked:
		delete(h, "Content-Length")
		length = -1
	case n >= 0:
		length = n
	case isResponse:
		length = -1
	}
	f.length = length
	if head {
		f.length = n // what a GET would have had; -1 when not said
	}
	if isResponse && length == -1 && !f.chunked && bodyAllowed {
		f.close = true
	}
	switch {
	case f.chunked && !(isResponse && (head || !bodyAllowed)):
		f.body = bodyChunked
	case f.chunked, length == 0:
		f.body = bodyNone
	case length > 0:
		f.body = bodyLength
	case f.close:
		f.body = bodyUntilClose
	}
	var err error
	if f.trailer, err = fixTrailer(h, f.chunked); err != nil {
		return f, err
	}
	return f, nil
}

// ASCIIEqualFold compares ASCII case-insensitively; unlike
// strings.EqualFold it does not fold Unicode ("chun\u212aed" is not
// "chunked"), as net/http does not. Protocol tokens are compared with it.
func ASCIIEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseContentLength parses a Content-Length value: digits only.
func parseContentLength(v string) (int64, error) {
	v = textproto.TrimString(v)
	if v == "" {
		return -1, errors.New("invalid empty Content-Length")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1, fmt.Errorf("bad Content-Length %q", v)
		}
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return -1, fmt.Errorf("bad Content-Length %q", v)
	}
	return int64(n), nil
}

// fixTrailer takes the announced trailer keys out of the Trailer header
// (only chunked messages can carry trailers).
func fixTrailer(h http.Header, chunked bool) (http.Header, error) {
	vv, ok := h["Trailer"]
	if !ok {
		return nil, nil
	}
	if !chunked {
		return nil, nil
	}
	delete(h, "Trailer")
	t := make(http.Header)
	var err error
	for _, v := range vv {
		for key := range strings.SplitSeq(v, ",") {
			if key = textproto.TrimString(key); key == "" {
				continue
			}
			key = textproto.CanonicalMIMEHeaderKey(key)
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				if err == nil {
					err = fmt.Errorf("bad trailer key %q", key)
				}
			}
			t[key] = nil
		}
	}
	if err != nil {
		return nil, err
	}
	if len(t) == 0 {
		return nil, nil
	}
	return t, nil
}

// fixPragmaCacheControl: "Pragma: no-cache" without Cache-Control means
// "Cache-Control: no-cache" (RFC 9111 section 5.4), as net/http does.
func fixPragmaCacheControl(h http.Header) {
	if hp, ok := h["Pragma"]; ok && len(hp) > 0 && hp[0] == "no-cache" {
		if _, present := h["Cache-Control"]; !present {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
}

// shouldClose is net/http's: whether the connection ends after this
// message, from its version and Connection header. removeClose takes the
// "close" option out of the Connection header (responses: the caller acts
// on Close instead). net/http deletes the whole header there; the other
// options are kept here, since the fields they name are hop-by-hop (RFC
// 9110 section 7.6.1) and a proxy must still find them named to drop them.
func shouldClose(major, minor int, h http.Header, removeClose bool) bool {
	if major < 1 {
		return true
	}
	conv := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conv, "close")
	if major == 1 && minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(conv, "keep-alive")
	}
	if hasClose && removeClose {
		dropCloseOption(h)
	}
	return hasClose
}

// dropCloseOption removes the "close" option from h's Connection header,
// and the header when it names nothing else ("Connection: close, X-A"
// becomes "Connection: X-A").
func dropCloseOption(h http.Header) {
	vv := h["Connection"]
	kept := vv[:0] // filtered in place: the slice is this header's alone
	for _, v := range vv {
		var opts []string
		for o := range strings.SplitSeq(v, ",") {
			if o = trimSpaceTab(o); o != "" && !ASCIIEqualFold(o, "close") {
				opts = append(opts, o)
			}
		}
		if len(opts) > 0 {
			kept = append(kept, strings.Join(opts, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = kept
}

// body reads a message body from the connection's reader: a known length,
// chunks (then trailers into *trailer), or everything until the close. It
// never reads past the body's end, so the next message on the connection
// stays in the reader. Reads and Close are serialized: a body may be read
// by another goroutine (an upstream body writer) while its request's
// handler returns, and Close waits for such a read to finish; reads after
// Close fail.
type body struct {
	mu      sync.Mutex
	br      *bufio.Reader
	kind    int
	remain  int64
	chunks  io.Reader
	trailer *http.Header
	err     error // sticky: EOF once complete
	closed  bool
	// done is set with err = EOF, after the last read of br: Complete
	// reads it without waiting for a read in progress.
	done atomic.Bool
}

func (b *body) start(br *bufio.Reader, f framing, trailer *http.Header) io.ReadCloser {
	if f.body == bodyNone {
		return http.NoBody
	}
	b.br, b.kind, b.remain, b.trailer = br, f.body, f.length, trailer
	if f.body == bodyChunked {
		b.chunks = httputil.NewChunkedReader(br)
	}
	return b
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	switch b.kind {
	case bodyLength:
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		n, err := b.br.Read(p)
		b.remain -= int64(n)
		if b.remain == 0 {
			b.setErr(io.EOF)
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			b.setErr(err)
		}
		return n, err
	case bodyChunked:
		n, err := b.chunks.Read(p)
		if err == io.EOF {
			if terr := b.readTrailer(); terr != nil {
				err = terr
			}
		}
		if err != nil {
			b.setErr(err)
		}
		return n, err
	default:
		n, err := b.br.Read(p)
		if err != nil {
			b.setErr(err)
		}
		return n, err
	}
}

// setErr makes err sticky; called with mu held.
func (b *body) setErr(err error) {
	b.err = err
	if err == io.EOF {
		b.done.Store(true)
	}
}

// readTrailer reads what follows the last chunk: an empty line, or
// trailer fields merged into the message's Trailer.
func (b *body) readTrailer() error {
	p, _ := b.br.Peek(2)
	if len(p) < 2 {
		return io.ErrUnexpectedEOF
	}
	if p[0] == '\r' && p[1] == '\n' {
		_, _ = b.br.Discard(2)
		return nil
	}
	// As net/http: the trailer block must end (CRLF CRLF) within what
	// the connection's reader can hold, which bounds its size.
	if !upcomingDoubleCRLF(b.br) {
		return errLongTrailer
	}
	var hr Reader
	head, err := hr.readHead(b.br)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	h, err := parseHeader(head)
	if err != nil {
		return err
	}
	if *b.trailer == nil {
		*b.trailer = make(http.Header, len(h))
	}
	for k, vv := range h {
		(*b.trailer)[k] = vv
	}
	return nil
}

var errTEAndCL = errors.New("request has both Content-Length and Transfer-Encoding")

var errLongTrailer = errors.New("http: suspiciously long trailer after chunked body")

// upcomingDoubleCRLF reports whether the reader's buffer, filled as far as
// it goes, holds the end of a header block.
func upcomingDoubleCRLF(br *bufio.Reader) bool {
	for n := 4; ; n++ {
		buf, err := br.Peek(n)
		if len(buf) >= 4 && string(buf[len(buf)-4:]) == "\r\n\r\n" {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// Close stops reading, once a read in progress has returned; the caller
// decides whether the connection can carry another message (it can only
// if the body was read to its end: see Complete).
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// Complete reports whether the body was read to its end, without waiting
// for a read in progress.
func (b *body) Complete() bool { return b.done.Load() }
