package xdstranslate

import (
	"fmt"
	"net/url"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/model"
)

// Request authentication in xDS: the RequestAuthentications that select a
// workload (same scoping as AuthorizationPolicy) become one
// envoy.filters.http.jwt_authn filter on its inbound HTTP listeners,
// before the RBAC filters. Each jwtRules entry is a provider named
// "<namespace>/<name>/<index>" (issuer, audiences, local_jwks inline or
// remote_jwks with the jwksUri, from_headers, from_params, forward,
// forward_payload_header, payload_in_metadata = the issuer); one rule for
// every path requires any provider or allows a missing token, so an
// invalid token is rejected (401) and a missing one passes, as in Istio.
// remote_jwks names the jwksUri's host and port as its cluster: Weft's
// proxy fetches the URI itself.

// JWTFilterName is the JWT authentication filter.
const JWTFilterName = "envoy.filters.http.jwt_authn"

// jwksCacheDuration is how long a sidecar uses fetched keys.
const jwksCacheDuration = 5 * time.Minute

type jwtSet struct {
	reqs []*model.RequestAuthentication
}

func (t *Translator) jwtFor(ns string, labels map[string]string) *jwtSet {
	root := t.snap.MeshTelemetry.Root()
	var s jwtSet
	for _, ra := range t.snap.RequestAuthentications {
		if !policySelects(ra.Namespace, ra.Spec.GetSelector().GetMatchLabels(), ns, labels, root) {
			continue
		}
		if len(ra.Spec.GetJwtRules()) > 0 {
			s.reqs = append(s.reqs, ra)
		}
	}
	if len(s.reqs) == 0 {
		return nil
	}
	return &s
}

func (s *jwtSet) httpFilter() *hcm.HttpFilter {
	if s == nil {
		return nil
	}
	cfg := &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{}}
	var any, required []*jwtauthn.JwtRequirement
	for _, ra := range s.reqs {
		for i, r := range ra.Spec.GetJwtRules() {
			name := fmt.Sprintf("%s/%s/%d", ra.Namespace, ra.Name, i)
			p := &jwtauthn.JwtProvider{
				Issuer:               r.GetIssuer(),
				Audiences:            r.GetAudiences(),
				Forward:              r.GetForwardOriginalToken(),
				FromParams:           r.GetFromParams(),
				ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
				PayloadInMetadata:    r.GetIssuer(),
			}
			for _, h := range r.GetFromHeaders() {
				p.FromHeaders = append(p.FromHeaders, &jwtauthn.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
			}
			if r.GetJwks() != "" {
				p.JwksSourceSpecifier = &jwtauthn.JwtProvider_LocalJwks{LocalJwks: &core.DataSource{
					Specifier: &core.DataSource_InlineString{InlineString: r.GetJwks()},
				}}
			} else {
				cluster := r.GetJwksUri()
				if u, err := url.Parse(r.GetJwksUri()); err == nil {
					cluster = u.Host
				}
				p.JwksSourceSpecifier = &jwtauthn.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthn.RemoteJwks{
					HttpUri: &core.HttpUri{
						Uri:              r.GetJwksUri(),
						HttpUpstreamType: &core.HttpUri_Cluster{Cluster: cluster},
						Timeout:          durationpb.New(5 * time.Second),
					},
					CacheDuration: durationpb.New(jwksCacheDuration),
				}}
			}
			cfg.Providers[name] = p
			pr := &jwtauthn.JwtRequirement{RequiresType: &jwtauthn.JwtRequirement_ProviderName{ProviderName: name}}
			any = append(any, pr)
			if r.GetPresence() == security.JWTRule_REQUIRED {
				required = append(required, pr)
			}
		}
	}
	any = append(any, &jwtauthn.JwtRequirement{RequiresType: &jwtauthn.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	requires := &jwtauthn.JwtRequirement{
		RequiresType: &jwtauthn.JwtRequirement_RequiresAny{RequiresAny: &jwtauthn.JwtRequirementOrList{Requirements: any}},
	}
	if len(required) > 0 {
		// presence REQUIRED: each such provider's token, and any valid
		// token (or none) for the rest.
		requires = &jwtauthn.JwtRequirement{RequiresType: &jwtauthn.JwtRequirement_RequiresAll{
			RequiresAll: &jwtauthn.JwtRequirementAndList{Requirements: append(required, requires)},
		}}
	}
	cfg.Rules = []*jwtauthn.RequirementRule{{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtauthn.RequirementRule_Requires{Requires: requires},
	}}
	return &hcm.HttpFilter{Name: JWTFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}
