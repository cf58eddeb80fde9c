package proxyconfig

import (
	"errors"
	"fmt"
	"net/url"
	"sort"

	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"weft.dev/weft/internal/proxy/jwtauth"
)

const typeJWTAuthn = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"

// JWTAuthn is a validated envoy.filters.http.jwt_authn filter: requests
// are authenticated against any of its providers; a missing token is
// allowed when AllowMissing is set (what Weft's control plane sends), an
// invalid token never is. A request must also carry a valid token for
// each of Required.
type JWTAuthn struct {
	// Providers in name order; inline key sets are parsed.
	Providers []*jwtauth.Provider
	// AllowMissing lets requests without a token through.
	AllowMissing bool
	// Required are providers whose token every request needs
	// (RequestAuthentication presence REQUIRED), in name order.
	Required []*jwtauth.Provider
}

func parseJWTAuthn(tc *anypb.Any) (*JWTAuthn, error) {
	cfg := &jwtauthn.JwtAuthentication{}
	if err := tc.UnmarshalTo(cfg); err != nil {
		return nil, err
	}
	out := &JWTAuthn{}
	names := make([]string, 0, len(cfg.GetProviders()))
	for n := range cfg.GetProviders() {
		names = append(names, n)
	}
	sort.Strings(names)
	byName := map[string]bool{}
	for _, n := range names {
		p := cfg.GetProviders()[n]
		if p.GetIssuer() == "" {
			return nil, fmt.Errorf("provider %q: issuer is empty", n)
		}
		jp := &jwtauth.Provider{
			Name: n, Issuer: p.GetIssuer(), Audiences: p.GetAudiences(), FromParams: p.GetFromParams(),
			Forward: p.GetForward(), PayloadHeader: p.GetForwardPayloadHeader(),
		}
		for _, h := range p.GetFromHeaders() {
			jp.FromHeaders = append(jp.FromHeaders, jwtauth.HeaderLocation{Name: h.GetName(), Prefix: h.GetValuePrefix()})
		}
		switch src := p.GetJwksSourceSpecifier().(type) {
		case *jwtauthn.JwtProvider_LocalJwks:
			ks, err := jwtauth.ParseJWKS(src.LocalJwks.GetInlineString())
			if err != nil {
				return nil, fmt.Errorf("provider %q: local_jwks: %w", n, err)
			}
			jp.Keys = ks
		case *jwtauthn.JwtProvider_RemoteJwks:
			u, err := url.Parse(src.RemoteJwks.GetHttpUri().GetUri())
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("provider %q: remote_jwks.http_uri.uri %q: want an http(s) URL", n, src.RemoteJwks.GetHttpUri().GetUri())
			}
			jp.JWKSURI = u.String()
			jp.CacheDuration = src.RemoteJwks.GetCacheDuration().AsDuration()
		default:
			return nil, fmt.Errorf("provider %q: needs local_jwks or remote_jwks", n)
		}
		out.Providers = append(out.Providers, jp)
		byName[n] = true
	}
	if len(cfg.GetRules()) != 1 {
		return nil, errors.New("want exactly one rule (match prefix \"/\")")
	}
	rule := cfg.GetRules()[0]
	if rule.GetMatch().GetPrefix() != "/" {
		return nil, errors.New("rules[0].match: only prefix \"/\" is supported")
	}
	req := rule.GetRequires()
	if all := req.GetRequiresAll(); all != nil {
		// Required providers, and one requires_any for the rest.
		var anyReq *jwtauthn.JwtRequirement
		for i, r := range all.GetRequirements() {
			switch x := r.GetRequiresType().(type) {
			case *jwtauthn.JwtRequirement_ProviderName:
				if !byName[x.ProviderName] {
					return nil, fmt.Errorf("rules[0].requires_all[%d]: unknown provider %q", i, x.ProviderName)
				}
				out.Required = append(out.Required, providerNamed(out.Providers, x.ProviderName))
			case *jwtauthn.JwtRequirement_RequiresAny:
				if anyReq != nil {
					return nil, fmt.Errorf("rules[0].requires_all[%d]: only one requires_any is supported", i)
				}
				anyReq = r
			default:
				return nil, fmt.Errorf("rules[0].requires_all[%d]: only provider_name and requires_any are supported", i)
			}
		}
		sort.Slice(out.Required, func(i, j int) bool { return out.Required[i].Name < out.Required[j].Name })
		req = anyReq
		if req == nil {
			return out, nil
		}
	}
	var reqs []*jwtauthn.JwtRequirement
	switch {
	case req.GetRequiresAny() != nil:
		reqs = req.GetRequiresAny().GetRequirements()
	case req != nil:
		reqs = []*jwtauthn.JwtRequirement{req}
	default:
		return nil, errors.New("rules[0]: needs requires")
	}
	for i, r := range reqs {
		switch x := r.GetRequiresType().(type) {
		case *jwtauthn.JwtRequirement_ProviderName:
			if !byName[x.ProviderName] {
				return nil, fmt.Errorf("rules[0].requires[%d]: unknown provider %q", i, x.ProviderName)
			}
		case *jwtauthn.JwtRequirement_AllowMissing:
			out.AllowMissing = true
		default:
			return nil, fmt.Errorf("rules[0].requires[%d]: only provider_name and allow_missing are supported", i)
		}
	}
	return out, nil
}

func providerNamed(ps []*jwtauth.Provider, name string) *jwtauth.Provider {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}
