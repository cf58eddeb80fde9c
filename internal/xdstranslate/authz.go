package xdstranslate

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/rbac"
)

// Authorization in xDS (docs/architecture.md, "Authorization"):
//
// The AuthorizationPolicies that select a sidecar's workload (root
// namespace without selector: every workload; root namespace with
// selector: matching workloads of every namespace; the workload's
// namespace without selector: all its workloads; with selector: matching
// ones) become Envoy RBAC filters on each inbound listener, before the
// router (HTTP, envoy.filters.http.rbac) or the tcp_proxy (TCP,
// envoy.filters.network.rbac): one filter with the DENY policies (action
// DENY), then one with the ALLOW policies (action ALLOW; present whenever
// an ALLOW policy selects the workload, so a policy with no rules denies
// everything), then the AUDIT policies as shadow rules (action LOG).
//
// Each rule of a policy is one RBAC policy named
// "ns[<namespace>]-policy[<name>]-rule[<index>]": its permissions hold the
// rule's to (operations, OR) and destination/header conditions, its
// principals the rule's from (sources, OR) and source/auth conditions.
// Ports (operation ports, destination.port) are decided here, since each
// inbound listener serves one port: a rule that cannot match the
// listener's port is left out. On a TCP port a rule with HTTP-only fields
// (hosts, methods, paths, requestPrincipals, request.* conditions) is
// left out of ALLOW and AUDIT filters and kept without those fields in
// DENY ones, as Istio does.

// authzSet is what applies to one workload, each list in snapshot order.
type authzSet struct {
	trustDomain        string
	deny, allow, audit []*model.AuthorizationPolicy
}

// authzFor selects the AuthorizationPolicies that apply to the workload
// with namespace ns and labels (a sidecar's instance or a gateway proxy).
func (t *Translator) authzFor(ns string, labels map[string]string) *authzSet {
	root := t.snap.MeshTelemetry.Root()
	s := &authzSet{trustDomain: t.snap.TrustDomain}
	if s.trustDomain == "" {
		s.trustDomain = defaultTrustDom
	}
	for _, ap := range t.snap.AuthorizationPolicies {
		if !policySelects(ap.Namespace, ap.Spec.GetSelector().GetMatchLabels(), ns, labels, root) {
			continue
		}
		switch ap.Spec.GetAction() {
		case security.AuthorizationPolicy_DENY:
			s.deny = append(s.deny, ap)
		case security.AuthorizationPolicy_ALLOW:
			s.allow = append(s.allow, ap)
		case security.AuthorizationPolicy_AUDIT:
			s.audit = append(s.audit, ap)
		}
	}
	if len(s.deny)+len(s.allow)+len(s.audit) == 0 {
		return nil
	}
	return s
}

// policySelects is Istio's scoping of a security policy in namespace
// policyNS with selector sel: the root namespace without selector selects
// every workload; with one, the matching workloads of every namespace; any
// other namespace, its own workloads (all of them, or the matching ones).
func policySelects(policyNS string, sel map[string]string, ns string, labels map[string]string, root string) bool {
	if policyNS != root && policyNS != ns {
		return false
	}
	return len(sel) == 0 || model.LabelsMatch(sel, labels)
}

// rulesFor builds the RBAC rule sets for one port, in filter order; shadow
// is set for the audit set.
func (s *authzSet) rulesFor(port uint32, http bool) (sets []*rbacv3.RBAC, shadow []bool) {
	if s == nil {
		return nil, nil
	}
	if len(s.deny) > 0 {
		if r := s.build(rbacv3.RBAC_DENY, s.deny, port, http); len(r.Policies) > 0 {
			sets, shadow = append(sets, r), append(shadow, false)
		}
	}
	if len(s.allow) > 0 {
		sets, shadow = append(sets, s.build(rbacv3.RBAC_ALLOW, s.allow, port, http)), append(shadow, false)
	}
	if len(s.audit) > 0 {
		if r := s.build(rbacv3.RBAC_LOG, s.audit, port, http); len(r.Policies) > 0 {
			sets, shadow = append(sets, r), append(shadow, true)
		}
	}
	return sets, shadow
}

// httpFilters are the RBAC HTTP filters of an inbound HTTP port.
func (s *authzSet) httpFilters(port uint32) []*hcm.HttpFilter {
	sets, shadow := s.rulesFor(port, true)
	var out []*hcm.HttpFilter
	for i, r := range sets {
		cfg := &httprbac.RBAC{Rules: r}
		if shadow[i] {
			cfg = &httprbac.RBAC{ShadowRules: r, ShadowRulesStatPrefix: "istio_dry_run_"}
		}
		out = append(out, &hcm.HttpFilter{Name: rbac.HTTPFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}})
	}
	return out
}

// networkFilters are the RBAC network filters of an inbound TCP port.
func (s *authzSet) networkFilters(port uint32) []*listener.Filter {
	sets, shadow := s.rulesFor(port, false)
	var out []*listener.Filter
	for i, r := range sets {
		cfg := &netrbac.RBAC{Rules: r, StatPrefix: "tcp."}
		if shadow[i] {
			cfg = &netrbac.RBAC{ShadowRules: r, StatPrefix: "tcp.", ShadowRulesStatPrefix: "istio_dry_run_"}
		}
		out = append(out, &listener.Filter{Name: rbac.NetworkFilterName, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}})
	}
	return out
}

func (s *authzSet) build(action rbacv3.RBAC_Action, aps []*model.AuthorizationPolicy, port uint32, http bool) *rbacv3.RBAC {
	out := &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
	for _, ap := range aps {
		for i, rule := range ap.Spec.GetRules() {
			rb := &ruleBuilder{td: s.trustDomain, port: port}
			if !http && ruleHasHTTP(rule) {
				if action != rbacv3.RBAC_DENY {
					continue
				}
				rb.stripHTTP = true
			}
			p, ok := rb.policy(rule)
			if !ok {
				continue
			}
			out.Policies[fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", ap.Namespace, ap.Name, i)] = p
		}
	}
	return out
}

func ruleHasHTTP(r *security.Rule) bool {
	for _, f := range r.GetFrom() {
		s := f.GetSource()
		if len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals()) > 0 {
			return true
		}
	}
	for _, t := range r.GetTo() {
		o := t.GetOperation()
		if len(o.GetHosts())+len(o.GetNotHosts())+len(o.GetMethods())+len(o.GetNotMethods())+len(o.GetPaths())+len(o.GetNotPaths()) > 0 {
			return true
		}
	}
	for _, c := range r.GetWhen() {
		if strings.HasPrefix(c.GetKey(), "request.") {
			return true
		}
	}
	return false
}

// ruleBuilder turns one rule into one RBAC policy for one port.
type ruleBuilder struct {
	td        string
	port      uint32
	stripHTTP bool
}

func (b *ruleBuilder) policy(r *security.Rule) (*rbacv3.Policy, bool) {
	var perms []*rbacv3.Permission
	var ids []*rbacv3.Principal
	if len(r.GetTo()) > 0 {
		var ors []*rbacv3.Permission
		for _, t := range r.GetTo() {
			if p, ok := b.operation(t.GetOperation()); ok {
				ors = append(ors, p)
			}
		}
		if len(ors) == 0 {
			return nil, false
		}
		perms = append(perms, orPerms(ors))
	}
	if len(r.GetFrom()) > 0 {
		var ors []*rbacv3.Principal
		for _, f := range r.GetFrom() {
			ors = append(ors, b.source(f.GetSource()))
		}
		ids = append(ids, orIDs(ors))
	}
	for _, c := range r.GetWhen() {
		key := c.GetKey()
		if b.stripHTTP && strings.HasPrefix(key, "request.") {
			continue
		}
		switch {
		case key == "destination.port":
			if !portIn(b.port, c.GetValues(), true) || portIn(b.port, c.GetNotValues(), false) {
				return nil, false
			}
		case key == "destination.ip":
			perms = append(perms, notPerm(orPerms(mapPerm(c.GetValues(), destIPPerm)), orPerms(mapPerm(c.GetNotValues(), destIPPerm)))...)
		case strings.HasPrefix(key, "request.headers["):
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(key, "request.headers["), "]"))
			f := func(v string) *rbacv3.Permission { return headerPerm(name, wildcard(v, "", false)) }
			perms = append(perms, notPerm(orPerms(mapPerm(c.GetValues(), f)), orPerms(mapPerm(c.GetNotValues(), f)))...)
		default:
			f := b.conditionID(key)
			ids = append(ids, notID(orIDs(mapID(c.GetValues(), f)), orIDs(mapID(c.GetNotValues(), f)))...)
		}
	}
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{andPerms(perms)}, Principals: []*rbacv3.Principal{andIDs(ids)}}, true
}

func (b *ruleBuilder) conditionID(key string) func(string) *rbacv3.Principal {
	switch key {
	case "source.ip":
		return func(v string) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(v)}}
		}
	case "remote.ip":
		return func(v string) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr(v)}}
		}
	case "source.namespace":
		return namespaceID
	case "source.principal":
		return principalID
	case "request.auth.principal":
		return func(v string) *rbacv3.Principal { return metaID([]string{rbac.KeyAuthPrincipal}, v) }
	case "request.auth.audiences":
		return func(v string) *rbacv3.Principal { return metaID([]string{rbac.KeyAuthAudiences}, v) }
	case "request.auth.presenter":
		return func(v string) *rbacv3.Principal { return metaID([]string{rbac.KeyAuthPresenter}, v) }
	}
	// request.auth.claims[a][b]
	rest := strings.TrimPrefix(key, "request.auth.claims")
	path := []string{rbac.KeyAuthClaims}
	for strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			break
		}
		path = append(path, rest[1:end])
		rest = rest[end+1:]
	}
	return func(v string) *rbacv3.Principal { return metaID(path, v) }
}

func (b *ruleBuilder) operation(o *security.Operation) (*rbacv3.Permission, bool) {
	if len(o.GetPorts()) > 0 && !portIn(b.port, o.GetPorts(), true) {
		return nil, false
	}
	if portIn(b.port, o.GetNotPorts(), false) {
		return nil, false
	}
	var ands []*rbacv3.Permission
	if !b.stripHTTP {
		ands = append(ands, notPerm(orPerms(mapPerm(o.GetHosts(), hostPerm)), orPerms(mapPerm(o.GetNotHosts(), hostPerm)))...)
		method := func(v string) *rbacv3.Permission { return headerPerm(":method", exactMatcher(v)) }
		ands = append(ands, notPerm(orPerms(mapPerm(o.GetMethods(), method)), orPerms(mapPerm(o.GetNotMethods(), method)))...)
		ands = append(ands, notPerm(orPerms(mapPerm(o.GetPaths(), pathPerm)), orPerms(mapPerm(o.GetNotPaths(), pathPerm)))...)
	}
	return andPerms(ands), true
}

func (b *ruleBuilder) source(s *security.Source) *rbacv3.Principal {
	var ands []*rbacv3.Principal
	ands = append(ands, notID(orIDs(mapID(s.GetPrincipals(), principalID)), orIDs(mapID(s.GetNotPrincipals(), principalID)))...)
	ands = append(ands, notID(orIDs(mapID(s.GetNamespaces(), namespaceID)), orIDs(mapID(s.GetNotNamespaces(), namespaceID)))...)
	direct := func(v string) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(v)}}
	}
	remote := func(v string) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidr(v)}}
	}
	ands = append(ands, notID(orIDs(mapID(s.GetIpBlocks(), direct)), orIDs(mapID(s.GetNotIpBlocks(), direct)))...)
	ands = append(ands, notID(orIDs(mapID(s.GetRemoteIpBlocks(), remote)), orIDs(mapID(s.GetNotRemoteIpBlocks(), remote)))...)
	if !b.stripHTTP {
		rp := func(v string) *rbacv3.Principal { return metaID([]string{rbac.KeyAuthPrincipal}, v) }
		ands = append(ands, notID(orIDs(mapID(s.GetRequestPrincipals(), rp)), orIDs(mapID(s.GetNotRequestPrincipals(), rp)))...)
	}
	return andIDs(ands)
}

// portIn reports whether port is in vs; empty vs gives ifEmpty.
func portIn(port uint32, vs []string, ifEmpty bool) bool {
	if len(vs) == 0 {
		return ifEmpty
	}
	for _, v := range vs {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil && uint32(n) == port {
			return true
		}
	}
	return false
}

// wildcard is Istio's value syntax as a string matcher: "*" (any
// non-empty value), "prefix*", "*suffix" or exact; add is put before
// exact and prefix values.
func wildcard(v, add string, ignoreCase bool) *matcher.StringMatcher {
	var m *matcher.StringMatcher
	switch {
	case v == "*":
		m = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: ".+"}}}
	case strings.HasSuffix(v, "*"):
		m = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: add + strings.TrimSuffix(v, "*")}}
	case strings.HasPrefix(v, "*"):
		m = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}}
	default:
		m = exactMatcher(add + v)
	}
	m.IgnoreCase = ignoreCase
	return m
}

func principalID(v string) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
		PrincipalName: wildcard(v, "spiffe://", false),
	}}}
}

// namespaceID matches the namespace segment of the peer's SPIFFE ID.
func namespaceID(v string) *rbacv3.Principal {
	var m *matcher.StringMatcher
	switch {
	case v == "*":
		m = wildcard("*", "", false)
	case strings.HasSuffix(v, "*"):
		m = regexMatcher(`.*/ns/` + regexp.QuoteMeta(strings.TrimSuffix(v, "*")) + `[^/]*/.*`)
	case strings.HasPrefix(v, "*"):
		m = regexMatcher(`.*/ns/[^/]*` + regexp.QuoteMeta(strings.TrimPrefix(v, "*")) + `/.*`)
	default:
		m = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Contains{Contains: "/ns/" + v + "/"}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func regexMatcher(re string) *matcher.StringMatcher {
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: re}}}
}

func metaID(path []string, v string) *rbacv3.Principal {
	mm := &matcher.MetadataMatcher{Filter: rbac.MetadataFilter}
	for _, k := range path {
		mm.Path = append(mm.Path, &matcher.MetadataMatcher_PathSegment{Segment: &matcher.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	sm := wildcard(v, "", false)
	if path[0] == rbac.KeyAuthClaims {
		mm.Value = &matcher.ValueMatcher{MatchPattern: &matcher.ValueMatcher_ListMatch{ListMatch: &matcher.ListMatcher{
			MatchPattern: &matcher.ListMatcher_OneOf{OneOf: &matcher.ValueMatcher{MatchPattern: &matcher.ValueMatcher_StringMatch{StringMatch: sm}}},
		}}}
	} else {
		mm.Value = &matcher.ValueMatcher{MatchPattern: &matcher.ValueMatcher_StringMatch{StringMatch: sm}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: mm}}
}

func cidr(v string) *core.CidrRange {
	var p netip.Prefix
	if strings.Contains(v, "/") {
		p, _ = netip.ParsePrefix(v)
		p = p.Masked()
	} else if a, err := netip.ParseAddr(v); err == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return &core.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}
}

func destIPPerm(v string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr(v)}}
}

func headerPerm(name string, m *matcher.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m},
	}}}
}

// hostPerm matches the authority with or without a port, ignoring case.
func hostPerm(v string) *rbacv3.Permission {
	var re string
	switch {
	case v == "*":
		re = ".+"
	case strings.HasPrefix(v, "*"):
		re = ".*" + regexp.QuoteMeta(v[1:]) + "(:[0-9]+)?"
	case strings.HasSuffix(v, "*"):
		re = regexp.QuoteMeta(strings.TrimSuffix(v, "*")) + ".*"
	default:
		re = regexp.QuoteMeta(v) + "(:[0-9]+)?"
	}
	m := regexMatcher(re)
	m.IgnoreCase = true
	return headerPerm(":authority", m)
}

func pathPerm(v string) *rbacv3.Permission {
	m := wildcard(v, "", false)
	if v == "*" {
		m = regexMatcher(".*")
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcher.PathMatcher{Rule: &matcher.PathMatcher_Path{Path: m}}}}
}

func mapPerm(vs []string, f func(string) *rbacv3.Permission) []*rbacv3.Permission {
	var out []*rbacv3.Permission
	for _, v := range vs {
		out = append(out, f(v))
	}
	return out
}

func mapID(vs []string, f func(string) *rbacv3.Principal) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	for _, v := range vs {
		out = append(out, f(v))
	}
	return out
}

// orPerms is nil for no values, the value itself for one.
func orPerms(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func andPerms(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// notPerm returns the conditions "matches yes" and "does not match no",
// leaving out the absent ones.
func notPerm(yes, no *rbacv3.Permission) []*rbacv3.Permission {
	var out []*rbacv3.Permission
	if yes != nil {
		out = append(out, yes)
	}
	if no != nil {
		out = append(out, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: no}})
	}
	return out
}

func orIDs(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func andIDs(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func notID(yes, no *rbacv3.Principal) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	if yes != nil {
		out = append(out, yes)
	}
	if no != nil {
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: no}})
	}
	return out
}

// inboundSecurity is what an inbound listener's chain runs before the
// router or tcp_proxy: request authentication (JWT), then authorization.
// A nil *inboundSecurity adds nothing.
type inboundSecurity struct {
	authz *authzSet
	jwt   *jwtSet
}

// inboundSecurityFor is what a sidecar's inbound listeners run; nil for a
// sidecar without an instance.
func (t *Translator) inboundSecurityFor(inst *model.Instance) *inboundSecurity {
	if inst == nil {
		return nil
	}
	return t.securityFor(inst.Namespace, inst.Labels)
}

// securityFor is the request authentication and authorization of the
// workload with namespace ns and labels: a sidecar's instance, or a
// gateway proxy (whose listeners run it as the sidecar's inbound ones do).
func (t *Translator) securityFor(ns string, labels map[string]string) *inboundSecurity {
	s := &inboundSecurity{authz: t.authzFor(ns, labels), jwt: t.jwtFor(ns, labels)}
	if s.authz == nil && s.jwt == nil {
		return nil
	}
	return s
}

// httpFilters are the filters of an inbound HTTP port, before the router.
func (s *inboundSecurity) httpFilters(port uint32) []*hcm.HttpFilter {
	if s == nil {
		return nil
	}
	var out []*hcm.HttpFilter
	if f := s.jwt.httpFilter(); f != nil {
		out = append(out, f)
	}
	return append(out, s.authz.httpFilters(port)...)
}

// networkFilters are the filters of an inbound TCP port, before the
// tcp_proxy.
func (s *inboundSecurity) networkFilters(port uint32) []*listener.Filter {
	if s == nil {
		return nil
	}
	return s.authz.networkFilters(port)
}
