package validate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// AuthzConditionKeys are the keys of an AuthorizationPolicy's when
// conditions that Weft supports; request.headers[...] and
// request.auth.claims[...] take a name in brackets.
var AuthzConditionKeys = []string{
	"request.headers[]", "source.ip", "remote.ip", "source.namespace", "source.principal",
	"request.auth.principal", "request.auth.audiences", "request.auth.presenter",
	"request.auth.claims[]", "destination.ip", "destination.port",
}

// checkAuthorizationPolicy checks an AuthorizationPolicy: actions ALLOW,
// DENY and AUDIT (CUSTOM is out of scope for now), well-formed IP blocks,
// ports, paths and condition keys, no empty from/to entries (Istio refuses
// them too), and it warns where a rule with HTTP-only fields selects a
// workload with a TCP port, where that rule never matches (ALLOW, AUDIT)
// or matches without those fields (DENY).
func (b *build) checkAuthorizationPolicy(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*security.AuthorizationPolicy)).(*security.AuthorizationPolicy)
	switch spec.GetAction() {
	case security.AuthorizationPolicy_ALLOW, security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_AUDIT:
	case security.AuthorizationPolicy_CUSTOM:
		rep.errorf("spec.action", "action CUSTOM (external authorization) is out of scope for now; use ALLOW, DENY or AUDIT")
	default:
		rep.errorf("spec.action", "unknown action %v; use ALLOW, DENY or AUDIT", spec.GetAction())
	}
	if spec.GetProvider() != nil {
		rep.errorf("spec.provider", "provider is for action CUSTOM, which is out of scope for now")
	}
	if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
		rep.errorf("spec.targetRef", "targetRef/targetRefs (Gateway API attachment) are not supported; select workloads with spec.selector.matchLabels")
	}
	httpOnly := map[int][]string{}
	for i, rule := range spec.GetRules() {
		at := fmt.Sprintf("spec.rules[%d]", i)
		for j, f := range rule.GetFrom() {
			fat := fmt.Sprintf("%s.from[%d].source", at, j)
			s := f.GetSource()
			if s == nil || proto.Equal(s, &security.Source{}) {
				rep.errorf(fat, "a from entry needs a source with at least one field; remove it to match any source")
				continue
			}
			if len(s.GetServiceAccounts()) > 0 || len(s.GetNotServiceAccounts()) > 0 || len(s.GetTrustDomains()) > 0 || len(s.GetNotTrustDomains()) > 0 {
				rep.errorf(fat, "serviceAccounts and trustDomains are not supported; use principals (\"<trust-domain>/ns/<ns>/sa/<sa>\")")
			}
			for _, l := range []struct {
				name string
				v    []string
			}{{"ipBlocks", s.GetIpBlocks()}, {"notIpBlocks", s.GetNotIpBlocks()}, {"remoteIpBlocks", s.GetRemoteIpBlocks()}, {"notRemoteIpBlocks", s.GetNotRemoteIpBlocks()}} {
				for k, v := range l.v {
					if _, err := ParseIPBlock(v); err != nil {
						rep.errorf(fmt.Sprintf("%s.%s[%d]", fat, l.name, k), "%q is not an IP address or CIDR block", v)
					}
				}
			}
			checkWildcards(rep, fat+".principals", s.GetPrincipals())
			checkWildcards(rep, fat+".notPrincipals", s.GetNotPrincipals())
			checkWildcards(rep, fat+".namespaces", s.GetNamespaces())
			checkWildcards(rep, fat+".notNamespaces", s.GetNotNamespaces())
			checkWildcards(rep, fat+".requestPrincipals", s.GetRequestPrincipals())
			checkWildcards(rep, fat+".notRequestPrincipals", s.GetNotRequestPrincipals())
			if len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals()) > 0 {
				httpOnly[i] = append(httpOnly[i], "requestPrincipals")
			}
		}
		for j, t := range rule.GetTo() {
			tat := fmt.Sprintf("%s.to[%d].operation", at, j)
			o := t.GetOperation()
			if o == nil || proto.Equal(o, &security.Operation{}) {
				rep.errorf(tat, "a to entry needs an operation with at least one field; remove it to match any operation")
				continue
			}
			for k, p := range append(append([]string(nil), o.GetPorts()...), o.GetNotPorts()...) {
				if _, err := ParsePort(p); err != nil {
					rep.errorf(fmt.Sprintf("%s.ports[%d]", tat, k), "port %q: want a number from 1 to 65535", p)
				}
			}
			for k, p := range append(append([]string(nil), o.GetPaths()...), o.GetNotPaths()...) {
				if p == "" || (p != "*" && strings.Contains(strings.Trim(p, "*"), "*")) || strings.HasPrefix(p, "*") && strings.HasSuffix(p, "*") && p != "*" {
					rep.errorf(fmt.Sprintf("%s.paths[%d]", tat, k), "path %q: use an exact path, a prefix ending in *, a suffix starting with *, or *", p)
				}
			}
			checkWildcards(rep, tat+".hosts", o.GetHosts())
			checkWildcards(rep, tat+".methods", o.GetMethods())
			if n := len(o.GetHosts()) + len(o.GetNotHosts()); n > 0 {
				httpOnly[i] = append(httpOnly[i], "hosts")
			}
			if n := len(o.GetMethods()) + len(o.GetNotMethods()); n > 0 {
				httpOnly[i] = append(httpOnly[i], "methods")
			}
			if n := len(o.GetPaths()) + len(o.GetNotPaths()); n > 0 {
				httpOnly[i] = append(httpOnly[i], "paths")
			}
		}
		for j, c := range rule.GetWhen() {
			cat := fmt.Sprintf("%s.when[%d]", at, j)
			key := c.GetKey()
			if !conditionKeyOK(key) {
				rep.errorf(cat+".key", "condition key %q is not supported; Weft supports %s", key, strings.Join(AuthzConditionKeys, ", "))
				continue
			}
			if len(c.GetValues())+len(c.GetNotValues()) == 0 {
				rep.errorf(cat, "condition %q needs values or notValues", key)
			}
			for k, v := range append(append([]string(nil), c.GetValues()...), c.GetNotValues()...) {
				switch key {
				case "source.ip", "remote.ip", "destination.ip":
					if _, err := ParseIPBlock(v); err != nil {
						rep.errorf(fmt.Sprintf("%s.values[%d]", cat, k), "%q is not an IP address or CIDR block", v)
					}
				case "destination.port":
					if _, err := ParsePort(v); err != nil {
						rep.errorf(fmt.Sprintf("%s.values[%d]", cat, k), "port %q: want a number from 1 to 65535", v)
					}
				}
			}
			if strings.HasPrefix(key, "request.") {
				httpOnly[i] = append(httpOnly[i], key)
			}
		}
	}
	b.warnTCP(r, spec, httpOnly, rep)
	return func() {
		b.snap.AuthorizationPolicies = append(b.snap.AuthorizationPolicies, &model.AuthorizationPolicy{Meta: r.Meta, Spec: spec})
	}
}

// warnTCP warns about rules with HTTP-only fields that apply to a TCP
// port of a workload the policy selects (in its namespace; root namespace
// policies are not checked here).
func (b *build) warnTCP(r *config.Resource, spec *security.AuthorizationPolicy, httpOnly map[int][]string, rep *reporter) {
	if len(httpOnly) == 0 {
		return
	}
	sel := spec.GetSelector().GetMatchLabels()
	for _, inst := range b.instances {
		if inst == nil || inst.Namespace != r.Namespace || (len(sel) > 0 && !model.LabelsMatch(sel, inst.Labels)) {
			continue
		}
		for _, p := range inst.Ports {
			if p.Protocol.IsHTTP() {
				continue
			}
			for i := range spec.GetRules() {
				fields := httpOnly[i]
				if len(fields) == 0 {
					continue
				}
				effect := "never matches there"
				if spec.GetAction() == security.AuthorizationPolicy_DENY {
					effect = "matches there without them (denying more)"
				}
				rep.warnf(fmt.Sprintf("spec.rules[%d]", i), "rule uses HTTP-only fields (%s) and applies to TCP port %d of workload %s: the rule %s, as in Istio", strings.Join(fields, ", "), p.Number, inst.Workload, effect)
			}
			return
		}
	}
}

func checkWildcards(rep *reporter, at string, vs []string) {
	for i, v := range vs {
		if v == "" {
			rep.errorf(fmt.Sprintf("%s[%d]", at, i), "empty value")
			continue
		}
		if v != "*" && strings.Contains(strings.Trim(v, "*"), "*") || (len(v) > 1 && strings.HasPrefix(v, "*") && strings.HasSuffix(v, "*")) {
			rep.errorf(fmt.Sprintf("%s[%d]", at, i), "%q: * may only start or end a value (prefix*, *suffix) or stand alone", v)
		}
	}
}

func conditionKeyOK(key string) bool {
	for _, k := range AuthzConditionKeys {
		if name, ok := strings.CutSuffix(k, "[]"); ok {
			if rest, ok := strings.CutPrefix(key, name+"["); ok && strings.HasSuffix(rest, "]") && len(rest) > 1 {
				return true
			}
			continue
		}
		if key == k {
			return true
		}
	}
	return false
}

// ParseIPBlock parses an AuthorizationPolicy IP block: an address or a
// CIDR block.
func ParseIPBlock(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePort parses a port of an AuthorizationPolicy.
func ParsePort(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("port %q out of range", v)
	}
	return uint32(n), nil
}
