package proxyconfig

import (
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// The CORS filter's config types: the filter's own (in an HCM's
// http_filters) and its per-route policy.
const (
	corsFilterTypeURL = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	corsPolicyTypeURL = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
)

// CORS is a route's cross-origin resource sharing policy (Envoy's CORS
// filter, per route): browsers' preflight requests from an allowed origin
// are answered by the proxy, and responses to that origin's requests say
// what it may do.
type CORS struct {
	// AllowOrigins are the allowed origins; none matching, the request
	// gets no CORS headers. One that matches "*" allows every origin, as
	// in Envoy.
	AllowOrigins []StringMatcher
	// AllowMethods, AllowHeaders and ExposeHeaders are the
	// Access-Control-* values as configured ("" to leave one out).
	AllowMethods, AllowHeaders, ExposeHeaders string
	// MaxAge is Access-Control-Max-Age ("" to leave it out).
	MaxAge string
	// AllowCredentials sends Access-Control-Allow-Credentials: true.
	AllowCredentials bool
	// ForwardUnmatchedPreflights sends preflights from origins not
	// allowed on to the upstream (Envoy's default); otherwise the proxy
	// answers them without CORS headers.
	ForwardUnmatchedPreflights bool
}

func isCORSPolicy(a *anypb.Any) bool { return a.GetTypeUrl() == corsPolicyTypeURL }

// filterConfig unwraps a per-route filter config given as an Envoy
// FilterConfig (which adds is_optional and disabled); false when a is not
// one, or is a disabled one (then nil: the filter is off for the route).
func filterConfig(a *anypb.Any) (*anypb.Any, bool) {
	if a.GetTypeUrl() != "type.googleapis.com/envoy.config.route.v3.FilterConfig" {
		return nil, false
	}
	var fc routev3.FilterConfig
	if err := a.UnmarshalTo(&fc); err != nil {
		return a, true // the caller lists what it cannot read
	}
	if fc.GetDisabled() {
		return nil, true
	}
	if fc.GetConfig() == nil {
		return a, true
	}
	return fc.GetConfig(), true
}

// parseCORS validates a route's CORS policy.
func parseCORS(a *anypb.Any, where string, unenforced *[]string) (*CORS, error) {
	var p corsv3.CorsPolicy
	if err := a.UnmarshalTo(&p); err != nil {
		return nil, fmt.Errorf("cors: %w", err)
	}
	out := &CORS{AllowMethods: p.GetAllowMethods(), AllowHeaders: p.GetAllowHeaders(), ExposeHeaders: p.GetExposeHeaders(),
		MaxAge: p.GetMaxAge(), AllowCredentials: p.GetAllowCredentials().GetValue(), ForwardUnmatchedPreflights: true}
	if v := p.GetForwardNotMatchingPreflights(); v != nil {
		out.ForwardUnmatchedPreflights = v.GetValue()
	}
	for i, m := range p.GetAllowOriginStringMatch() {
		sm, err := parseStringMatcher(m)
		if err != nil {
			return nil, fmt.Errorf("cors: allow_origin_string_match[%d]: %w", i, err)
		}
		out.AllowOrigins = append(out.AllowOrigins, sm)
	}
	if p.GetFilterEnabled() != nil || p.GetShadowEnabled() != nil || p.GetAllowPrivateNetworkAccess() != nil {
		*unenforced = append(*unenforced, where+": cors filter_enabled, shadow_enabled or allow_private_network_access (the policy applies to every request)")
	}
	return out, nil
}
