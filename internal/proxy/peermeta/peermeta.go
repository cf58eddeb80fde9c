// Package peermeta is the sidecars' peer metadata exchange: the header in
// which a sidecar tells the sidecar at the other end of an HTTP request
// which workload it stands for, so that both ends can label their metrics
// with the peer's workload, namespace, app and version.
//
// The client sidecar sets the header on every request it forwards; the
// server sidecar reads it and removes it before the app sees the request,
// and sets its own on the response, which the client sidecar reads and
// removes before the client app sees it. A peer that sent no header is
// "unknown".
//
// Wire format (header x-weft-peer), a ';'-separated list of key=value
// pairs with one-letter keys, in any order:
//
//	w=<workload>;n=<namespace>;a=<app>;v=<version>;s=<service account>
//
// Empty values are left out. Unknown keys are ignored, so later versions
// may add keys. The header carries no secret: on a plaintext hop anyone
// can send it, so it is a claim, not a proof (principals come only from
// verified certificates), and its values become metric labels. To keep
// what a caller can mint bounded, a value must be a Kubernetes-style name
// or label value: bytes in [A-Za-z0-9._-], at most 63 of them (253 for
// the workload and the service account, which are DNS subdomain names).
// A value outside that is dropped, and that field of the peer is unknown.
package peermeta

import "strings"

// Header is the peer metadata header.
const Header = "X-Weft-Peer"

// Workload is what a sidecar says about its workload. The zero value is
// an unknown peer.
type Workload struct {
	// Name is the workload's name ("reviews-v2").
	Name string
	// Namespace is the workload's namespace.
	Namespace string
	// App is the app label ("app", else "app.kubernetes.io/name").
	App string
	// Version is the version label ("version", else
	// "app.kubernetes.io/version").
	Version string
	// ServiceAccount is the workload's service account.
	ServiceAccount string
}

// FromLabels builds a Workload from a sidecar's flags.
func FromLabels(name, namespace, serviceAccount string, labels map[string]string) Workload {
	w := Workload{Name: name, Namespace: namespace, ServiceAccount: serviceAccount}
	w.App = labels["app"]
	if w.App == "" {
		w.App = labels["app.kubernetes.io/name"]
	}
	w.Version = labels["version"]
	if w.Version == "" {
		w.Version = labels["app.kubernetes.io/version"]
	}
	return w
}

// Encode returns the header value for w. Sidecars encode once at start.
// Fields that are not valid values (see Invalid) are left out: the peer
// would drop them.
func Encode(w Workload) string {
	var b strings.Builder
	add := func(k byte, v string) {
		if v == "" || !validValue(k, v) {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteByte(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	add('w', w.Name)
	add('n', w.Namespace)
	add('a', w.App)
	add('v', w.Version)
	add('s', w.ServiceAccount)
	return b.String()
}

// Value limits: Kubernetes label values and namespace names are at most
// 63 bytes, workload and service account names (DNS subdomains) 253.
const (
	MaxValueLen = 63
	MaxNameLen  = 253
)

// validValue reports whether v may be the value of key k: not longer than
// the key's limit and made only of [A-Za-z0-9._-].
func validValue(k byte, v string) bool {
	limit := MaxValueLen
	if k == 'w' || k == 's' {
		limit = MaxNameLen
	}
	if len(v) > limit {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Invalid names the fields of w whose non-empty values Encode leaves out
// (too long, or bytes outside [A-Za-z0-9._-]), for a warning at start.
func Invalid(w Workload) []string {
	var out []string
	for _, f := range [...]struct {
		k    byte
		name string
		v    string
	}{{'w', "workload", w.Name}, {'n', "namespace", w.Namespace}, {'a', "app", w.App}, {'v', "version", w.Version}, {'s', "service account", w.ServiceAccount}} {
		if f.v != "" && !validValue(f.k, f.v) {
			out = append(out, f.name)
		}
	}
	return out
}

// MaxLen bounds a header value Parse accepts; a longer one is ignored as
// a whole (the peer is unknown).
const MaxLen = 1024

// Parse reads a header value. Values are substrings of v, so parsing does
// not allocate. A malformed pair, or a value that is not valid for its key
// (too long, or bytes outside [A-Za-z0-9._-]), is skipped.
func Parse(v string) Workload {
	var w Workload
	if len(v) > MaxLen {
		return w
	}
	for v != "" {
		var kv string
		if i := strings.IndexByte(v, ';'); i >= 0 {
			kv, v = v[:i], v[i+1:]
		} else {
			kv, v = v, ""
		}
		kv = strings.TrimSpace(kv)
		if len(kv) < 2 || kv[1] != '=' {
			continue
		}
		val := kv[2:]
		if !validValue(kv[0], val) {
			continue
		}
		switch kv[0] {
		case 'w':
			w.Name = val
		case 'n':
			w.Namespace = val
		case 'a':
			w.App = val
		case 'v':
			w.Version = val
		case 's':
			w.ServiceAccount = val
		}
	}
	return w
}
