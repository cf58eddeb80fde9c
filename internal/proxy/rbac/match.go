package rbac

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// node is a compiled principal or permission. match must not allocate.
type node interface {
	match(in *Input) bool
}

func anyMatch(ns []node, in *Input) bool {
	for _, n := range ns {
		if n.match(in) {
			return true
		}
	}
	return false
}

type anyNode struct{}

func (anyNode) match(*Input) bool { return true }

type andNode []node

func (a andNode) match(in *Input) bool {
	for _, n := range a {
		if !n.match(in) {
			return false
		}
	}
	return true
}

type orNode []node

func (o orNode) match(in *Input) bool { return anyMatch(o, in) }

type notNode struct{ n node }

func (n notNode) match(in *Input) bool { return !n.n.match(in) }

// which address an ipNode reads.
type ipField int

const (
	ipSource ipField = iota
	ipRemote
	ipDest
)

type ipNode struct {
	field  ipField
	prefix netip.Prefix
}

func (n ipNode) match(in *Input) bool {
	var a netip.Addr
	switch n.field {
	case ipSource:
		a = in.SourceIP
	case ipRemote:
		a = in.RemoteIP
	default:
		a = in.DestIP
	}
	return a.IsValid() && n.prefix.Contains(a.Unmap())
}

type portNode struct{ lo, hi uint32 } // [lo, hi)

func (n portNode) match(in *Input) bool { return in.DestPort >= n.lo && in.DestPort < n.hi }

type principalNode struct{ m *stringMatch }

func (n principalNode) match(in *Input) bool {
	return in.Principal != "" && n.m.match(in.Principal)
}

type pathNode struct{ m *stringMatch }

func (n pathNode) match(in *Input) bool { return in.HTTP && n.m.match(in.Path) }

// headerNode matches an HTTP header; pseudo-headers :method, :authority
// (and host), :path are the request's own.
type headerNode struct {
	name    string // canonical MIME key, or pseudo-header
	m       *stringMatch
	present *bool // present_match
	invert  bool
}

func (n headerNode) match(in *Input) bool {
	if !in.HTTP {
		return false
	}
	v, ok := "", false
	switch n.name {
	case ":method":
		v, ok = in.Method, true
	case ":authority":
		v, ok = in.Host, true
	case ":path":
		v, ok = in.Path, true
	default:
		vs := in.Header[n.name]
		switch len(vs) {
		case 0:
		case 1:
			v, ok = vs[0], true
		default:
			v, ok = strings.Join(vs, ","), true
		}
	}
	var r bool
	switch {
	case n.present != nil:
		r = ok == *n.present
	case !ok:
		return false // a missing header never matches, inverted or not
	case n.m == nil:
		r = true
	default:
		r = n.m.match(v)
	}
	return r != n.invert
}

// metaNode matches request authentication metadata.
type metaNode struct {
	key    string   // KeyAuth*
	claim  []string // path below request.auth.claims
	m      *stringMatch
	list   bool // list_match one_of: any element
	invert bool
}

func (n metaNode) match(in *Input) bool {
	r := n.eval(in)
	return r != n.invert
}

func (n metaNode) eval(in *Input) bool {
	a := in.Auth
	if a == nil {
		return false
	}
	switch n.key {
	case KeyAuthPrincipal:
		return a.Principal != "" && n.m.match(a.Principal)
	case KeyAuthPresenter:
		return a.Presenter != "" && n.m.match(a.Presenter)
	case KeyAuthAudiences:
		for _, s := range a.Audiences {
			if n.m.match(s) {
				return true
			}
		}
		return false
	}
	var v any = a.Claims
	for _, k := range n.claim {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	switch x := v.(type) {
	case string:
		return n.m.match(x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && n.m.match(s) {
				return true
			}
		}
	case []string:
		for _, s := range x {
			if n.m.match(s) {
				return true
			}
		}
	}
	return false
}

// stringMatch is a compiled StringMatcher.
type stringMatch struct {
	kind       int // 0 exact, 1 prefix, 2 suffix, 3 contains, 4 regex
	s          string
	re         *regexp.Regexp
	ignoreCase bool
}

func (m *stringMatch) match(v string) bool {
	switch m.kind {
	case 0:
		if m.ignoreCase {
			return strings.EqualFold(v, m.s)
		}
		return v == m.s
	case 1:
		if m.ignoreCase {
			return len(v) >= len(m.s) && strings.EqualFold(v[:len(m.s)], m.s)
		}
		return strings.HasPrefix(v, m.s)
	case 2:
		if m.ignoreCase {
			return len(v) >= len(m.s) && strings.EqualFold(v[len(v)-len(m.s):], m.s)
		}
		return strings.HasSuffix(v, m.s)
	case 3:
		if m.ignoreCase {
			return containsFold(v, m.s)
		}
		return strings.Contains(v, m.s)
	default:
		return m.re.MatchString(v)
	}
}

func containsFold(v, sub string) bool {
	for i := 0; i+len(sub) <= len(v); i++ {
		if strings.EqualFold(v[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func compileString(sm *matcherv3.StringMatcher) (*stringMatch, error) {
	if sm == nil {
		return nil, errors.New("string matcher is missing")
	}
	m := &stringMatch{ignoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.s = 0, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.s = 1, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.s = 2, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.s = 3, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		expr := p.SafeRegex.GetRegex()
		if sm.GetIgnoreCase() {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			return nil, fmt.Errorf("safe_regex: %w", err)
		}
		m.kind, m.re = 4, re
	default:
		return nil, fmt.Errorf("string matcher %T is not supported", p)
	}
	return m, nil
}

func compileCIDR(c *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q: %w", c.GetAddressPrefix(), err)
	}
	bits := a.BitLen()
	if c.GetPrefixLen() != nil {
		bits = int(c.GetPrefixLen().GetValue())
	}
	p, err := a.Unmap().Prefix(min(bits, a.Unmap().BitLen()))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q/%d: %w", c.GetAddressPrefix(), bits, err)
	}
	return p, nil
}

func compileHeader(h *routev3.HeaderMatcher) (node, error) {
	name := strings.ToLower(h.GetName())
	if name == "" {
		return nil, errors.New("header matcher has no name")
	}
	n := headerNode{invert: h.GetInvertMatch()}
	switch name {
	case ":method", ":authority", ":path":
		n.name = name
	case "host":
		n.name = ":authority"
	default:
		if strings.HasPrefix(name, ":") {
			return nil, fmt.Errorf("pseudo-header %q is not supported", name)
		}
		n.name = textproto.CanonicalMIMEHeaderKey(name)
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		n.m, err = compileString(s.StringMatch)
	case *routev3.HeaderMatcher_ExactMatch:
		n.m = &stringMatch{kind: 0, s: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		n.m = &stringMatch{kind: 1, s: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		n.m = &stringMatch{kind: 2, s: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		n.m = &stringMatch{kind: 3, s: s.ContainsMatch}
	case *routev3.HeaderMatcher_PresentMatch:
		v := s.PresentMatch
		n.present = &v
	case nil:
		// Envoy: no specifier means the header is present.
		v := true
		n.present = &v
	default:
		return nil, fmt.Errorf("header %q: matcher %T is not supported", name, s)
	}
	if err != nil {
		return nil, fmt.Errorf("header %q: %w", name, err)
	}
	return n, nil
}

func compileMetadata(m *matcherv3.MetadataMatcher) (node, error) {
	if m.GetFilter() != MetadataFilter {
		return nil, fmt.Errorf("metadata filter %q is not supported, only %q", m.GetFilter(), MetadataFilter)
	}
	var path []string
	for _, s := range m.GetPath() {
		path = append(path, s.GetKey())
	}
	if len(path) == 0 {
		return nil, errors.New("metadata matcher has no path")
	}
	n := metaNode{key: path[0], invert: m.GetInvert()}
	switch path[0] {
	case KeyAuthPrincipal, KeyAuthPresenter, KeyAuthAudiences:
		if len(path) != 1 {
			return nil, fmt.Errorf("metadata path %q has extra keys", path[0])
		}
	case KeyAuthClaims:
		if len(path) < 2 {
			return nil, errors.New("metadata path request.auth.claims needs a claim name")
		}
		n.claim = path[1:]
	default:
		return nil, fmt.Errorf("metadata key %q is not supported", path[0])
	}
	v := m.GetValue()
	var err error
	switch {
	case v.GetStringMatch() != nil:
		n.m, err = compileString(v.GetStringMatch())
	case v.GetListMatch().GetOneOf().GetStringMatch() != nil:
		n.list = true
		n.m, err = compileString(v.GetListMatch().GetOneOf().GetStringMatch())
	default:
		return nil, errors.New("metadata value: only string_match and list_match.one_of.string_match are supported")
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

func compilePrincipal(p *rbacv3.Principal) (node, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return nil, errors.New("any must be true")
		}
		return anyNode{}, nil
	case *rbacv3.Principal_AndIds:
		var out andNode
		for i, x := range id.AndIds.GetIds() {
			n, err := compilePrincipal(x)
			if err != nil {
				return nil, fmt.Errorf("and_ids[%d]: %w", i, err)
			}
			out = append(out, n)
		}
		return out, nil
	case *rbacv3.Principal_OrIds:
		var out orNode
		for i, x := range id.OrIds.GetIds() {
			n, err := compilePrincipal(x)
			if err != nil {
				return nil, fmt.Errorf("or_ids[%d]: %w", i, err)
			}
			out = append(out, n)
		}
		return out, nil
	case *rbacv3.Principal_NotId:
		n, err := compilePrincipal(id.NotId)
		if err != nil {
			return nil, fmt.Errorf("not_id: %w", err)
		}
		return notNode{n}, nil
	case *rbacv3.Principal_Authenticated_:
		if id.Authenticated.GetPrincipalName() == nil {
			// Envoy: any authenticated peer.
			return principalNode{&stringMatch{kind: 1, s: ""}}, nil
		}
		m, err := compileString(id.Authenticated.GetPrincipalName())
		if err != nil {
			return nil, fmt.Errorf("authenticated.principal_name: %w", err)
		}
		return principalNode{m}, nil
	case *rbacv3.Principal_SourceIp:
		p, err := compileCIDR(id.SourceIp)
		return ipNode{ipSource, p}, err
	case *rbacv3.Principal_DirectRemoteIp:
		p, err := compileCIDR(id.DirectRemoteIp)
		return ipNode{ipSource, p}, err
	case *rbacv3.Principal_RemoteIp:
		p, err := compileCIDR(id.RemoteIp)
		return ipNode{ipRemote, p}, err
	case *rbacv3.Principal_Header:
		return compileHeader(id.Header)
	case *rbacv3.Principal_UrlPath:
		m, err := compileString(id.UrlPath.GetPath())
		if err != nil {
			return nil, fmt.Errorf("url_path: %w", err)
		}
		return pathNode{m}, nil
	case *rbacv3.Principal_Metadata:
		return compileMetadata(id.Metadata)
	default:
		return nil, fmt.Errorf("principal %T is not supported", id)
	}
}

func compilePermission(p *rbacv3.Permission) (node, error) {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return nil, errors.New("any must be true")
		}
		return anyNode{}, nil
	case *rbacv3.Permission_AndRules:
		var out andNode
		for i, x := range r.AndRules.GetRules() {
			n, err := compilePermission(x)
			if err != nil {
				return nil, fmt.Errorf("and_rules[%d]: %w", i, err)
			}
			out = append(out, n)
		}
		return out, nil
	case *rbacv3.Permission_OrRules:
		var out orNode
		for i, x := range r.OrRules.GetRules() {
			n, err := compilePermission(x)
			if err != nil {
				return nil, fmt.Errorf("or_rules[%d]: %w", i, err)
			}
			out = append(out, n)
		}
		return out, nil
	case *rbacv3.Permission_NotRule:
		n, err := compilePermission(r.NotRule)
		if err != nil {
			return nil, fmt.Errorf("not_rule: %w", err)
		}
		return notNode{n}, nil
	case *rbacv3.Permission_Header:
		return compileHeader(r.Header)
	case *rbacv3.Permission_UrlPath:
		m, err := compileString(r.UrlPath.GetPath())
		if err != nil {
			return nil, fmt.Errorf("url_path: %w", err)
		}
		return pathNode{m}, nil
	case *rbacv3.Permission_DestinationIp:
		p, err := compileCIDR(r.DestinationIp)
		return ipNode{ipDest, p}, err
	case *rbacv3.Permission_DestinationPort:
		return portNode{r.DestinationPort, r.DestinationPort + 1}, nil
	case *rbacv3.Permission_DestinationPortRange:
		return portNode{uint32(r.DestinationPortRange.GetStart()), uint32(r.DestinationPortRange.GetEnd())}, nil
	case *rbacv3.Permission_Metadata:
		return compileMetadata(r.Metadata)
	default:
		return nil, fmt.Errorf("permission %T is not supported", r)
	}
}
