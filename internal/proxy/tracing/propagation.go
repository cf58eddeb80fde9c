// Package tracing is the proxy's distributed tracing: it reads and writes
// trace context headers (W3C traceparent/tracestate and B3, single and
// multi header), decides sampling, records one span per request with the
// OpenTelemetry Go SDK, and exports spans over OTLP/gRPC through a
// bounded queue that drops (and counts) rather than blocks.
//
// A request that is not sampled costs a map lookup or two and no
// allocation (BenchmarkUnsampled).
package tracing

import (
	"math/rand/v2"
	"net/http"
	"strings"
)

// Header names in Go's canonical form, so lookups do not canonicalize.
const (
	hTraceparent = "Traceparent"
	hB3          = "B3"
	hB3TraceID   = "X-B3-Traceid"
	hB3SpanID    = "X-B3-Spanid"
	hB3Parent    = "X-B3-Parentspanid"
	hB3Sampled   = "X-B3-Sampled"
	hB3Flags     = "X-B3-Flags"
)

// Context is the trace context a request arrived with.
type Context struct {
	// TraceID and SpanID are the caller's; valid when HasIDs.
	TraceID [16]byte
	SpanID  [8]byte
	// HasIDs is true when a valid trace and span ID were present.
	HasIDs bool
	// Decided is true when the caller sent a sampling decision.
	Decided bool
	// Sampled is the caller's decision (when Decided).
	Sampled bool
	// b3Single records that the caller used the single b3 header, which
	// is then rewritten too.
	b3Single bool
}

// Extract reads the trace context of h: traceparent first, then the b3
// header, then the x-b3-* headers. Malformed values are ignored. It does
// not allocate.
func Extract(h http.Header) Context {
	var c Context
	if v := h[hTraceparent]; len(v) > 0 && parseTraceparent(v[0], &c) {
		c.b3Single = len(h[hB3]) > 0
		return c
	}
	if v := h[hB3]; len(v) > 0 && parseB3Single(v[0], &c) {
		c.b3Single = true
		return c
	}
	c = Context{}
	if t, s := h[hB3TraceID], h[hB3SpanID]; len(t) > 0 && len(s) > 0 {
		if parseTraceID(t[0], &c.TraceID) && len(s[0]) == 16 && parseHex(s[0], c.SpanID[:]) {
			c.HasIDs = true
		} else {
			c.TraceID, c.SpanID = [16]byte{}, [8]byte{}
		}
	}
	if v := h[hB3Flags]; len(v) > 0 && v[0] == "1" {
		c.Decided, c.Sampled = true, true
	} else if v := h[hB3Sampled]; len(v) > 0 {
		switch v[0] {
		case "1", "true", "d":
			c.Decided, c.Sampled = true, true
		case "0", "false":
			c.Decided = true
		}
	}
	return c
}

// Decide says whether a request with context c is sampled: the caller's
// decision when it sent one (parent-based), else a random draw at
// percent (0 to 100).
func Decide(c Context, percent float64) bool {
	switch {
	case c.Decided:
		return c.Sampled
	case percent >= 100:
		return true
	case percent <= 0:
		return false
	}
	return rand.Float64()*100 < percent
}

// notSampled is the shared value of x-b3-sampled for requests this proxy
// decided not to sample; never modified.
var notSampled = []string{"0"}

// MarkNotSampled records on a request without a sampling decision that
// this proxy decided not to sample it, so the proxies after it (to which
// apps forward the header) keep that decision. It does not allocate.
func MarkNotSampled(h http.Header) { h[hB3Sampled] = notSampled }

// Unsample turns the trace context in h into one that is not sampled, in
// every format it is written in (traceparent's flags, b3's sampling
// state, x-b3-sampled), keeping its IDs: a request mirrored with
// trace_sampled false keeps its trace but records no spans. h must be a
// copy of its own.
func Unsample(h http.Header) {
	if v := h[hTraceparent]; len(v) > 0 && len(v[0]) == 55 {
		h[hTraceparent] = []string{v[0][:53] + "00"}
	}
	if v := h[hB3]; len(v) > 0 {
		// traceid-spanid[-sampled[-parentspanid]], or the lone decision.
		parts := strings.Split(v[0], "-")
		switch {
		case len(parts) == 1:
			h[hB3] = []string{"0"}
		case len(parts) == 2:
			h[hB3] = []string{v[0] + "-0"}
		default:
			parts[2] = "0"
			h[hB3] = []string{strings.Join(parts, "-")}
		}
	}
	delete(h, hB3Flags)
	h[hB3Sampled] = notSampled
}

// inject writes the context of a sampled span whose caller was parent
// (HasIDs false for a root span): traceparent, the x-b3-* headers, and
// b3 when the caller used it. tracestate is left as it came.
func inject(h http.Header, traceID [16]byte, spanID [8]byte, parent Context) {
	var tp [55]byte
	copy(tp[:], "00-")
	hexTo(tp[3:35], traceID[:])
	tp[35] = '-'
	hexTo(tp[36:52], spanID[:])
	copy(tp[52:], "-01")
	h[hTraceparent] = []string{string(tp[:])}
	h[hB3TraceID] = []string{string(tp[3:35])}
	h[hB3SpanID] = []string{string(tp[36:52])}
	h[hB3Sampled] = []string{"1"}
	var ps string
	if parent.HasIDs {
		var p [16]byte
		hexTo(p[:], parent.SpanID[:])
		ps = string(p[:])
		h[hB3Parent] = []string{ps}
	} else {
		delete(h, hB3Parent)
	}
	if parent.b3Single {
		v := string(tp[3:35]) + "-" + string(tp[36:52]) + "-1"
		if ps != "" {
			v += "-" + ps
		}
		h[hB3] = []string{v}
	}
}

// parseTraceparent reads "vv-<32 hex>-<16 hex>-<2 hex>" (W3C Trace
// Context). Versions above 00 may append fields; version ff is invalid.
func parseTraceparent(v string, c *Context) bool {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && (v[:2] == "00" || v[55] != '-')) {
		return false
	}
	var ver, flags [1]byte
	if !parseHex(v[:2], ver[:]) || ver[0] == 0xff || !parseHex(v[3:35], c.TraceID[:]) || !parseHex(v[36:52], c.SpanID[:]) || !parseHex(v[53:55], flags[:]) {
		*c = Context{}
		return false
	}
	if c.TraceID == ([16]byte{}) || c.SpanID == ([8]byte{}) {
		*c = Context{}
		return false
	}
	c.HasIDs, c.Decided, c.Sampled = true, true, flags[0]&1 == 1
	return true
}

// parseB3Single reads the b3 header: "0", "1" or "d" alone (a decision
// only), or "<trace id>-<span id>[-<decision>[-<parent span id>]]".
func parseB3Single(v string, c *Context) bool {
	switch v {
	case "0":
		c.Decided = true
		return true
	case "1", "d":
		c.Decided, c.Sampled = true, true
		return true
	}
	i := indexByte(v, '-')
	if i < 0 || !parseTraceID(v[:i], &c.TraceID) {
		*c = Context{}
		return false
	}
	rest := v[i+1:]
	if len(rest) < 16 || !parseHex(rest[:16], c.SpanID[:]) {
		*c = Context{}
		return false
	}
	c.HasIDs = true
	rest = rest[16:]
	if len(rest) >= 2 && rest[0] == '-' {
		switch rest[1] {
		case '1', 'd':
			c.Decided, c.Sampled = true, true
		case '0':
			c.Decided = true
		}
	}
	return true
}

// parseTraceID reads a 64- or 128-bit hex trace ID (64-bit IDs are
// left-padded with zeros).
func parseTraceID(s string, id *[16]byte) bool {
	switch len(s) {
	case 32:
		return parseHex(s, id[:]) && *id != [16]byte{}
	case 16:
		*id = [16]byte{}
		return parseHex(s, id[8:]) && *id != [16]byte{}
	}
	return false
}

func parseHex(s string, dst []byte) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

func hexTo(dst, src []byte) {
	for i, b := range src {
		dst[2*i], dst[2*i+1] = hexDigits[b>>4], hexDigits[b&0xf]
	}
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// TraceIDString returns the trace ID in hex ("" without IDs).
func (c Context) TraceIDString() string {
	if !c.HasIDs {
		return ""
	}
	var b [32]byte
	hexTo(b[:], c.TraceID[:])
	return string(b[:])
}
