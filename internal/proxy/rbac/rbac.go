// Package rbac compiles Envoy's RBAC filter configs (envoy.config.rbac.v3,
// as carried by envoy.filters.http.rbac and envoy.filters.network.rbac)
// into matchers and evaluates requests and connections against them.
//
// It is the one place where Weft decides authorization: the sidecar runs
// it on every inbound request and connection, and the control plane runs
// it for `weft authz check` on the filters it would send, so the two
// cannot disagree. It imports no Istio or Kubernetes types.
//
// What is understood (anything else is an error, so the proxy NACKs it):
//   - Principals: any, and_ids, or_ids, not_id, authenticated.principal_name
//     (the SPIFFE ID of the verified peer certificate), direct_remote_ip,
//     remote_ip, source_ip, header, url_path, metadata (request
//     authentication, filter MetadataFilter).
//   - Permissions: any, and_rules, or_rules, not_rule, header, url_path,
//     destination_ip, destination_port, destination_port_range, metadata.
//   - String matchers exact, prefix, suffix, contains, safe_regex (RE2,
//     whole value), with ignore_case.
//
// Evaluation follows Envoy: a filter whose action is DENY denies what one
// of its policies matches; ALLOW denies what none matches; LOG and shadow
// rules never deny and only report what matched. Filters run in order and
// the first denial decides.
package rbac

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// Names of the filters and their configs.
const (
	HTTPFilterName    = "envoy.filters.http.rbac"
	NetworkFilterName = "envoy.filters.network.rbac"
	HTTPTypeURL       = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
	NetworkTypeURL    = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
)

// Request authentication metadata: what the JWT filter found about a
// request, under MetadataFilter, matched by metadata principals whose path
// starts with one of these keys.
const (
	MetadataFilter    = "istio_authn"
	KeyAuthPrincipal  = "request.auth.principal"
	KeyAuthAudiences  = "request.auth.audiences"
	KeyAuthPresenter  = "request.auth.presenter"
	KeyAuthClaims     = "request.auth.claims"
	DeniedBody        = "RBAC: access denied"
	ResponseFlagRBAC  = "RBAC"
	defaultPolicyText = "no policy matched"
)

// Action of a filter.
type Action int

// Actions.
const (
	Allow Action = iota
	Deny
	Log
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	default:
		return "AUDIT"
	}
}

// Auth is what request authentication (JWT) established about a request.
type Auth struct {
	// Principal is "<iss>/<sub>" of the validated token.
	Principal string
	// Audiences are the token's aud values.
	Audiences []string
	// Presenter is the azp claim.
	Presenter string
	// Claims are the token's claims as decoded from JSON.
	Claims map[string]any
}

// Input is one request or connection. HTTP fields are empty for TCP.
type Input struct {
	// Principal is the SPIFFE ID of the peer's verified certificate; ""
	// for plaintext. Never taken from a header.
	Principal string
	// SourceIP is the address of the direct peer; RemoteIP is the original
	// client's (the same in a sidecar). DestIP is the local address.
	SourceIP, RemoteIP, DestIP netip.Addr
	// DestPort is the port the traffic was addressed to.
	DestPort uint32
	// HTTP is set for requests; Method, Host (authority), Path (without
	// query) and Header are theirs.
	HTTP   bool
	Method string
	Host   string
	Path   string
	Header http.Header
	// Auth is set when the request carried a valid token.
	Auth *Auth
}

// Policy is one compiled RBAC policy.
type Policy struct {
	// Name is the policy's key in the RBAC config
	// ("ns[default]-policy[only-productpage]-rule[0]").
	Name string
	// UsesAuth is set when the policy matches on request authentication
	// (metadata of MetadataFilter: requestPrincipals, request.auth.*), so
	// whether a request carried a valid token can change its outcome.
	UsesAuth    bool
	permissions []node // any matches
	principals  []node // any matches
}

func (p *Policy) matches(in *Input) bool {
	return anyMatch(p.permissions, in) && anyMatch(p.principals, in)
}

// Engine is one compiled RBAC filter.
type Engine struct {
	// Action is what a match means; Log for shadow rules.
	Action Action
	// Policies in name order.
	Policies []*Policy
	// Shadow engines only report.
	Shadow bool
}

// Chain is the RBAC filters of one HTTP connection manager or network
// filter chain, in order. A nil Chain allows everything.
type Chain struct {
	Engines []*Engine
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allowed is false when a filter denies.
	Allowed bool
	// Action is the action of the deciding filter (Deny or Allow); Allow
	// with Policy "" when no filter had anything to say.
	Action Action
	// Policy is the policy that matched: for a denial by a DENY filter,
	// the matching policy; for an ALLOW filter, the policy that allowed
	// (when allowed) or "" (when nothing matched).
	Policy string
	// Decided is set when some filter (DENY or ALLOW) took part.
	Decided bool
	// Audit is the first LOG or shadow policy that matched, "" if none.
	Audit string
}

// Evaluate runs the chain. It does not allocate.
func (c *Chain) Evaluate(in *Input) Decision {
	d := Decision{Allowed: true, Action: Allow}
	if c == nil {
		return d
	}
	for _, e := range c.Engines {
		m := e.firstMatch(in)
		if e.Shadow || e.Action == Log {
			if m != nil && d.Audit == "" {
				d.Audit = m.Name
			}
			continue
		}
		switch e.Action {
		case Deny:
			if m != nil {
				return Decision{Allowed: false, Action: Deny, Policy: m.Name, Decided: true, Audit: d.Audit}
			}
			if !d.Decided {
				d.Decided = true
				d.Action = Deny
			}
		case Allow:
			if m == nil {
				return Decision{Allowed: false, Action: Allow, Decided: true, Audit: d.Audit}
			}
			d.Decided, d.Action, d.Policy = true, Allow, m.Name
		}
	}
	return d
}

// HasEnforcing reports whether the chain can deny.
func (c *Chain) HasEnforcing() bool {
	if c == nil {
		return false
	}
	for _, e := range c.Engines {
		if !e.Shadow && e.Action != Log {
			return true
		}
	}
	return false
}

func (e *Engine) firstMatch(in *Input) *Policy {
	for _, p := range e.Policies {
		if p.matches(in) {
			return p
		}
	}
	return nil
}

// CompileHTTP compiles an envoy.filters.http.rbac config into engines
// (rules, then shadow rules).
func CompileHTTP(cfg *httprbac.RBAC) ([]*Engine, error) {
	if cfg.GetMatcher() != nil || cfg.GetShadowMatcher() != nil {
		return nil, errors.New("matcher and shadow_matcher are not supported, use rules")
	}
	return compilePair(cfg.GetRules(), cfg.GetShadowRules())
}

// CompileNetwork compiles an envoy.filters.network.rbac config.
func CompileNetwork(cfg *netrbac.RBAC) ([]*Engine, error) {
	if cfg.GetMatcher() != nil || cfg.GetShadowMatcher() != nil {
		return nil, errors.New("matcher and shadow_matcher are not supported, use rules")
	}
	return compilePair(cfg.GetRules(), cfg.GetShadowRules())
}

func compilePair(rules, shadow *rbacv3.RBAC) ([]*Engine, error) {
	var out []*Engine
	if rules != nil {
		e, err := Compile(rules)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		out = append(out, e)
	}
	if shadow != nil {
		e, err := Compile(shadow)
		if err != nil {
			return nil, fmt.Errorf("shadow_rules: %w", err)
		}
		e.Shadow = true
		out = append(out, e)
	}
	return out, nil
}

// Compile compiles one RBAC rule set.
func Compile(r *rbacv3.RBAC) (*Engine, error) {
	e := &Engine{}
	switch r.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.Action = Allow
	case rbacv3.RBAC_DENY:
		e.Action = Deny
	case rbacv3.RBAC_LOG:
		e.Action = Log
	default:
		return nil, fmt.Errorf("action %v is not supported", r.GetAction())
	}
	if r.GetAuditLoggingOptions() != nil {
		return nil, errors.New("audit_logging_options are not supported")
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for n := range r.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.GetPolicies()[n]
		if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
			return nil, fmt.Errorf("policy %q: CEL conditions are not supported", n)
		}
		cp := &Policy{Name: n, UsesAuth: policyUsesAuth(p)}
		for i, perm := range p.GetPermissions() {
			m, err := compilePermission(perm)
			if err != nil {
				return nil, fmt.Errorf("policy %q: permissions[%d]: %w", n, i, err)
			}
			cp.permissions = append(cp.permissions, m)
		}
		for i, pr := range p.GetPrincipals() {
			m, err := compilePrincipal(pr)
			if err != nil {
				return nil, fmt.Errorf("policy %q: principals[%d]: %w", n, i, err)
			}
			cp.principals = append(cp.principals, m)
		}
		if len(cp.permissions) == 0 || len(cp.principals) == 0 {
			return nil, fmt.Errorf("policy %q: needs at least one permission and one principal", n)
		}
		e.Policies = append(e.Policies, cp)
	}
	return e, nil
}

// policyUsesAuth reports whether a policy has a metadata matcher.
func policyUsesAuth(p *rbacv3.Policy) bool {
	var perm func(*rbacv3.Permission) bool
	var id func(*rbacv3.Principal) bool
	perm = func(x *rbacv3.Permission) bool {
		switch r := x.GetRule().(type) {
		case *rbacv3.Permission_Metadata:
			return true
		case *rbacv3.Permission_NotRule:
			return perm(r.NotRule)
		case *rbacv3.Permission_AndRules:
			return slices.ContainsFunc(r.AndRules.GetRules(), perm)
		case *rbacv3.Permission_OrRules:
			return slices.ContainsFunc(r.OrRules.GetRules(), perm)
		}
		return false
	}
	id = func(x *rbacv3.Principal) bool {
		switch r := x.GetIdentifier().(type) {
		case *rbacv3.Principal_Metadata:
			return true
		case *rbacv3.Principal_NotId:
			return id(r.NotId)
		case *rbacv3.Principal_AndIds:
			return slices.ContainsFunc(r.AndIds.GetIds(), id)
		case *rbacv3.Principal_OrIds:
			return slices.ContainsFunc(r.OrIds.GetIds(), id)
		}
		return false
	}
	return slices.ContainsFunc(p.GetPermissions(), perm) || slices.ContainsFunc(p.GetPrincipals(), id)
}

// PolicyOrigin splits a policy name made by Weft's translation,
// "ns[<ns>]-policy[<name>]-rule[<i>]", into its parts; ok is false for
// other names.
func PolicyOrigin(name string) (namespace, policy, rule string, ok bool) {
	rest, ok := strings.CutPrefix(name, "ns[")
	if !ok {
		return "", "", "", false
	}
	namespace, rest, ok = strings.Cut(rest, "]-policy[")
	if !ok {
		return "", "", "", false
	}
	i := strings.LastIndex(rest, "]-rule[")
	if i < 0 || !strings.HasSuffix(rest, "]") {
		return "", "", "", false
	}
	return namespace, rest[:i], rest[i+len("]-rule[") : len(rest)-1], true
}
