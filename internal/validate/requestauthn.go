package validate

import (
	"fmt"
	"net/url"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/jwtauth"
)

// checkRequestAuthentication checks a RequestAuthentication: every
// jwtRules entry has an issuer and exactly one of jwks (a valid key set)
// or jwksUri (an http(s) URL; Weft does not discover keys from the
// issuer); fromHeaders have names. Fields Weft does not enforce are
// refused (fromCookies, outputClaimToHeaders, spaceDelimitedClaims,
// targetRef) or, for timeout, accepted with a warning.
func (b *build) checkRequestAuthentication(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*security.RequestAuthentication)).(*security.RequestAuthentication)
	if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
		rep.errorf("spec.targetRef", "targetRef/targetRefs are not supported; select workloads with spec.selector.matchLabels")
	}
	if len(spec.GetJwtRules()) == 0 {
		rep.warnf("spec.jwtRules", "no jwtRules: the policy changes nothing")
	}
	seen := map[string]bool{}
	for i, jr := range spec.GetJwtRules() {
		at := fmt.Sprintf("spec.jwtRules[%d]", i)
		if jr.GetIssuer() == "" {
			rep.errorf(at+".issuer", "issuer is required")
		} else if seen[jr.GetIssuer()] {
			rep.errorf(at+".issuer", "issuer %q appears twice; merge the rules", jr.GetIssuer())
		}
		seen[jr.GetIssuer()] = true
		switch {
		case jr.GetJwks() != "" && jr.GetJwksUri() != "":
			rep.errorf(at+".jwks", "set jwks or jwksUri, not both")
		case jr.GetJwks() != "":
			if _, err := jwtauth.ParseJWKS(jr.GetJwks()); err != nil {
				rep.errorf(at+".jwks", "%v", err)
			}
		case jr.GetJwksUri() != "":
			if u, err := url.Parse(jr.GetJwksUri()); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				rep.errorf(at+".jwksUri", "%q is not an http(s) URL", jr.GetJwksUri())
			}
		default:
			rep.errorf(at, "set jwks or jwksUri: Weft does not discover keys from the issuer (OpenID discovery)")
		}
		for j, h := range jr.GetFromHeaders() {
			if h.GetName() == "" {
				rep.errorf(fmt.Sprintf("%s.fromHeaders[%d].name", at, j), "header name is required")
			}
		}
		if len(jr.GetFromCookies()) > 0 {
			rep.errorf(at+".fromCookies", "fromCookies is not supported; use fromHeaders or fromParams")
		}
		if len(jr.GetOutputClaimToHeaders()) > 0 {
			rep.errorf(at+".outputClaimToHeaders", "outputClaimToHeaders is not supported; use outputPayloadToHeader")
		}
		if len(jr.GetSpaceDelimitedClaims()) > 0 {
			rep.errorf(at+".spaceDelimitedClaims", "spaceDelimitedClaims is not supported")
		}
		if jr.GetTimeout() != nil {
			rep.warnf(at+".timeout", "timeout is ignored: Weft's sidecar waits at most 5s for a jwksUri")
		}
	}
	b.checkFields(r, rep)
	return func() {
		b.snap.RequestAuthentications = append(b.snap.RequestAuthentications, &model.RequestAuthentication{Meta: r.Meta, Spec: spec})
	}
}
