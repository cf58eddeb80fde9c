package xdstranslate

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// CORSFilterName is the HTTP filter (and typed_per_filter_config key) of
// CORS.
const CORSFilterName = "envoy.filters.http.cors"

// FaultFilterName is the HTTP filter (and typed_per_filter_config key) of
// fault injection.
const FaultFilterName = "envoy.filters.http.fault"

// Istio's retry policy for routes whose VirtualService says nothing.
const (
	DefaultRetryOn       = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	DefaultRetryAttempts = 2
)

// routeCtx is what one route configuration is built for.
type routeCtx struct {
	snap  *model.Snapshot
	proxy *Proxy
	// gateway is "ns/name" of the Gateway being built, or "" for mesh traffic.
	gateway string
	// port is the port of the route configuration.
	port uint32
}

// matchApplies reports whether a VirtualService gateway list ("mesh",
// "name", "ns/name") covers the traffic being built.
func (c *routeCtx) gatewaysApply(gateways []string, vsNamespace string) bool {
	if len(gateways) == 0 {
		return c.gateway == ""
	}
	for _, g := range gateways {
		if c.gateway == "" {
			if g == "mesh" {
				return true
			}
			continue
		}
		if gatewayRef(g, vsNamespace) == c.gateway {
			return true
		}
	}
	return false
}

func gatewayRef(g, ns string) string {
	if strings.Contains(g, "/") {
		return g
	}
	return ns + "/" + g
}

// httpRoutes translates a VirtualService's http section. Routes whose
// matches all fail at translate time (port, sourceLabels, sourceNamespace,
// gateways) are left out.
func (c *routeCtx) httpRoutes(vs *model.VirtualService) []*route.Route {
	var out []*route.Route
	for _, hr := range vs.Spec.GetHttp() {
		var matches []*route.RouteMatch
		var names []string // each match's route name
		if len(hr.GetMatch()) == 0 {
			matches = append(matches, &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}})
			names = append(names, hr.GetName())
		}
		for _, m := range hr.GetMatch() {
			if m.GetPort() != 0 && m.GetPort() != c.port {
				continue
			}
			if len(m.GetSourceLabels()) > 0 && !model.LabelsMatch(m.GetSourceLabels(), c.proxy.Labels) {
				continue
			}
			if m.GetSourceNamespace() != "" && m.GetSourceNamespace() != c.proxy.Namespace {
				continue
			}
			if len(m.GetGateways()) > 0 && !c.gatewaysApply(m.GetGateways(), vs.Namespace) {
				continue
			}
			matches = append(matches, routeMatch(m))
			// As Istio names it: the route's name, then the match's.
			name := hr.GetName()
			if m.GetName() != "" {
				name += "." + m.GetName()
			}
			names = append(names, name)
		}
		if len(matches) == 0 {
			continue
		}
		tmpl := c.routeBody(hr, vs)
		for i, m := range matches {
			r := &route.Route{
				Name:                    names[i],
				Match:                   m,
				Action:                  tmpl.Action,
				TypedPerFilterConfig:    tmpl.TypedPerFilterConfig,
				RequestHeadersToAdd:     tmpl.RequestHeadersToAdd,
				RequestHeadersToRemove:  tmpl.RequestHeadersToRemove,
				ResponseHeadersToAdd:    tmpl.ResponseHeadersToAdd,
				ResponseHeadersToRemove: tmpl.ResponseHeadersToRemove,
			}
			out = append(out, r)
		}
	}
	return out
}

// routeBody is everything of a route but its match.
func (c *routeCtx) routeBody(hr *networking.HTTPRoute, vs *model.VirtualService) *route.Route {
	r := &route.Route{Name: hr.GetName()}
	switch {
	case hr.GetRedirect() != nil:
		r.Action = &route.Route_Redirect{Redirect: redirect(hr.GetRedirect(), c.port)}
	case hr.GetDirectResponse() != nil:
		r.Action = &route.Route_DirectResponse{DirectResponse: directResponse(hr.GetDirectResponse())}
	default:
		r.Action = &route.Route_Route{Route: c.routeAction(hr, vs)}
	}
	if h := hr.GetHeaders(); h != nil {
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerOps(h.GetRequest())
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerOps(h.GetResponse())
	}
	if f := faultConfig(hr.GetFault()); f != nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilterName: mustAny(f)}
	}
	if cp := corsPolicy(hr.GetCorsPolicy()); cp != nil {
		if r.TypedPerFilterConfig == nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		// Optional, as the filter is: gRPC's xDS clients skip it rather
		// than refuse the route configuration.
		r.TypedPerFilterConfig[CORSFilterName] = mustAny(&route.FilterConfig{Config: mustAny(cp), IsOptional: true})
	}
	return r
}

// clusterFor names the cluster of a destination. A destination without a
// port uses the service's only port, else the route configuration's port.
func (c *routeCtx) clusterFor(d *networking.Destination, vsNamespace string) (string, string, uint32) {
	host := model.FQDN(d.GetHost(), vsNamespace)
	port := d.GetPort().GetNumber()
	if port == 0 {
		if svc := c.snap.Services[host]; svc != nil && len(svc.Ports) == 1 {
			port = svc.Ports[0].Number
		} else {
			port = c.port
		}
	}
	return model.ClusterName("outbound", port, d.GetSubset(), host), host, port
}

func (c *routeCtx) routeAction(hr *networking.HTTPRoute, vs *model.VirtualService) *route.RouteAction {
	a := &route.RouteAction{Timeout: durationpb.New(0)}
	var dests []*networking.HTTPRouteDestination
	for _, d := range hr.GetRoute() {
		if d.GetWeight() == 0 && len(hr.GetRoute()) > 1 {
			continue // Istio: a zero weight among several means no traffic
		}
		dests = append(dests, d)
	}
	if len(dests) == 1 {
		name, _, _ := c.clusterFor(dests[0].GetDestination(), vs.Namespace)
		a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: name}
		if h := dests[0].GetHeaders(); h != nil {
			// Per-destination header operations on a single destination
			// are applied through a one-entry weighted cluster.
			wc := &route.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(100)}
			wc.RequestHeadersToAdd, wc.RequestHeadersToRemove = headerOps(h.GetRequest())
			wc.ResponseHeadersToAdd, wc.ResponseHeadersToRemove = headerOps(h.GetResponse())
			a.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{Clusters: []*route.WeightedCluster_ClusterWeight{wc}}}
		}
	} else if len(dests) > 1 {
		wcs := &route.WeightedCluster{}
		for _, d := range dests {
			name, _, _ := c.clusterFor(d.GetDestination(), vs.Namespace)
			wc := &route.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(uint32(d.GetWeight()))}
			if h := d.GetHeaders(); h != nil {
				wc.RequestHeadersToAdd, wc.RequestHeadersToRemove = headerOps(h.GetRequest())
				wc.ResponseHeadersToAdd, wc.ResponseHeadersToRemove = headerOps(h.GetResponse())
			}
			wcs.Clusters = append(wcs.Clusters, wc)
		}
		a.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: wcs}
	}
	if t := hr.GetTimeout(); t != nil {
		d := t.AsDuration()
		a.Timeout = durationpb.New(d)
		// A client's grpc-timeout, capped at the route's, bounds a gRPC
		// request (what Istio asks of its sidecars with max_grpc_timeout),
		// while other requests time out as before (504, flag UT). gRPC's
		// own xDS client takes its deadline from max_stream_duration.
		msd := &route.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(d)}
		if c.proxy != nil && c.proxy.Type == Proxyless {
			msd.MaxStreamDuration = durationpb.New(d)
		}
		a.MaxStreamDuration = msd
	}
	a.RetryPolicy = retryPolicy(hr.GetRetries(), hr.GetRetries() != nil)
	if rw := hr.GetRewrite(); rw != nil {
		if rw.GetUri() != "" {
			a.PrefixRewrite = rw.GetUri()
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			a.RegexRewrite = &matcher.RegexMatchAndSubstitute{Pattern: &matcher.RegexMatcher{Regex: rr.GetMatch()}, Substitution: rr.GetRewrite()}
		}
		if rw.GetAuthority() != "" {
			a.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
		}
	}
	if m := hr.GetMirror(); m != nil {
		frac := &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
		if p := hr.GetMirrorPercentage(); p != nil {
			frac = percent(p.GetValue())
		} else if p := hr.GetMirrorPercent(); p != nil {
			frac = &typev3.FractionalPercent{Numerator: p.GetValue(), Denominator: typev3.FractionalPercent_HUNDRED}
		}
		name, _, _ := c.clusterFor(m, vs.Namespace)
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(name, frac))
	}
	for _, m := range hr.GetMirrors() {
		frac := &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
		if p := m.GetPercentage(); p != nil {
			frac = percent(p.GetValue())
		}
		name, _, _ := c.clusterFor(m.GetDestination(), vs.Namespace)
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(name, frac))
	}
	if len(dests) > 0 {
		_, host, port := c.clusterFor(dests[0].GetDestination(), vs.Namespace)
		a.HashPolicy = c.hashPolicy(host, dests[0].GetDestination().GetSubset(), port)
	}
	return a
}

// mirrorPolicy mirrors frac of a route's requests to cluster; as Istio's,
// the copies' spans are not sampled (trace_sampled false), so a shadow
// does not add to the request's trace.
func mirrorPolicy(cluster string, frac *typev3.FractionalPercent) *route.RouteAction_RequestMirrorPolicy {
	return &route.RouteAction_RequestMirrorPolicy{Cluster: cluster, RuntimeFraction: &core.RuntimeFractionalPercent{DefaultValue: frac},
		TraceSampled: wrapperspb.Bool(false)}
}

// percent turns an Istio percentage (0-100, fractional) into millionths.
func percent(v float64) *typev3.FractionalPercent {
	// The validator keeps v in [0, 100]; clamped all the same, since a
	// negative float converts to a huge uint32.
	v = min(max(v, 0), 100)
	return &typev3.FractionalPercent{Numerator: uint32(v * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

// hashPolicy derives the route's hash policy from the consistentHash load
// balancer of the destination's DestinationRule (subset and port aware).
func (c *routeCtx) hashPolicy(host, subset string, port uint32) []*route.RouteAction_HashPolicy {
	dr := destinationRuleFor(c.snap, host)
	if dr == nil {
		return nil
	}
	var ss *networking.Subset
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == subset && subset != "" {
			ss = s
		}
	}
	ch := resolvePolicy(dr, ss, port).LoadBalancer.GetConsistentHash()
	if ch == nil {
		return nil
	}
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return []*route.RouteAction_HashPolicy{{PolicySpecifier: &route.RouteAction_HashPolicy_Header_{Header: &route.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName}}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		ck := &route.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath()}
		if t := k.HttpCookie.GetTtl(); t != nil {
			ck.Ttl = durationpb.New(t.AsDuration())
		}
		return []*route.RouteAction_HashPolicy{{PolicySpecifier: &route.RouteAction_HashPolicy_Cookie_{Cookie: ck}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return []*route.RouteAction_HashPolicy{{PolicySpecifier: &route.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &route.RouteAction_HashPolicy_ConnectionProperties{SourceIp: k.UseSourceIp}}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return []*route.RouteAction_HashPolicy{{PolicySpecifier: &route.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &route.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}}}
	}
	return nil
}

// retryPolicy follows Istio: no retries section means 2 attempts on
// connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
// (503); attempts 0 turns retries off; an empty retryOn keeps the default
// conditions; numbers in retryOn become retriable status codes; a retry
// avoids the hosts already tried (previous_hosts) unless
// retryIgnorePreviousHosts is false.
func retryPolicy(r *networking.HTTPRetry, explicit bool) *route.RetryPolicy {
	p := &route.RetryPolicy{
		RetryOn:                       DefaultRetryOn,
		NumRetries:                    wrapperspb.UInt32(DefaultRetryAttempts),
		RetriableStatusCodes:          []uint32{503},
		HostSelectionRetryMaxAttempts: 5,
		RetryHostPredicate: []*route.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &route.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushosts.PreviousHostsPredicate{})},
		}},
	}
	if !explicit {
		return p
	}
	if r.GetAttempts() <= 0 {
		return nil
	}
	p.NumRetries = wrapperspb.UInt32(uint32(r.GetAttempts()))
	if on := r.GetRetryOn(); on != "" {
		var names []string
		var codes []uint32
		for _, s := range strings.Split(on, ",") {
			name, n, isCode := model.RetryOnItem(s)
			if isCode {
				codes = append(codes, uint32(n))
			} else if slices.Contains(model.RetryConditions, name) {
				names = append(names, name)
			}
		}
		if len(codes) > 0 && !contains(names, "retriable-status-codes") {
			names = append(names, "retriable-status-codes")
		}
		p.RetryOn = strings.Join(names, ",")
		p.RetriableStatusCodes = codes
	}
	if t := r.GetPerTryTimeout(); t != nil {
		p.PerTryTimeout = durationpb.New(t.AsDuration())
	}
	if b := r.GetBackoff(); b != nil {
		p.RetryBackOff = &route.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(b.AsDuration())}
	}
	if ig := r.GetRetryIgnorePreviousHosts(); ig != nil && !ig.GetValue() {
		// Retries may go back to a host already tried.
		p.RetryHostPredicate, p.HostSelectionRetryMaxAttempts = nil, 0
	}
	return p
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func routeMatch(m *networking.HTTPMatchRequest) *route.RouteMatch {
	rm := &route.RouteMatch{}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &route.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: u.Regex}}
	default:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: "/"}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, k := range slices.Sorted(maps.Keys(m.GetHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetHeaders()[k], false))
	}
	for _, k := range slices.Sorted(maps.Keys(m.GetWithoutHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetWithoutHeaders()[k], true))
	}
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod(), false))
	}
	if m.GetAuthority() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.GetAuthority(), false))
	}
	if m.GetScheme() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", m.GetScheme(), false))
	}
	for _, k := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		qm := &route.QueryParameterMatcher{Name: k}
		if sm := stringMatcher(m.GetQueryParams()[k]); sm != nil {
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_StringMatch{StringMatch: sm}
		} else {
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

func headerMatcher(name string, sm *networking.StringMatch, invert bool) *route.HeaderMatcher {
	hm := &route.HeaderMatcher{Name: name, InvertMatch: invert}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// stringMatcher converts an Istio StringMatch; nil or empty means "present".
func stringMatcher(sm *networking.StringMatch) *matcher.StringMatcher {
	switch m := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		if m.Exact == "" {
			return nil
		}
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: m.Exact}}
	case *networking.StringMatch_Prefix:
		if m.Prefix == "" {
			return nil
		}
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: m.Prefix}}
	case *networking.StringMatch_Regex:
		if m.Regex == "" {
			return nil
		}
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: m.Regex}}}
	}
	return nil
}

func exactMatcher(s string) *matcher.StringMatcher {
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}
}

func headerOps(ops *networking.Headers_HeaderOperations) ([]*core.HeaderValueOption, []string) {
	if ops == nil {
		return nil, nil
	}
	var add []*core.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(ops.GetSet())) {
		add = append(add, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: k, Value: ops.GetSet()[k]},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range slices.Sorted(maps.Keys(ops.GetAdd())) {
		add = append(add, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: k, Value: ops.GetAdd()[k]},
			AppendAction: core.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	var remove []string
	if len(ops.GetRemove()) > 0 {
		remove = append([]string(nil), ops.GetRemove()...)
		sort.Strings(remove)
	}
	return add, remove
}

var redirectCodes = map[uint32]route.RedirectAction_RedirectResponseCode{
	301: route.RedirectAction_MOVED_PERMANENTLY,
	302: route.RedirectAction_FOUND,
	303: route.RedirectAction_SEE_OTHER,
	307: route.RedirectAction_TEMPORARY_REDIRECT,
	308: route.RedirectAction_PERMANENT_REDIRECT,
}

// redirect translates an HTTP redirect of a route configuration for port.
// The validator refuses the redirect codes redirectCodes lacks.
func redirect(r *networking.HTTPRedirect, port uint32) *route.RedirectAction {
	a := &route.RedirectAction{HostRedirect: r.GetAuthority(), ResponseCode: redirectCodes[r.GetRedirectCode()]}
	if r.GetUri() != "" {
		a.PathRewriteSpecifier = &route.RedirectAction_PathRedirect{PathRedirect: r.GetUri()}
	} else if r.GetPrefixRewrite() != "" {
		a.PathRewriteSpecifier = &route.RedirectAction_PrefixRewrite{PrefixRewrite: r.GetPrefixRewrite()}
	}
	switch r.GetScheme() {
	case "":
	case "https":
		a.SchemeRewriteSpecifier = &route.RedirectAction_HttpsRedirect{HttpsRedirect: true}
	default:
		a.SchemeRewriteSpecifier = &route.RedirectAction_SchemeRedirect{SchemeRedirect: r.GetScheme()}
	}
	switch p := r.GetRedirectPort().(type) {
	case *networking.HTTPRedirect_Port:
		a.PortRedirect = p.Port
	case *networking.HTTPRedirect_DerivePort:
		if p.DerivePort == networking.HTTPRedirect_FROM_REQUEST_PORT {
			// As Istio does: a redirect action cannot say "the request's
			// port", but routes are built per port: it is the route
			// configuration's (the service's, or the gateway server's).
			a.PortRedirect = port
		}
	}
	return a
}

func directResponse(d *networking.HTTPDirectResponse) *route.DirectResponseAction {
	a := &route.DirectResponseAction{Status: d.GetStatus()}
	switch b := d.GetBody().GetSpecifier().(type) {
	case *networking.HTTPBody_String_:
		a.Body = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: b.String_}}
	case *networking.HTTPBody_Bytes:
		a.Body = &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b.Bytes}}
	}
	return a
}

// faultPercent is the share of requests a fault applies to: its
// percentage, else the deprecated integer percent. Neither set is none, as
// Istio documents ("If left unspecified, no request will be delayed").
func faultPercent(p *networking.Percent, legacy int32) *typev3.FractionalPercent {
	if p != nil {
		return percent(p.GetValue())
	}
	if legacy > 0 {
		return &typev3.FractionalPercent{Numerator: uint32(legacy), Denominator: typev3.FractionalPercent_HUNDRED}
	}
	return nil
}

// corsPolicy is a route's CORS policy as Envoy's CORS filter takes it.
func corsPolicy(c *networking.CorsPolicy) *corsv3.CorsPolicy {
	if c == nil {
		return nil
	}
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.GetAllowMethods(), ","),
		AllowHeaders:  strings.Join(c.GetAllowHeaders(), ","),
		ExposeHeaders: strings.Join(c.GetExposeHeaders(), ","),
	}
	for _, o := range c.GetAllowOrigins() {
		if m := stringMatcher(o); m != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, m)
		}
	}
	if len(c.GetAllowOrigins()) == 0 {
		// The deprecated list, which Istio reads only without the new one.
		for _, o := range c.GetAllowOrigin() { //nolint:staticcheck // deprecated field, still accepted
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: o}})
		}
	}
	if d := c.GetMaxAge(); d != nil && d.AsDuration() >= 0 {
		out.MaxAge = strconv.FormatInt(int64(d.AsDuration()/time.Second), 10)
	}
	if v := c.GetAllowCredentials(); v != nil {
		out.AllowCredentials = wrapperspb.Bool(v.GetValue())
	}
	if c.GetUnmatchedPreflights() == networking.CorsPolicy_IGNORE {
		out.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	}
	return out
}

func faultConfig(f *networking.HTTPFaultInjection) *fault.HTTPFault {
	if f == nil || (f.GetDelay() == nil && f.GetAbort() == nil) {
		return nil
	}
	out := &fault.HTTPFault{}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &faultcommon.FaultDelay{
			FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.GetFixedDelay().AsDuration())},
			Percentage:         faultPercent(d.GetPercentage(), d.GetPercent()),
		}
	}
	if a := f.GetAbort(); a != nil {
		ab := &fault.FaultAbort{Percentage: faultPercent(a.GetPercentage(), 0)}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			ab.ErrorType = &fault.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			// The validator refuses a status that is not a gRPC one.
			if code, ok := model.GRPCStatus(e.GrpcStatus); ok {
				ab.ErrorType = &fault.FaultAbort_GrpcStatus{GrpcStatus: code}
			}
		}
		if ab.ErrorType != nil {
			out.Abort = ab
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}
