package httpproxy

import (
	"errors"
	"net/http"
	"time"

	"weft.dev/weft/internal/proxy/jwtauth"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/rbac"
)

// authenticate runs the JWT filter: a valid token sets in.Auth
// (request.auth.* for authorization); an invalid one, or a missing one
// where missing tokens are not allowed (or the provider's token is
// required), gets 401 with Envoy's words.
func (p *Proxy) authenticate(j *proxyconfig.JWTAuthn, in *rbac.Input, r *http.Request) *localDenial {
	now := time.Now()
	for _, rp := range j.Required {
		// Before Authenticate, which may take the token out of r.
		if err := jwtauth.Present(r.Context(), rp, p.jwks, r, now); err != nil {
			msg := "Jwt verification fails"
			var je *jwtauth.Error
			if errors.As(err, &je) {
				msg = je.Message
			}
			p.log.Debug("request authentication failed: a required token", "provider", rp.Name, "error", msg, "path", r.URL.Path)
			return &localDenial{status: http.StatusUnauthorized, flag: "", msg: msg}
		}
	}
	auth, err := jwtauth.Authenticate(r.Context(), j.Providers, p.jwks, r, now)
	if err != nil {
		msg := "Jwt verification fails"
		var je *jwtauth.Error
		if errors.As(err, &je) {
			msg = je.Message
		}
		p.log.Debug("request authentication failed", "error", msg, "path", r.URL.Path)
		return &localDenial{status: http.StatusUnauthorized, flag: "", msg: msg}
	}
	if auth == nil && !j.AllowMissing {
		return &localDenial{status: http.StatusUnauthorized, flag: "", msg: "Jwt is missing"}
	}
	in.Auth = auth
	return nil
}
