// Package authzcheck answers "would this call be allowed?" for
// `weft authz check`: it translates the destination instance's inbound
// listener exactly as the control plane sends it to the sidecar, parses it
// with the sidecar's own parser (proxyconfig) and evaluates the compiled
// RBAC filters (package rbac) the sidecar would run. The control plane and
// the proxy therefore cannot disagree about a decision.
package authzcheck

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/jwtauth"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/rbac"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// Request is the call to check.
type Request struct {
	// Principal is the source's SPIFFE ID ("" for a source without a
	// sidecar, which reaches the destination in plaintext).
	Principal string
	// SourceIP is the source's address; 127.0.0.1 when unset.
	SourceIP netip.Addr
	// Port is the destination's service port; 0 picks its first port.
	Port uint32
	// Method, Path and Host of an HTTP request (defaults GET, /, the
	// service's host name); Header its headers.
	Method, Path, Host string
	Header             http.Header
	// Auth simulates a request with a valid JWT (request principal
	// "<iss>/<sub>", audiences, presenter, claims); nil for a request
	// without one. The token is taken as validly signed and unexpired;
	// whether a RequestAuthentication of the destination accepts its
	// issuer and audiences is checked as the sidecar would.
	Auth *rbac.Auth
}

// Result is the decision for one destination instance.
type Result struct {
	// Instance and Workload decided about.
	Instance string `json:"instance"`
	Workload string `json:"workload"`
	// Port is the service port and Protocol "http" or "tcp".
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
	// Decision is "ALLOW" or "DENY".
	Decision string `json:"decision"`
	// Action of the deciding policy ("ALLOW", "DENY"); "" when none decided.
	Action string `json:"action,omitempty"`
	// Policy ("<namespace>/<name>") and Rule (its index) that decided; ""
	// when none did.
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Audit names the AUDIT policy that matched, if any.
	Audit string `json:"audit,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
	// Note says how request authentication was simulated where it
	// matters: the call was evaluated as unauthenticated (no JWT) while
	// a deciding rule matches on it, or the simulated token would not be
	// validated.
	Note string `json:"note,omitempty"`
}

// Check decides req against the inbound listener of inst for req.Port.
func Check(snap *model.Snapshot, inst *model.Instance, req Request) (Result, error) {
	res := Result{Instance: inst.Name, Workload: inst.Workload}
	var port *model.InstancePort
	for i := range inst.Ports {
		if req.Port == 0 || inst.Ports[i].Number == req.Port {
			port = &inst.Ports[i]
			break
		}
	}
	if port == nil {
		return res, fmt.Errorf("workload %s has no port %d", inst.Workload, req.Port)
	}
	res.Port, res.Protocol = port.Number, "tcp"
	if port.Protocol.IsHTTP() {
		res.Protocol = "http"
	}
	p := &xdstranslate.Proxy{
		ID:   xdsmeta.NodeID("sidecar", inst.Address, inst.Name, inst.Namespace),
		Type: xdstranslate.Sidecar, Namespace: inst.Namespace, Name: inst.Name, Workload: inst.Workload,
		Labels: inst.Labels, ServiceAccount: inst.ServiceAccount, Instance: inst,
	}
	xr, err := xdstranslate.Translate(snap, p)
	if err != nil {
		return res, fmt.Errorf("translating the config of %s: %w", inst.Name, err)
	}
	name := xdsmeta.InboundListenerName(port.Number)
	var chain *proxyconfig.FilterChain
	for _, l := range xr.Listeners {
		if l.GetName() != name {
			continue
		}
		pl, err := proxyconfig.ParseListener(l)
		if err != nil {
			return res, fmt.Errorf("listener %s of %s: %w", name, inst.Name, err)
		}
		want := proxyconfig.TransportProtocolRaw
		if req.Principal != "" {
			want = proxyconfig.TransportProtocolTLS
		}
		for _, fc := range pl.FilterChains {
			if fc.Match.TransportProtocol == want || fc.Match.TransportProtocol == "" {
				chain = fc
				break
			}
		}
	}
	if chain == nil {
		res.Decision = "DENY"
		if req.Principal == "" {
			res.Reason = "the port accepts only mTLS (PeerAuthentication STRICT) and the source has no sidecar"
		} else {
			res.Reason = "the port accepts no mTLS (PeerAuthentication DISABLE)"
		}
		return res, nil
	}
	in := &rbac.Input{Principal: req.Principal, SourceIP: req.SourceIP, DestPort: port.InboundPort}
	if !in.SourceIP.IsValid() {
		in.SourceIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	in.RemoteIP = in.SourceIP
	in.DestIP, _ = netip.ParseAddr(inst.Address)
	var rc *rbac.Chain
	note := ""
	if chain.HTTP != nil {
		rc = chain.HTTP.RBAC
		in.HTTP = true
		in.Method, in.Path, in.Host, in.Header = req.Method, req.Path, req.Host, req.Header
		if in.Method == "" {
			in.Method = http.MethodGet
		}
		if in.Path == "" {
			in.Path = "/"
		}
		if in.Header == nil {
			in.Header = http.Header{}
		}
		if refused := requiredToken(chain.HTTP.JWT, req.Auth); refused != "" {
			res.Decision, res.Reason = "DENY", refused
			return res, nil
		}
		if req.Auth != nil {
			var refused string
			in.Auth, note, refused = authenticate(chain.HTTP.JWT, req.Auth)
			if refused != "" {
				res.Decision, res.Reason, res.Note = "DENY", refused, note
				return res, nil
			}
		}
	} else {
		rc = chain.RBAC
		if req.Auth != nil {
			note = "a TCP port: no token is read, the call is evaluated as unauthenticated"
		}
	}
	d := rc.Evaluate(in)
	res = Explain(res, d)
	if in.Auth == nil && note == "" {
		note = unauthenticatedNote(rc, d)
	}
	res.Note = note
	return res, nil
}

// authenticate is the sidecar's JWT filter for a simulated token: the
// token reaches authorization only when a RequestAuthentication applies
// and one of its providers accepts the issuer and audiences. refused is
// the 401 reason when the sidecar would reject the token.
func authenticate(j *proxyconfig.JWTAuthn, a *rbac.Auth) (auth *rbac.Auth, note, refused string) {
	if j == nil || len(j.Providers) == 0 {
		return nil, "no RequestAuthentication applies to this workload: its sidecar does not read the token, so the call is evaluated as unauthenticated (no JWT)", ""
	}
	iss := issuerAmong(j.Providers, a)
	var issuers []string
	for _, p := range j.Providers {
		issuers = append(issuers, p.Issuer)
		if p.Issuer != iss {
			continue
		}
		if !audiencesAllowed(p, a) {
			return nil, fmt.Sprintf("the token's audiences %v include none of %v (RequestAuthentication %s)", a.Audiences, p.Audiences, p.Name),
				"the sidecar rejects the token: 401 Audiences in Jwt are not allowed"
		}
		return a, fmt.Sprintf("evaluated with a valid token from issuer %s (RequestAuthentication %s), taken as validly signed and unexpired", iss, p.Name), ""
	}
	slices.Sort(issuers)
	return nil, fmt.Sprintf("no RequestAuthentication of this workload accepts issuer %q (it accepts %s)", iss, strings.Join(issuers, ", ")),
		"the sidecar rejects the token: 401 Jwt issuer is not configured"
}

// requiredToken is the sidecar's check of tokens whose presence is
// REQUIRED, for a simulated token a (nil: none): the 401 reason when the
// call lacks one. A simulated request carries one token, so it satisfies
// a required provider only by that provider's issuer.
func requiredToken(j *proxyconfig.JWTAuthn, a *rbac.Auth) string {
	if j == nil {
		return ""
	}
	iss := ""
	if a != nil {
		iss = issuerAmong(j.Providers, a)
	}
	for _, p := range j.Required {
		if a == nil || iss != p.Issuer {
			return fmt.Sprintf("the sidecar rejects the call: 401 Jwt is missing (RequestAuthentication %s requires a token from issuer %s)", p.Name, p.Issuer)
		}
		if !audiencesAllowed(p, a) {
			return fmt.Sprintf("the sidecar rejects the call: 401 Audiences in Jwt are not allowed (RequestAuthentication %s requires a token for %v)", p.Name, p.Audiences)
		}
	}
	return ""
}

// issuerAmong is the issuer of a simulated token as the sidecar's
// providers read it: the longest of their issuers that its principal
// "<issuer>/<subject>" starts with (a subject may hold "/" too), else the
// principal up to its last "/".
func issuerAmong(providers []*jwtauth.Provider, a *rbac.Auth) string {
	best := ""
	for _, p := range providers {
		if strings.HasPrefix(a.Principal, p.Issuer+"/") && len(p.Issuer) > len(best) {
			best = p.Issuer
		}
	}
	if best != "" {
		return best
	}
	if i := strings.LastIndex(a.Principal, "/"); i >= 0 {
		return a.Principal[:i]
	}
	return a.Principal
}

// audiencesAllowed reports whether p accepts a's audiences.
func audiencesAllowed(p *jwtauth.Provider, a *rbac.Auth) bool {
	return len(p.Audiences) == 0 || slices.ContainsFunc(a.Audiences, func(s string) bool { return slices.Contains(p.Audiences, s) })
}

// unauthenticatedNote says that a call without a token was evaluated as
// unauthenticated, when a rule that decided matches on request
// authentication: the DENY rule that matched, or else every enforcing
// rule, each of which took part by not matching.
func unauthenticatedNote(c *rbac.Chain, d rbac.Decision) string {
	if c == nil || !d.Decided {
		return ""
	}
	var names []string
	add := func(p *rbac.Policy) {
		if !p.UsesAuth {
			return
		}
		if ns, name, rule, ok := rbac.PolicyOrigin(p.Name); ok {
			names = append(names, fmt.Sprintf("%s/%s rule %s", ns, name, rule))
		} else {
			names = append(names, p.Name)
		}
	}
	for _, e := range c.Engines {
		if e.Shadow || e.Action == rbac.Log {
			continue
		}
		for _, p := range e.Policies {
			if !d.Allowed && d.Action == rbac.Deny && d.Policy != "" && p.Name != d.Policy {
				continue
			}
			add(p)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("evaluated as unauthenticated (no JWT), and %s match(es) on request authentication: give --request-principal ISS/SUB (and --claim NAME=VALUE) to check a call with a token",
		strings.Join(names, ", "))
}

// Explain fills res from a decision.
func Explain(res Result, d rbac.Decision) Result {
	res.Decision = "ALLOW"
	if !d.Allowed {
		res.Decision = "DENY"
	}
	if d.Audit != "" {
		if ns, name, rule, ok := rbac.PolicyOrigin(d.Audit); ok {
			res.Audit = fmt.Sprintf("%s/%s rule %s", ns, name, rule)
		} else {
			res.Audit = d.Audit
		}
	}
	if d.Policy != "" {
		res.Action = d.Action.String()
		if ns, name, rule, ok := rbac.PolicyOrigin(d.Policy); ok {
			res.Policy, res.Rule = ns+"/"+name, rule
		} else {
			res.Policy = d.Policy
		}
	}
	switch {
	case !d.Decided:
		res.Reason = "no policy applies: allowed"
	case !d.Allowed && d.Action == rbac.Deny:
		res.Reason = fmt.Sprintf("denied by DENY policy %s, rule %s", res.Policy, res.Rule)
	case !d.Allowed:
		res.Action = "ALLOW"
		res.Reason = "denied: ALLOW policies apply to this workload and no rule of theirs matched"
	case d.Policy != "":
		res.Reason = fmt.Sprintf("allowed by ALLOW policy %s, rule %s", res.Policy, res.Rule)
	default:
		res.Reason = "allowed: no DENY policy matched and no ALLOW policy applies"
	}
	return res
}

// ParseToken builds the simulated token of `weft authz check`: principal
// is "<iss>/<sub>" (split at the last "/", since issuers are often URLs);
// each claim is "name=value", with a nested claim named as in
// AuthorizationPolicy conditions ("realm[roles]=admin", optionally
// prefixed "request.auth.claims"). A name given more than once makes a
// list. aud gives the audiences, azp the presenter; iss and sub come from
// principal and may not be given as claims.
func ParseToken(principal string, claims []string) (*rbac.Auth, error) {
	if principal == "" {
		if len(claims) > 0 {
			return nil, fmt.Errorf("--claim needs --request-principal ISS/SUB: the token's issuer picks the RequestAuthentication that validates it")
		}
		return nil, nil
	}
	i := strings.LastIndex(principal, "/")
	if i <= 0 || i == len(principal)-1 {
		return nil, fmt.Errorf("request principal %q: want ISS/SUB, the token's issuer and subject (e.g. https://idp.example.com/alice)", principal)
	}
	iss, sub := principal[:i], principal[i+1:]
	a := &rbac.Auth{Principal: principal, Claims: map[string]any{"iss": iss, "sub": sub}}
	for _, c := range claims {
		name, value, ok := strings.Cut(c, "=")
		path, perr := claimPath(strings.TrimSpace(name))
		if !ok || perr != nil {
			return nil, fmt.Errorf("claim %q: want NAME=VALUE, NAME a claim as in request.auth.claims[NAME] (nested: a[b])", c)
		}
		if len(path) == 1 && (path[0] == "iss" || path[0] == "sub") {
			return nil, fmt.Errorf("claim %q: the issuer and subject come from --request-principal ISS/SUB", c)
		}
		m := a.Claims
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		last := path[len(path)-1]
		switch old := m[last].(type) {
		case nil:
			m[last] = value
		case string:
			m[last] = []any{old, value}
		case []any:
			m[last] = append(old, value)
		default:
			return nil, fmt.Errorf("claim %q: %s is also given as an object", c, last)
		}
		if len(path) == 1 {
			switch last {
			case "aud":
				a.Audiences = append(a.Audiences, value)
			case "azp":
				a.Presenter = value
			}
		}
	}
	return a, nil
}

// claimPath splits "a", "a[b][c]" or "request.auth.claims[a][b]" into
// its keys.
func claimPath(name string) ([]string, error) {
	if rest, ok := strings.CutPrefix(name, "request.auth.claims"); ok {
		if !strings.HasPrefix(rest, "[") {
			return nil, fmt.Errorf("no claim name")
		}
		name = rest
	}
	var out []string
	head, rest, _ := strings.Cut(name, "[")
	if head != "" {
		out = append(out, head)
	}
	if rest != "" {
		rest = "[" + rest
	}
	for rest != "" {
		if !strings.HasPrefix(rest, "[") {
			return nil, fmt.Errorf("bad claim name")
		}
		end := strings.Index(rest, "]")
		if end < 2 {
			return nil, fmt.Errorf("bad claim name")
		}
		out = append(out, rest[1:end])
		rest = rest[end+1:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no claim name")
	}
	return out, nil
}
