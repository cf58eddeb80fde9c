// Package router matches HTTP requests against a compiled Envoy route
// configuration: virtual host by authority (Envoy's domain rules), then the
// first route whose path, header and query matchers all match. It also holds
// the request-side helpers routes need: header mutations, path rewrites,
// redirects, weighted cluster picks and hash policies.
//
// A Table is immutable once built and safe for concurrent use.
package router

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// Table is a compiled route configuration.
type Table struct {
	cfg      *proxyconfig.RouteConfig
	vhosts   []*VirtualHost // in config order
	exact    map[string]*VirtualHost
	suffixes []wildcard // "*.example.com": longest suffix first
	prefixes []wildcard // "example.*": longest prefix first
	star     *VirtualHost
}

type wildcard struct {
	s  string
	vh *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	// Config is the validated virtual host.
	Config *proxyconfig.VirtualHost
	routes []compiledRoute
}

type compiledRoute struct {
	r       *proxyconfig.Route
	headers []headerKey
}

// headerKey caches the canonical key of a header matcher.
type headerKey struct {
	key string // canonical header key, or the pseudo-header name
	m   *proxyconfig.HeaderMatcher
}

// New compiles a validated route configuration.
func New(rc *proxyconfig.RouteConfig) *Table { return NewFrom(rc, nil) }

// NewFrom compiles rc as New does, taking from prev, a table of an
// earlier version of it (or nil), the compiled virtual hosts whose
// validated config is the same object: the xDS client keeps a virtual
// host's parsed form while its bytes do not change
// (proxyconfig.VirtualHostCache), so a change to one service of a large
// mesh compiles one virtual host, not all of them.
func NewFrom(rc *proxyconfig.RouteConfig, prev *Table) *Table {
	var old map[*proxyconfig.VirtualHost]*VirtualHost
	if prev != nil {
		old = make(map[*proxyconfig.VirtualHost]*VirtualHost, len(prev.vhosts))
		for _, vh := range prev.vhosts {
			old[vh.Config] = vh
		}
	}
	domains := 0
	for _, v := range rc.VirtualHosts {
		domains += len(v.Domains)
	}
	t := &Table{cfg: rc, exact: make(map[string]*VirtualHost, domains), vhosts: make([]*VirtualHost, 0, len(rc.VirtualHosts))}
	for _, v := range rc.VirtualHosts {
		vh := old[v]
		if vh == nil {
			vh = compileVirtualHost(v)
		}
		t.vhosts = append(t.vhosts, vh)
		for _, d := range v.Domains {
			switch {
			case d == "*":
				if t.star == nil {
					t.star = vh
				}
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{s: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{s: d[:len(d)-1], vh: vh})
			default:
				if _, ok := t.exact[d]; !ok {
					t.exact[d] = vh
				}
			}
		}
	}
	sort.SliceStable(t.suffixes, func(i, j int) bool { return len(t.suffixes[i].s) > len(t.suffixes[j].s) })
	sort.SliceStable(t.prefixes, func(i, j int) bool { return len(t.prefixes[i].s) > len(t.prefixes[j].s) })
	return t
}

// compileVirtualHost compiles a validated virtual host's routes. The
// result is immutable, so tables may share it.
func compileVirtualHost(v *proxyconfig.VirtualHost) *VirtualHost {
	vh := &VirtualHost{Config: v}
	for _, r := range v.Routes {
		cr := compiledRoute{r: r}
		for i := range r.Match.Headers {
			m := &r.Match.Headers[i]
			k := m.Name
			if !strings.HasPrefix(k, ":") {
				k = http.CanonicalHeaderKey(k)
			}
			cr.headers = append(cr.headers, headerKey{key: k, m: m})
		}
		vh.routes = append(vh.routes, cr)
	}
	return vh
}

// Config returns the route configuration the table was built from.
func (t *Table) Config() *proxyconfig.RouteConfig { return t.cfg }

// VirtualHost picks the virtual host for an authority, following Envoy:
// exact domain, then the longest suffix wildcard, then the longest prefix
// wildcard, then "*". An authority with a port that matches nothing is
// retried without the port. It returns nil when nothing matches.
func (t *Table) VirtualHost(authority string) *VirtualHost {
	host := lowerASCII(authority)
	if vh := t.lookup(host); vh != nil {
		return vh
	}
	if h, _, ok := splitPort(host); ok {
		if vh := t.lookup(h); vh != nil {
			return vh
		}
	}
	return t.star
}

func (t *Table) lookup(host string) *VirtualHost {
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > len(w.s) && strings.HasSuffix(host, w.s) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(host) > len(w.s) && strings.HasPrefix(host, w.s) {
			return w.vh
		}
	}
	return nil
}

// Request is what routing reads from a request.
type Request struct {
	// HTTP is the downstream request.
	HTTP *http.Request
	// Authority is the authority used for virtual host selection and the
	// :authority pseudo-header (the CONNECT target inside a tunnel).
	Authority string
	// TLS is set when the request came over TLS (mesh mTLS or a gateway's
	// HTTPS server): its :scheme is then https, as Envoy gives it.
	TLS bool
}

// Scheme is the request's :scheme: https over TLS, else http.
func (r Request) Scheme() string {
	if r.TLS {
		return "https"
	}
	return "http"
}

// Match returns the virtual host and the first matching route. Either is
// nil when nothing matches.
func (t *Table) Match(req Request) (*VirtualHost, *proxyconfig.Route) {
	vh := t.VirtualHost(req.Authority)
	if vh == nil {
		return nil, nil
	}
	return vh, vh.Match(req)
}

// Match returns the first route of the virtual host matching req, or nil.
func (vh *VirtualHost) Match(req Request) *proxyconfig.Route {
	path := req.HTTP.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := req.HTTP.URL.RawQuery
	for i := range vh.routes {
		cr := &vh.routes[i]
		if matchRoute(cr, req, path, query) {
			return cr.r
		}
	}
	return nil
}

func matchRoute(cr *compiledRoute, req Request, path, query string) bool {
	m := &cr.r.Match
	switch m.Kind {
	case proxyconfig.PathPrefix:
		if !hasPrefixPQ(path, query, m.Path, m.CaseInsensitive) {
			return false
		}
	case proxyconfig.PathExact:
		if m.CaseInsensitive {
			if !strings.EqualFold(path, m.Path) {
				return false
			}
		} else if path != m.Path {
			return false
		}
	case proxyconfig.PathRegex:
		if !m.Regex.MatchString(path) {
			return false
		}
	case proxyconfig.PathSeparatedPrefix:
		if !hasPrefixFold(path, m.Path, m.CaseInsensitive) {
			return false
		}
		if len(path) > len(m.Path) && path[len(m.Path)] != '/' {
			return false
		}
	}
	if m.GRPC && !IsGRPC(req.HTTP) {
		return false
	}
	for i := range cr.headers {
		if !matchHeader(cr.headers[i], req) {
			return false
		}
	}
	for i := range m.QueryParams {
		if !matchQuery(&m.QueryParams[i], query) {
			return false
		}
	}
	return true
}

// IsGRPC reports whether the request's content type is gRPC.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// hasPrefixPQ reports whether path+"?"+query (or path when query is empty)
// starts with prefix, without building the string.
func hasPrefixPQ(path, query, prefix string, fold bool) bool {
	if len(prefix) <= len(path) {
		return hasPrefixFold(path, prefix, fold)
	}
	if !hasPrefixFold(prefix, path, fold) {
		return false
	}
	rest := prefix[len(path):]
	if rest[0] != '?' || query == "" && len(rest) > 1 {
		return false
	}
	return hasPrefixFold(query, rest[1:], fold)
}

func hasPrefixFold(s, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if fold {
		return strings.EqualFold(s[:len(prefix)], prefix)
	}
	return s[:len(prefix)] == prefix
}

// headerValue returns the value Envoy matches for a header: all values
// joined with ",".
func headerValue(key string, req Request) (string, bool) {
	switch key {
	case ":method":
		return req.HTTP.Method, true
	case ":authority":
		return req.Authority, true
	case ":path":
		return req.HTTP.URL.RequestURI(), true
	case ":scheme":
		return req.Scheme(), true
	}
	vs, ok := req.HTTP.Header[key]
	if !ok {
		return "", false
	}
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func matchHeader(hk headerKey, req Request) bool {
	m := hk.m
	v, ok := headerValue(hk.key, req)
	if !ok && !m.TreatMissingAsEmpty {
		// Envoy: a missing header only matches present_match=false, or
		// present_match=true when inverted.
		if m.Match.Kind != proxyconfig.MatchPresent {
			return false
		}
		return m.Present == m.Invert
	}
	var res bool
	switch m.Match.Kind {
	case proxyconfig.MatchPresent:
		res = m.Present
	case proxyconfig.MatchRange:
		n, err := strconv.ParseInt(v, 10, 64)
		res = err == nil && n >= m.RangeStart && n < m.RangeEnd
	default:
		res = MatchString(&m.Match, v)
	}
	return res != m.Invert
}

// MatchString applies a string matcher.
func MatchString(m *proxyconfig.StringMatcher, v string) bool {
	switch m.Kind {
	case proxyconfig.MatchExact:
		if m.IgnoreCase {
			return strings.EqualFold(v, m.Value)
		}
		return v == m.Value
	case proxyconfig.MatchPrefix:
		return hasPrefixFold(v, m.Value, m.IgnoreCase)
	case proxyconfig.MatchSuffix:
		if len(v) < len(m.Value) {
			return false
		}
		if m.IgnoreCase {
			return strings.EqualFold(v[len(v)-len(m.Value):], m.Value)
		}
		return strings.HasSuffix(v, m.Value)
	case proxyconfig.MatchContains:
		if m.IgnoreCase {
			return strings.Contains(lowerASCII(v), m.Value)
		}
		return strings.Contains(v, m.Value)
	case proxyconfig.MatchRegex:
		return m.Regex.MatchString(v)
	case proxyconfig.MatchPresent:
		return true
	}
	return false
}

func matchQuery(m *proxyconfig.QueryParamMatcher, query string) bool {
	v, ok := QueryValue(query, m.Name)
	if !ok {
		return false
	}
	if m.Match.Kind == proxyconfig.MatchPresent {
		return true
	}
	return MatchString(&m.Match, v)
}

// QueryValue returns the first value of a query parameter in a raw query,
// unescaped, and whether the parameter is present.
func QueryValue(query, name string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err != nil || uk != name {
			continue
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			return v, true
		}
		return uv, true
	}
	return "", false
}

// lowerASCII lowercases ASCII letters; it returns s itself when it has none.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// splitPort splits "host:port" (and "[v6]:port"); ok is false when there is
// no port.
func splitPort(hostport string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return hostport, "", false
	}
	if strings.IndexByte(hostport, ']') > i || (hostport[0] != '[' && strings.Count(hostport, ":") > 1) {
		return hostport, "", false // bare IPv6 address, no port
	}
	host = hostport[:i]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host, hostport[i+1:], true
}
