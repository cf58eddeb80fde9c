package router

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// ApplyHeaders applies header mutations to h. authority, when not nil,
// receives ":authority" (Host) mutations.
func ApplyHeaders(h http.Header, ops *proxyconfig.HeaderOps, authority *string) {
	for _, k := range ops.Remove {
		delete(h, k)
	}
	for i := range ops.Add {
		a := &ops.Add[i]
		if a.Name == ":authority" {
			if authority != nil && a.Action != proxyconfig.AddIfAbsent {
				*authority = a.Value
			}
			continue
		}
		_, exists := h[a.Name]
		switch a.Action {
		case proxyconfig.AppendIfExistsOrAdd:
			h[a.Name] = append(h[a.Name], a.Value)
		case proxyconfig.AddIfAbsent:
			if !exists {
				h[a.Name] = []string{a.Value}
			}
		case proxyconfig.OverwriteIfExistsOrAdd:
			h[a.Name] = []string{a.Value}
		case proxyconfig.OverwriteIfExists:
			if exists {
				h[a.Name] = []string{a.Value}
			}
		}
	}
}

// RewritePath returns the upstream path (escaped, without query) for a
// route action, or path itself when nothing is rewritten.
func RewritePath(m *proxyconfig.RouteMatch, a *proxyconfig.RouteAction, path string) string {
	if a.HasPrefixRewrite {
		return rewritePrefix(m, path, a.PrefixRewrite)
	}
	if a.RegexRewrite != nil {
		return a.RegexRewrite.Pattern.ReplaceAllString(path, a.RegexRewrite.Substitution)
	}
	return path
}

func rewritePrefix(m *proxyconfig.RouteMatch, path, repl string) string {
	switch m.Kind {
	case proxyconfig.PathExact:
		return repl
	case proxyconfig.PathPrefix, proxyconfig.PathSeparatedPrefix:
		n := len(m.Path)
		if n > len(path) {
			n = len(path)
		}
		out := repl + path[n:]
		if out == "" || out[0] != '/' {
			out = "/" + out
		}
		return out
	}
	return path
}

// RedirectLocation builds the Location of a redirect for a request whose
// authority is authority and path (escaped) and raw query are given.
func RedirectLocation(m *proxyconfig.RouteMatch, rd *proxyconfig.Redirect, scheme, authority, path, query string) string {
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host, port, hasPort := splitPort(authority)
	if !hasPort {
		host = authority
	}
	if rd.Host != "" {
		host = rd.Host
	}
	switch {
	case rd.Port != 0:
		port, hasPort = strconv.FormatUint(uint64(rd.Port), 10), true
	case rd.Scheme != "" && hasPort:
		// A scheme change drops the old scheme's port, as in Envoy.
		hasPort = false
	}
	if hasPort && ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) {
		hasPort = false
	}
	switch {
	case rd.Path != "":
		path = rd.Path
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path, query = path[:i], path[i+1:]
		}
	case rd.HasPrefixRewrite:
		path = rewritePrefix(m, path, rd.PrefixRewrite)
	case rd.RegexRewrite != nil:
		path = rd.RegexRewrite.Pattern.ReplaceAllString(path, rd.RegexRewrite.Substitution)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	b.WriteString(host)
	if hasPort {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	if query != "" && !rd.StripQuery {
		b.WriteByte('?')
		b.WriteString(query)
	}
	return b.String()
}

// PickCluster returns the cluster of a route action: the single cluster or
// a weighted random pick. The returned WeightedCluster is nil for a single
// cluster.
func PickCluster(a *proxyconfig.RouteAction) (string, *proxyconfig.WeightedCluster) {
	if len(a.WeightedClusters) == 0 {
		return a.Cluster, nil
	}
	n := rand.Uint32N(a.TotalWeight)
	for i := range a.WeightedClusters {
		wc := &a.WeightedClusters[i]
		if n < wc.Weight {
			return wc.Name, wc
		}
		n -= wc.Weight
	}
	wc := &a.WeightedClusters[len(a.WeightedClusters)-1]
	return wc.Name, wc
}

// Hash evaluates hash policies as Envoy does: each policy that finds its
// input is folded into the hash; a terminal policy that produced a hash
// stops the evaluation. ok is false when no policy produced a hash.
func Hash(policies []proxyconfig.HashPolicy, r *http.Request, sourceIP string) (uint64, bool) {
	var h uint64
	ok := false
	for i := range policies {
		p := &policies[i]
		var v string
		found := false
		switch p.Kind {
		case proxyconfig.HashHeader:
			if vs := r.Header.Values(p.Name); len(vs) > 0 {
				v, found = vs[0], true
			}
		case proxyconfig.HashCookie:
			if c, err := r.Cookie(p.Name); err == nil {
				v, found = c.Value, true
			}
		case proxyconfig.HashSourceIP:
			v, found = sourceIP, sourceIP != ""
		case proxyconfig.HashQueryParam:
			v, found = QueryValue(r.URL.RawQuery, p.Name)
		}
		if !found {
			continue
		}
		k := HashString(v)
		if ok {
			h = (h<<1 | h>>63) ^ k // as Envoy combines hashes
		} else {
			h = k
		}
		ok = true
		if p.Terminal {
			break
		}
	}
	return h, ok
}

// HashString is a stable 64-bit hash (FNV-1a finished with a mixer), the
// same in every Weft proxy so that proxies agree on consistent hashing.
func HashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return Mix64(h)
}

// Mix64 is the SplitMix64 finaliser.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
