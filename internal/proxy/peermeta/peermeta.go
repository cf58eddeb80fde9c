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
// Empty values are left out. A value's bytes outside [A-Za-z0-9._~:/@+-]
// are percent-encoded ("%3B"). Unknown keys are ignored, so later
// versions may add keys. The header carries no secret: until mTLS exists
// it is a claim, not a proof, and principals stay "unknown".
package peermeta

import (
	"net/url"
	"strings"
)

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
func Encode(w Workload) string {
	var b strings.Builder
	add := func(k byte, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteByte(k)
		b.WriteByte('=')
		for i := 0; i < len(v); i++ {
			c := v[i]
			if safe(c) {
				b.WriteByte(c)
				continue
			}
			const hexd = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&0xf])
		}
	}
	add('w', w.Name)
	add('n', w.Namespace)
	add('a', w.App)
	add('v', w.Version)
	add('s', w.ServiceAccount)
	return b.String()
}

func safe(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("._~:/@+-", c) >= 0
}

// MaxLen bounds a header value Parse accepts; a longer one is ignored as
// a whole (the peer is unknown).
const MaxLen = 1024

// Parse reads a header value. Values without percent escapes are
// substrings of v, so parsing the usual header does not allocate. A
// malformed pair is skipped.
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
		if strings.IndexByte(val, '%') >= 0 {
			u, err := url.PathUnescape(val)
			if err != nil {
				continue
			}
			val = u
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
