// Package tlsnames maps the TLS parameter names of Istio's and Envoy's
// APIs (OpenSSL cipher suite names, protocol versions) to crypto/tls's
// values. The control plane's validator and the proxy both use it, so
// what one accepts the other applies.
package tlsnames

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// cipherSuites are the TLS 1.2 suites crypto/tls implements, by their
// OpenSSL names (TLS 1.3's suites are not configurable).
var cipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// CipherSuites maps cipher suite names to crypto/tls's IDs, in order. An
// Envoy equal-preference group "[A|B]" gives its members in turn. Unknown
// names are an error that lists the known ones.
func CipherSuites(names []string) ([]uint16, error) {
	var out []uint16
	for _, n := range names {
		for _, m := range strings.Split(strings.Trim(n, "[]"), "|") {
			id, ok := cipherSuites[strings.TrimSpace(m)]
			if !ok {
				return nil, fmt.Errorf("cipher suite %q is not one Weft supports (%s)", m, strings.Join(Known(), ", "))
			}
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// Known lists the supported cipher suite names, sorted.
func Known() []string {
	out := make([]string, 0, len(cipherSuites))
	for n := range cipherSuites {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
