package proxyconfig

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults taken from Envoy.
const (
	// DefaultRouteTimeout is Envoy's route timeout when none is set.
	DefaultRouteTimeout = 15 * time.Second
	// DefaultRetryBase is Envoy's retry backoff base interval.
	DefaultRetryBase = 25 * time.Millisecond
	defaultTCPIdle   = time.Hour
)

// ParseRouteConfig validates an Envoy RouteConfiguration.
func ParseRouteConfig(rc *routev3.RouteConfiguration) (*RouteConfig, error) {
	vhs := rc.GetVirtualHosts()
	return parseRouteConfig(rc, len(vhs), func(i int) (*VirtualHost, []string, error) {
		var notes []string
		v, err := parseVirtualHost(vhs[i], &notes)
		if err != nil {
			return nil, nil, fmt.Errorf("virtual_hosts[%d] %q: %w", i, vhs[i].GetName(), err)
		}
		return v, notes, nil
	})
}

// parseRouteConfig validates rc, whose n virtual hosts vhost parses
// (with what each leaves unenforced), in order.
func parseRouteConfig(rc *routev3.RouteConfiguration, n int, vhost func(i int) (*VirtualHost, []string, error)) (*RouteConfig, error) {
	out := &RouteConfig{Name: rc.GetName()}
	var err error
	if out.RequestHeaders, err = headerOps(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("route configuration %q: request headers: %w", rc.GetName(), err)
	}
	if out.ResponseHeaders, err = headerOps(rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("route configuration %q: response headers: %w", rc.GetName(), err)
	}
	seenDomain := map[string]string{}
	for i := range n {
		v, notes, err := vhost(i)
		if err != nil {
			return nil, fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
		}
		out.Unenforced = append(out.Unenforced, notes...)
		for _, d := range v.Domains {
			if prev, ok := seenDomain[d]; ok {
				return nil, fmt.Errorf("route configuration %q: domain %q is in virtual hosts %q and %q", rc.GetName(), d, prev, v.Name)
			}
			seenDomain[d] = v.Name
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	if rc.GetVhds() != nil {
		out.Unenforced = append(out.Unenforced, fmt.Sprintf("route configuration %q: vhds", rc.GetName()))
	}
	return out, nil
}

func parseVirtualHost(vh *routev3.VirtualHost, unenforced *[]string) (*VirtualHost, error) {
	out := &VirtualHost{Name: vh.GetName(), RequireTLS: vh.GetRequireTls() == routev3.VirtualHost_ALL}
	if vh.GetRequireTls() == routev3.VirtualHost_EXTERNAL_ONLY {
		*unenforced = append(*unenforced, fmt.Sprintf("virtual host %q: require_tls EXTERNAL_ONLY (only ALL redirects)", vh.GetName()))
	}
	if len(vh.GetDomains()) == 0 {
		return nil, errors.New("domains is empty")
	}
	for _, d := range vh.GetDomains() {
		d = strings.ToLower(d)
		if d == "" {
			return nil, errors.New("domains has an empty entry")
		}
		if d != "*" && strings.Count(d, "*") > 0 && !(strings.Count(d, "*") == 1 && (strings.HasPrefix(d, "*") || strings.HasSuffix(d, "*"))) {
			return nil, fmt.Errorf("domain %q: a wildcard may only be at the start or the end", d)
		}
		out.Domains = append(out.Domains, d)
	}
	var err error
	if out.RequestHeaders, err = headerOps(vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("request headers: %w", err)
	}
	if out.ResponseHeaders, err = headerOps(vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("response headers: %w", err)
	}
	if vh.GetRetryPolicy() != nil {
		if out.Retry, err = parseRetry(vh.GetRetryPolicy(), fmt.Sprintf("virtual host %q", vh.GetName()), unenforced); err != nil {
			return nil, fmt.Errorf("retry_policy: %w", err)
		}
	}
	for name := range vh.GetTypedPerFilterConfig() {
		*unenforced = append(*unenforced, fmt.Sprintf("virtual host %q: typed_per_filter_config %q", vh.GetName(), name))
	}
	if vh.GetCors() != nil || len(vh.GetRateLimits()) > 0 || vh.GetHedgePolicy() != nil {
		*unenforced = append(*unenforced, fmt.Sprintf("virtual host %q: cors, rate_limits or hedge_policy", vh.GetName()))
	}
	if len(vh.GetRequestMirrorPolicies()) > 0 {
		*unenforced = append(*unenforced, fmt.Sprintf("virtual host %q: request_mirror_policies (only a route's apply)", vh.GetName()))
	}
	for i, r := range vh.GetRoutes() {
		rt, err := parseRoute(r, unenforced)
		if err != nil {
			return nil, fmt.Errorf("routes[%d] %q: %w", i, r.GetName(), err)
		}
		out.Routes = append(out.Routes, rt)
	}
	return out, nil
}

func parseRoute(r *routev3.Route, unenforced *[]string) (*Route, error) {
	out := &Route{Name: r.GetName()}
	m, err := parseRouteMatch(r.GetMatch())
	if err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	out.Match = m
	if out.RequestHeaders, err = headerOps(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("request headers: %w", err)
	}
	if out.ResponseHeaders, err = headerOps(r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove()); err != nil {
		return nil, fmt.Errorf("response headers: %w", err)
	}
	for name, cfg := range r.GetTypedPerFilterConfig() {
		if inner, ok := filterConfig(cfg); ok {
			if inner == nil {
				if name == "envoy.filters.http.fault" {
					out.Fault = &Fault{} // off for this route, whatever the listener's
				}
				continue // disabled for this route
			}
			cfg = inner // a FilterConfig wrapper (is_optional)
		}
		if isFault(cfg) {
			if out.Fault, err = parseFault(cfg, fmt.Sprintf("route %q", r.GetName()), unenforced); err != nil {
				return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
			}
			continue
		}
		if isCORSPolicy(cfg) {
			if out.CORS, err = parseCORS(cfg, fmt.Sprintf("route %q", r.GetName()), unenforced); err != nil {
				return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
			}
			continue
		}
		*unenforced = append(*unenforced, fmt.Sprintf("route %q: typed_per_filter_config %q", r.GetName(), name))
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra, err := parseRouteAction(a.Route, m, r.GetName(), unenforced)
		if err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		out.Action = ra
	case *routev3.Route_Redirect:
		rd, err := parseRedirect(a.Redirect)
		if err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
		out.Redirect = rd
	case *routev3.Route_DirectResponse:
		st := a.DirectResponse.GetStatus()
		if st < 100 || st > 599 {
			return nil, fmt.Errorf("direct_response.status %d is not an HTTP status", st)
		}
		d := &DirectResponse{Status: int(st)}
		if b := a.DirectResponse.GetBody(); b != nil {
			switch s := b.GetSpecifier().(type) {
			case *corev3.DataSource_InlineString:
				d.Body = s.InlineString
			case *corev3.DataSource_InlineBytes:
				d.Body = string(s.InlineBytes)
			default:
				return nil, errors.New("direct_response.body: only inline_string and inline_bytes are supported")
			}
		}
		out.Direct = d
	default:
		return nil, errors.New("action must be route, redirect or direct_response")
	}
	return out, nil
}

func parseRouteMatch(m *routev3.RouteMatch) (RouteMatch, error) {
	var out RouteMatch
	if m == nil {
		return out, errors.New("is missing")
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Kind, out.Path = PathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.Kind, out.Path = PathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileFull(p.SafeRegex.GetRegex())
		if err != nil {
			return out, fmt.Errorf("safe_regex: %w", err)
		}
		out.Kind, out.Regex = PathRegex, re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		if strings.HasSuffix(p.PathSeparatedPrefix, "/") || strings.ContainsAny(p.PathSeparatedPrefix, "?#") {
			return out, fmt.Errorf("path_separated_prefix %q must not end in / or contain ? or #", p.PathSeparatedPrefix)
		}
		out.Kind, out.Path = PathSeparatedPrefix, p.PathSeparatedPrefix
	default:
		return out, errors.New("needs prefix, path, safe_regex or path_separated_prefix")
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		out.CaseInsensitive = true
		out.Path = strings.ToLower(out.Path)
	}
	for i, h := range m.GetHeaders() {
		hm, err := parseHeaderMatcher(h)
		if err != nil {
			return out, fmt.Errorf("headers[%d] %q: %w", i, h.GetName(), err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		if q.GetName() == "" {
			return out, fmt.Errorf("query_parameters[%d]: name is empty", i)
		}
		qm := QueryParamMatcher{Name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := parseStringMatcher(s.StringMatch)
			if err != nil {
				return out, fmt.Errorf("query_parameters[%d] %q: %w", i, q.GetName(), err)
			}
			qm.Match = sm
		default:
			qm.Match = StringMatcher{Kind: MatchPresent}
		}
		out.QueryParams = append(out.QueryParams, qm)
	}
	if m.GetGrpc() != nil {
		out.GRPC = true
	}
	if m.GetRuntimeFraction() != nil || len(m.GetDynamicMetadata()) > 0 || m.GetTlsContext() != nil {
		return out, errors.New("runtime_fraction, dynamic_metadata and tls_context matches are not supported")
	}
	return out, nil
}

func parseHeaderMatcher(h *routev3.HeaderMatcher) (HeaderMatcher, error) {
	name := strings.ToLower(h.GetName())
	if name == "" {
		return HeaderMatcher{}, errors.New("name is empty")
	}
	out := HeaderMatcher{Name: name, Invert: h.GetInvertMatch(), TreatMissingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		out.Match, out.Present = StringMatcher{Kind: MatchPresent}, true
	case *routev3.HeaderMatcher_ExactMatch:
		out.Match = StringMatcher{Kind: MatchExact, Value: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		out.Match = StringMatcher{Kind: MatchPrefix, Value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		out.Match = StringMatcher{Kind: MatchSuffix, Value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		out.Match = StringMatcher{Kind: MatchContains, Value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileFull(s.SafeRegexMatch.GetRegex())
		if err != nil {
			return out, fmt.Errorf("safe_regex_match: %w", err)
		}
		out.Match = StringMatcher{Kind: MatchRegex, Regex: re}
	case *routev3.HeaderMatcher_PresentMatch:
		out.Match, out.Present = StringMatcher{Kind: MatchPresent}, s.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		if s.RangeMatch.GetStart() >= s.RangeMatch.GetEnd() {
			return out, errors.New("range_match: start must be below end")
		}
		out.Match = StringMatcher{Kind: MatchRange}
		out.RangeStart, out.RangeEnd = s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := parseStringMatcher(s.StringMatch)
		if err != nil {
			return out, fmt.Errorf("string_match: %w", err)
		}
		out.Match = sm
	default:
		return out, fmt.Errorf("unsupported header match %T", s)
	}
	return out, nil
}

func parseStringMatcher(s *matcherv3.StringMatcher) (StringMatcher, error) {
	out := StringMatcher{IgnoreCase: s.GetIgnoreCase()}
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = MatchExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = MatchPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = MatchSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = MatchContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileFull(p.SafeRegex.GetRegex())
		if err != nil {
			return out, fmt.Errorf("safe_regex: %w", err)
		}
		out.Kind, out.Regex, out.IgnoreCase = MatchRegex, re, false
	default:
		return out, errors.New("needs exact, prefix, suffix, contains or safe_regex")
	}
	if out.IgnoreCase {
		out.Value = strings.ToLower(out.Value)
	}
	return out, nil
}

// compileFull compiles an RE2 regex that must match the whole input.
func compileFull(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, errors.New("regex is empty")
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

func parseRouteAction(a *routev3.RouteAction, m RouteMatch, routeName string, unenforced *[]string) (*RouteAction, error) {
	out := &RouteAction{Timeout: DefaultRouteTimeout}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return nil, errors.New("cluster is empty")
		}
		out.Cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		for i, c := range cs.WeightedClusters.GetClusters() {
			if c.GetName() == "" {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d]: name is empty", i)
			}
			w := c.GetWeight().GetValue()
			if w == 0 {
				continue
			}
			wc := WeightedCluster{Name: c.GetName(), Weight: w}
			var err error
			if wc.RequestHeaders, err = headerOps(c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove()); err != nil {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d]: %w", i, err)
			}
			if wc.ResponseHeaders, err = headerOps(c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove()); err != nil {
				return nil, fmt.Errorf("weighted_clusters.clusters[%d]: %w", i, err)
			}
			out.TotalWeight += w
			out.WeightedClusters = append(out.WeightedClusters, wc)
		}
		if out.TotalWeight == 0 {
			return nil, errors.New("weighted_clusters has no cluster with weight > 0")
		}
	default:
		return nil, errors.New("needs cluster or weighted_clusters (cluster_header and plugins are not supported)")
	}
	if a.GetPrefixRewrite() != "" {
		if m.Kind == PathRegex {
			return nil, errors.New("prefix_rewrite cannot be used with a safe_regex match")
		}
		out.PrefixRewrite, out.HasPrefixRewrite = a.GetPrefixRewrite(), true
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.pattern: %w", err)
		}
		out.RegexRewrite = &RegexRewrite{Pattern: re, Substitution: envoySubstitution(rr.GetSubstitution())}
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		out.HostRewrite = h.HostRewriteLiteral
	default:
		*unenforced = append(*unenforced, fmt.Sprintf("route %q: host rewrite %T (only host_rewrite_literal)", routeName, h))
	}
	if a.GetTimeout() != nil {
		out.Timeout = a.GetTimeout().AsDuration()
	}
	if a.GetIdleTimeout() != nil {
		out.IdleTimeout = a.GetIdleTimeout().AsDuration()
		*unenforced = append(*unenforced, fmt.Sprintf("route %q: idle_timeout", routeName))
	}
	if a.GetRetryPolicy() != nil {
		rp, err := parseRetry(a.GetRetryPolicy(), fmt.Sprintf("route %q", routeName), unenforced)
		if err != nil {
			return nil, fmt.Errorf("retry_policy: %w", err)
		}
		out.Retry = rp
	}
	for i, hp := range a.GetHashPolicy() {
		p := HashPolicy{Terminal: hp.GetTerminal()}
		switch s := hp.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			p.Kind, p.Name = HashHeader, strings.ToLower(s.Header.GetHeaderName())
		case *routev3.RouteAction_HashPolicy_Cookie_:
			p.Kind, p.Name = HashCookie, s.Cookie.GetName()
			if s.Cookie.GetTtl() != nil {
				*unenforced = append(*unenforced, fmt.Sprintf("route %q: hash_policy cookie ttl (cookies are not generated)", routeName))
			}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !s.ConnectionProperties.GetSourceIp() {
				continue
			}
			p.Kind = HashSourceIP
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			p.Kind, p.Name = HashQueryParam, s.QueryParameter.GetName()
		default:
			return nil, fmt.Errorf("hash_policy[%d]: only header, cookie, connection_properties and query_parameter are supported", i)
		}
		if p.Kind != HashSourceIP && p.Name == "" {
			return nil, fmt.Errorf("hash_policy[%d]: name is empty", i)
		}
		out.HashPolicies = append(out.HashPolicies, p)
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		if mp.GetCluster() == "" {
			if mp.GetClusterHeader() != "" {
				*unenforced = append(*unenforced, fmt.Sprintf("route %q: request_mirror_policies[%d].cluster_header", routeName, i))
				continue
			}
			return nil, fmt.Errorf("request_mirror_policies[%d]: cluster is empty", i)
		}
		m := Mirror{Cluster: mp.GetCluster(), PerMillion: 1_000_000, KeepHost: mp.GetDisableShadowHostSuffixAppend()}
		if ts := mp.GetTraceSampled(); ts != nil && !ts.GetValue() {
			m.Unsampled = true
		}
		if rf := mp.GetRuntimeFraction(); rf != nil {
			m.PerMillion = perMillion(rf.GetDefaultValue())
			if rf.GetRuntimeKey() != "" {
				*unenforced = append(*unenforced, fmt.Sprintf("route %q: request_mirror_policies[%d].runtime_fraction.runtime_key (its default_value applies)", routeName, i))
			}
		}
		if len(mp.GetRequestHeadersMutations()) > 0 || mp.GetHostRewriteLiteral() != "" {
			*unenforced = append(*unenforced, fmt.Sprintf("route %q: request_mirror_policies[%d].request_headers_mutations or host_rewrite_literal", routeName, i))
		}
		out.Mirrors = append(out.Mirrors, m)
	}
	if a.GetHedgePolicy() != nil || len(a.GetRateLimits()) > 0 || a.GetCors() != nil {
		*unenforced = append(*unenforced, fmt.Sprintf("route %q: hedge_policy, rate_limits or cors", routeName))
	}
	if msd := a.GetMaxStreamDuration(); msd != nil {
		if err := parseMaxStreamDuration(msd, out); err != nil {
			return nil, fmt.Errorf("max_stream_duration: %w", err)
		}
	}
	return out, nil
}

// parseMaxStreamDuration reads a route's max_stream_duration. Envoy falls
// back to the HTTP connection manager's
// common_http_protocol_options.max_stream_duration when the route sets
// none; the sidecar reads no HCM-level one, so that is no bound.
func parseMaxStreamDuration(m *routev3.RouteAction_MaxStreamDuration, out *RouteAction) error {
	for _, f := range []struct {
		name string
		d    *durationpb.Duration
		to   *time.Duration
	}{
		{"max_stream_duration", m.GetMaxStreamDuration(), &out.MaxStreamDuration},
		{"grpc_timeout_header_max", m.GetGrpcTimeoutHeaderMax(), &out.GRPCTimeoutHeaderMax},
		{"grpc_timeout_header_offset", m.GetGrpcTimeoutHeaderOffset(), &out.GRPCTimeoutHeaderOffset},
	} {
		if f.d == nil {
			continue
		}
		if err := f.d.CheckValid(); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if *f.to = f.d.AsDuration(); *f.to < 0 {
			return fmt.Errorf("%s %s is negative", f.name, *f.to)
		}
	}
	out.GRPCTimeoutHeader = m.GetGrpcTimeoutHeaderMax() != nil
	return nil
}

// envoySubstitution converts Envoy's \N back-references to Go's ${N} and
// escapes literal dollars.
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${")
			b.WriteByte(s[i+1])
			b.WriteString("}")
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseRetryOn maps Envoy's retry_on names.
var retryOnNames = map[string]RetryOn{
	"5xx":                    Retry5xx,
	"gateway-error":          RetryGatewayError,
	"connect-failure":        RetryConnectFailure,
	"reset":                  RetryReset,
	"reset-before-request":   RetryResetBeforeRequest,
	"retriable-status-codes": RetryRetriableStatusCodes,
	"retriable-4xx":          RetryRetriable4xx,
	"refused-stream":         RetryRefusedStream,
	"cancelled":              RetryGRPCCancelled,
	"deadline-exceeded":      RetryGRPCDeadlineExceeded,
	"resource-exhausted":     RetryGRPCResourceExhausted,
	"unavailable":            RetryGRPCUnavailable,
	"internal":               RetryGRPCInternal,
	// Conditions that need features the proxy does not have yet never
	// trigger; they are accepted so that Istio-style defaults validate.
	"retriable-headers":          0,
	"envoy-ratelimited":          0,
	"http3-post-connect-failure": 0,
}

// PreviousHostsPredicate is the name of Envoy's retry host predicate
// that sends retries to hosts not tried yet.
const PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

// parseRetry validates a retry policy of where (a route or virtual
// host); what it accepts but does not enforce goes to unenforced.
func parseRetry(p *routev3.RetryPolicy, where string, unenforced *[]string) (*RetryPolicy, error) {
	out := &RetryPolicy{NumRetries: 1, BaseInterval: DefaultRetryBase, Reselects: 1}
	if n := p.GetHostSelectionRetryMaxAttempts(); n > 0 {
		out.Reselects = uint32(min(n, 100))
	}
	for _, pred := range p.GetRetryHostPredicate() {
		if pred.GetName() == PreviousHostsPredicate || pred.GetTypedConfig().MessageIs((*previoushostsv3.PreviousHostsPredicate)(nil)) {
			out.OtherHosts = true
			continue
		}
		*unenforced = append(*unenforced, fmt.Sprintf("%s: retry_host_predicate %q", where, pred.GetName()))
	}
	if p.GetRetryPriority() != nil {
		*unenforced = append(*unenforced, fmt.Sprintf("%s: retry_priority %q", where, p.GetRetryPriority().GetName()))
	}
	for _, name := range strings.Split(p.GetRetryOn(), ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		f, ok := retryOnNames[name]
		if !ok {
			return nil, fmt.Errorf("retry_on %q is not a known condition", name)
		}
		out.On |= f
	}
	if p.GetNumRetries() != nil {
		out.NumRetries = p.GetNumRetries().GetValue()
	}
	out.PerTryTimeout = p.GetPerTryTimeout().AsDuration()
	out.StatusCodes = append(out.StatusCodes, p.GetRetriableStatusCodes()...)
	if bo := p.GetRetryBackOff(); bo != nil {
		if bo.GetBaseInterval() == nil || bo.GetBaseInterval().AsDuration() <= 0 {
			return nil, errors.New("retry_back_off.base_interval must be > 0")
		}
		out.BaseInterval = bo.GetBaseInterval().AsDuration()
		if bo.GetMaxInterval() != nil {
			out.MaxInterval = bo.GetMaxInterval().AsDuration()
			if out.MaxInterval < out.BaseInterval {
				return nil, errors.New("retry_back_off.max_interval must not be below base_interval")
			}
		}
	}
	if out.MaxInterval == 0 {
		out.MaxInterval = 10 * out.BaseInterval
	}
	return out, nil
}

func parseRedirect(r *routev3.RedirectAction) (*Redirect, error) {
	out := &Redirect{Host: r.GetHostRedirect(), Port: r.GetPortRedirect(), StripQuery: r.GetStripQuery()}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		out.Scheme = strings.ToLower(s.SchemeRedirect)
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		out.Path = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		out.PrefixRewrite, out.HasPrefixRewrite = p.PrefixRewrite, true
	case *routev3.RedirectAction_RegexRewrite:
		re, err := regexp.Compile(p.RegexRewrite.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.pattern: %w", err)
		}
		out.RegexRewrite = &RegexRewrite{Pattern: re, Substitution: envoySubstitution(p.RegexRewrite.GetSubstitution())}
	}
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.Code = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		out.Code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		out.Code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.Code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.Code = http.StatusPermanentRedirect
	default:
		return nil, fmt.Errorf("response_code %v is not supported", r.GetResponseCode())
	}
	return out, nil
}

func headerOps(add []*corev3.HeaderValueOption, remove []string) (HeaderOps, error) {
	var out HeaderOps
	for _, r := range remove {
		if r == "" {
			return out, errors.New("headers_to_remove has an empty name")
		}
		if strings.HasPrefix(r, ":") || strings.EqualFold(r, "host") {
			return out, fmt.Errorf("headers_to_remove: %q cannot be removed", r)
		}
		out.Remove = append(out.Remove, http.CanonicalHeaderKey(r))
	}
	for i, a := range add {
		h := a.GetHeader()
		if h.GetKey() == "" {
			return out, fmt.Errorf("headers_to_add[%d]: key is empty", i)
		}
		v := HeaderValue{Name: canonicalName(h.GetKey()), Value: h.GetValue()}
		if len(h.GetRawValue()) > 0 {
			v.Value = string(h.GetRawValue())
		}
		if strings.ContainsAny(v.Value, "\r\n\x00") {
			return out, fmt.Errorf("headers_to_add[%d] %q: value has a control character", i, h.GetKey())
		}
		if strings.HasPrefix(v.Name, ":") && v.Name != ":authority" {
			return out, fmt.Errorf("headers_to_add[%d]: pseudo-header %q cannot be set", i, h.GetKey())
		}
		switch {
		case a.GetAppend() != nil && a.GetAppend().GetValue():
			v.Action = AppendIfExistsOrAdd
		case a.GetAppend() != nil:
			v.Action = OverwriteIfExistsOrAdd
		default:
			switch a.GetAppendAction() {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				v.Action = AppendIfExistsOrAdd
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				v.Action = AddIfAbsent
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				v.Action = OverwriteIfExistsOrAdd
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				v.Action = OverwriteIfExists
			default:
				return out, fmt.Errorf("headers_to_add[%d]: unknown append_action %v", i, a.GetAppendAction())
			}
		}
		out.Add = append(out.Add, v)
	}
	return out, nil
}

func canonicalName(k string) string {
	if strings.HasPrefix(k, ":") {
		return strings.ToLower(k)
	}
	if strings.EqualFold(k, "host") {
		return ":authority"
	}
	return http.CanonicalHeaderKey(k)
}

func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}
