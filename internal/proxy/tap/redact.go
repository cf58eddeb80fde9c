package tap

import (
	"net/http"
	"strings"
)

// Limits on the headers an event carries.
const (
	// MaxHeaders is how many request headers an event keeps (the rest
	// are left out).
	MaxHeaders = 32
	// MaxHeaderValue is where a header value is cut.
	MaxHeaderValue = 256
)

// Redacted replaces a credential-like header value.
const Redacted = "[redacted]"

// sensitiveNames are headers whose values are always credentials.
var sensitiveNames = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
	"x-api-key":           true,
}

// sensitiveParts redact any header whose name contains one of them.
var sensitiveParts = []string{"token", "secret", "password", "passwd", "api-key", "apikey", "credential", "session"}

// sensitiveValuePrefixes are schemes of values that carry a credential
// whatever the header's name.
var sensitiveValuePrefixes = []string{"bearer ", "basic ", "digest ", "negotiate ", "aws4-hmac-sha256 "}

// SensitiveHeader reports whether a header's value must never leave the
// sidecar: Authorization, Proxy-Authorization, Cookie, Set-Cookie,
// X-Api-Key, and any name containing token, secret, password (and a few
// spellings of the same).
func SensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	if sensitiveNames[n] {
		return true
	}
	for _, p := range sensitiveParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}

// Redact returns the value to show for a header: Redacted for sensitive
// names and for values that look like credentials ("Bearer ...", "Basic
// ..."), else the value cut at MaxHeaderValue bytes.
func Redact(name, value string) string {
	if SensitiveHeader(name) {
		return Redacted
	}
	lv := strings.ToLower(strings.TrimSpace(value))
	for _, p := range sensitiveValuePrefixes {
		if strings.HasPrefix(lv, p) {
			return Redacted
		}
	}
	if len(value) > MaxHeaderValue {
		return value[:MaxHeaderValue] + "..."
	}
	return value
}

// Headers copies h for an event, redacted, with multiple values joined
// by ", " and at most MaxHeaders names; nil when h is empty.
func Headers(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(h), MaxHeaders))
	for k, vs := range h {
		if len(out) == MaxHeaders {
			break
		}
		out[strings.ToLower(k)] = Redact(k, strings.Join(vs, ", "))
	}
	return out
}

// TraceID returns the trace ID of a W3C traceparent value
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when v is not one or the ID is
// all zeros.
func TraceID(v string) string {
	v = strings.TrimSpace(v)
	if len(v) < 55 || v[2] != '-' || v[35] != '-' {
		return ""
	}
	id := v[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return ""
	}
	return id
}
