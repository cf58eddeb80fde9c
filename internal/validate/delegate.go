package validate

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
)

// VirtualService delegation, as in Istio: a route of a VirtualService with
// hosts (the root) may name, instead of an action, a VirtualService
// without hosts (the delegate, checked in a stage of its own before the
// roots) whose http routes take its place. Each delegate route is merged
// with the root route: its matches must each fall within one of the root
// route's (a URI prefix or exact path under the root's prefix, the same
// headers, port, source labels...), and take what they leave unset from
// it; its unset policies (timeout, retries, fault, rewrite, mirror, CORS,
// headers) are the root route's. A delegate route whose matches fall
// within none of the root route's is left out, with a warning. The model
// holds the merged routes in the root; delegates route nothing of their
// own. One level only: a delegate cannot delegate.

// checkHTTPRoute checks one http route of a VirtualService (root or
// delegate), resolving its destinations' hosts in place.
func (b *build) checkHTTPRoute(rep *reporter, f, ns string, h *networking.HTTPRoute) {
	n := 0
	for _, set := range []bool{len(h.GetRoute()) > 0, h.GetRedirect() != nil, h.GetDirectResponse() != nil, h.GetDelegate() != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		rep.errorf(f, "the route has no action; add route, redirect, directResponse or delegate")
	case n > 1 && h.GetDelegate() != nil:
		rep.errorf(f+".delegate", "a route that delegates has no route, redirect or directResponse of its own: its delegate's routes are its actions")
	case n > 1:
		rep.errorf(f, "set only one of route, redirect and directResponse")
	}
	b.checkRoutes(rep, f+".route", ns, httpDests(h.GetRoute()))
	checkHTTPRouteValues(rep, f, h)
	checkFault(rep, f+".fault", h.GetFault())
	checkCORS(rep, f+".corsPolicy", h.GetCorsPolicy())
	checkPercentage(rep, f+".mirrorPercentage", h.GetMirrorPercentage())
	if h.GetMirror() != nil && len(h.GetMirrors()) > 0 {
		rep.errorf(f+".mirrors", "set mirror or mirrors, not both; list every destination under mirrors")
	}
	if m := h.GetMirror(); m != nil {
		b.checkDestination(rep, f+".mirror", ns, m)
	}
	for j, m := range h.GetMirrors() {
		b.checkDestination(rep, fmt.Sprintf("%s.mirrors[%d].destination", f, j), ns, m.GetDestination())
		checkPercentage(rep, fmt.Sprintf("%s.mirrors[%d].percentage", f, j), m.GetPercentage())
	}
}

// isDelegate reports whether r is a VirtualService without hosts: one
// that only another VirtualService's routes can use. For a resource that
// cannot be read, its last good version says.
func (b *build) isDelegate(r *config.Resource) bool {
	if r.Invalid {
		if r = b.lastGood[keyOf(r.Meta)]; r == nil {
			return false
		}
	}
	vs, ok := r.Spec.(*networking.VirtualService)
	return ok && len(vs.GetHosts()) == 0
}

// rootsLastGood puts in force the last good version, with hosts, of a
// VirtualService whose new version has none and failed as a delegate
// (the delegate stage leaves it to this one).
func (b *build) rootsLastGood() {
	for _, r := range b.set.Resources {
		if r.Kind == config.KindVirtualService && !r.Invalid && b.isDelegate(r) {
			if lg := b.lastGood[keyOf(r.Meta)]; lg != nil && !b.isDelegate(lg) {
				b.tryLastGood(r, nil, b.checkVirtualService)
			}
		}
	}
}

// checkDelegateVirtualService checks a VirtualService without hosts; it
// is kept for the roots that name it.
func (b *build) checkDelegateVirtualService(r *config.Resource, rep *reporter) func() {
	vs := proto.Clone(r.Spec.(*networking.VirtualService)).(*networking.VirtualService)
	if len(vs.GetGateways()) > 0 {
		rep.warnf("spec.gateways", "a VirtualService without hosts serves only the routes that delegate to it, whatever their gateways; remove gateways")
	}
	if len(vs.GetTcp()) > 0 || len(vs.GetTls()) > 0 {
		rep.errorf("spec", "a VirtualService without hosts is a delegate, which holds http routes only; give it hosts to route tcp or tls")
	}
	if len(vs.GetHttp()) == 0 {
		rep.errorf("spec.http", "a VirtualService without hosts is a delegate: list the http routes it gives the routes that delegate to it (or give it hosts)")
	}
	for i, h := range vs.GetHttp() {
		f := fmt.Sprintf("spec.http[%d]", i)
		if h.GetDelegate() != nil {
			rep.errorf(f+".delegate", "a delegate VirtualService cannot delegate further; put the routes here")
			continue
		}
		b.checkHTTPRoute(rep, f, r.Namespace, h)
	}
	b.checkFields(r, rep)
	return func() {
		if b.delegates == nil {
			b.delegates = map[rkey]*delegate{}
		}
		b.delegates[keyOf(r.Meta)] = &delegate{r: r, spec: vs}
	}
}

// delegate is a delegate VirtualService in force.
type delegate struct {
	r    *config.Resource
	spec *networking.VirtualService
	used bool
}

// delegateRoutes returns the routes that replace a root route delegating
// to another VirtualService.
func (b *build) delegateRoutes(rep *reporter, f, ns string, root *networking.HTTPRoute) []*networking.HTTPRoute {
	ref := root.GetDelegate()
	dns := ref.GetNamespace()
	if dns == "" {
		dns = ns
	}
	if ref.GetName() == "" {
		rep.errorf(f+".delegate.name", "name is required: the VirtualService (without hosts) whose routes this route uses")
		return nil
	}
	d := b.delegates[rkey{config.KindVirtualService, dns, ref.GetName()}]
	if d == nil {
		rep.errorf(f+".delegate", "VirtualService %s/%s is not a delegate in force: create it without hosts, or fix its errors", dns, ref.GetName())
		return nil
	}
	d.used = true
	var out []*networking.HTTPRoute
	for j, dr := range d.spec.GetHttp() {
		m, ok := mergeHTTPRoute(root, dr)
		if !ok {
			rep.warnf(f+".delegate", "route http[%d] of delegate %s/%s matches nothing this route matches, so it is left out; narrow its match within this route's", j, dns, ref.GetName())
			continue
		}
		if m.GetRewrite().GetUri() != "" && slices.ContainsFunc(m.GetMatch(), matchesURIByRegex) {
			// Each route is fine alone; the sidecar refuses the merged one.
			rep.errorf(f+".delegate", "merged with this route, route http[%d] of delegate %s/%s has a rewrite.uri (which replaces a matched path prefix) and a uri regex match; use rewrite.uriRegexRewrite, or match the uri by prefix", j, dns, ref.GetName())
		}
		out = append(out, m)
	}
	return out
}

// warnUnusedDelegates warns about delegates no root uses.
func (b *build) warnUnusedDelegates() {
	for _, d := range b.delegates {
		if !d.used && b.set.Get(d.r.Kind, d.r.Namespace, d.r.Name) == d.r {
			rep := &reporter{r: d.r}
			rep.warnf("spec.hosts", "no VirtualService delegates to it and it has no hosts, so it routes nothing; delegate to it from a route, or give it hosts")
			b.findings[d.r.Meta] = append(b.findings[d.r.Meta], rep.out...)
		}
	}
}

// mergeHTTPRoute merges a delegate route into its root route; false when
// the delegate's matches conflict with the root's.
func mergeHTTPRoute(root, leaf *networking.HTTPRoute) (*networking.HTTPRoute, bool) {
	out := proto.Clone(leaf).(*networking.HTTPRoute)
	switch {
	case len(root.GetMatch()) == 0:
	case len(leaf.GetMatch()) == 0:
		out.Match = cloneMatches(root.GetMatch())
	default:
		out.Match = nil
		for _, lm := range leaf.GetMatch() {
			found := false
			for _, rm := range root.GetMatch() {
				if matchConflict(rm, lm) {
					continue
				}
				out.Match = append(out.Match, mergeMatch(rm, lm))
				found = true
			}
			if !found {
				return nil, false
			}
		}
	}
	out.Name = joinNames(root.GetName(), leaf.GetName())
	if out.Rewrite == nil {
		out.Rewrite = root.GetRewrite()
	}
	if out.Timeout == nil {
		out.Timeout = root.GetTimeout()
	}
	if out.Retries == nil {
		out.Retries = root.GetRetries()
	}
	if out.Fault == nil {
		out.Fault = root.GetFault()
	}
	if out.Mirror == nil && len(out.Mirrors) == 0 {
		out.Mirror, out.Mirrors = root.GetMirror(), root.GetMirrors()
		if out.MirrorPercentage == nil {
			out.MirrorPercentage = root.GetMirrorPercentage()
		}
	}
	if out.CorsPolicy == nil {
		out.CorsPolicy = root.GetCorsPolicy()
	}
	if out.Headers == nil {
		out.Headers = root.GetHeaders()
	}
	return out, true
}

func cloneMatches(ms []*networking.HTTPMatchRequest) []*networking.HTTPMatchRequest {
	out := make([]*networking.HTTPMatchRequest, len(ms))
	for i, m := range ms {
		out[i] = proto.Clone(m).(*networking.HTTPMatchRequest)
	}
	return out
}

func joinNames(root, leaf string) string {
	switch {
	case root == "":
		return leaf
	case leaf == "":
		return root
	}
	return root + "-" + leaf
}

// matchConflict reports whether a delegate match can match a request its
// root match cannot: the delegate may only narrow the root.
func matchConflict(root, leaf *networking.HTTPMatchRequest) bool {
	pairs := [][2]*networking.StringMatch{
		{root.GetUri(), leaf.GetUri()}, {root.GetScheme(), leaf.GetScheme()},
		{root.GetMethod(), leaf.GetMethod()}, {root.GetAuthority(), leaf.GetAuthority()},
	}
	for k, v := range leaf.GetHeaders() {
		pairs = append(pairs, [2]*networking.StringMatch{root.GetHeaders()[k], v})
	}
	for k, v := range leaf.GetWithoutHeaders() {
		pairs = append(pairs, [2]*networking.StringMatch{root.GetWithoutHeaders()[k], v})
	}
	for k, v := range leaf.GetQueryParams() {
		pairs = append(pairs, [2]*networking.StringMatch{root.GetQueryParams()[k], v})
	}
	for _, p := range pairs {
		if stringMatchConflict(p[0], p[1]) {
			return true
		}
	}
	switch {
	case root.GetIgnoreUriCase() != leaf.GetIgnoreUriCase():
		return true
	case root.GetPort() > 0 && leaf.GetPort() > 0 && root.GetPort() != leaf.GetPort():
		return true
	case root.GetSourceNamespace() != "" && leaf.GetSourceNamespace() != "" && root.GetSourceNamespace() != leaf.GetSourceNamespace():
		return true
	}
	for k, v := range leaf.GetSourceLabels() {
		if rv, ok := root.GetSourceLabels()[k]; ok && rv != v {
			return true
		}
	}
	if len(root.GetGateways()) > 0 {
		for _, g := range leaf.GetGateways() {
			if !slices.Contains(root.GetGateways(), g) {
				return true
			}
		}
	}
	return false
}

// stringMatchConflict reports whether leaf can match a value root does
// not: it must be root itself, or an exact value or prefix under root's
// prefix.
func stringMatchConflict(root, leaf *networking.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if proto.Equal(root, leaf) {
		return false
	}
	if p := root.GetPrefix(); p != "" {
		if lp := leaf.GetPrefix(); lp != "" {
			return !strings.HasPrefix(lp, p)
		}
		if le := leaf.GetExact(); le != "" {
			return !strings.HasPrefix(le, p)
		}
	}
	return true
}

// mergeMatch is leaf with what it leaves unset taken from root.
func mergeMatch(root, leaf *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	out := proto.Clone(leaf).(*networking.HTTPMatchRequest)
	out.Name = joinNames(root.GetName(), leaf.GetName())
	if out.Uri == nil {
		out.Uri = root.GetUri()
	}
	if out.Scheme == nil {
		out.Scheme = root.GetScheme()
	}
	if out.Method == nil {
		out.Method = root.GetMethod()
	}
	if out.Authority == nil {
		out.Authority = root.GetAuthority()
	}
	if out.Port == 0 {
		out.Port = root.GetPort()
	}
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.GetSourceNamespace()
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.GetGateways()
	}
	out.Headers = mergeMaps(root.GetHeaders(), out.GetHeaders())
	out.WithoutHeaders = mergeMaps(root.GetWithoutHeaders(), out.GetWithoutHeaders())
	out.QueryParams = mergeMaps(root.GetQueryParams(), out.GetQueryParams())
	out.SourceLabels = mergeMaps(root.GetSourceLabels(), out.GetSourceLabels())
	return out
}

// mergeMaps is leaf with root's keys it lacks.
func mergeMaps[V any](root, leaf map[string]V) map[string]V {
	if len(root) == 0 {
		return leaf
	}
	out := make(map[string]V, len(root)+len(leaf))
	for k, v := range root {
		out[k] = v
	}
	for k, v := range leaf {
		out[k] = v
	}
	return out
}
