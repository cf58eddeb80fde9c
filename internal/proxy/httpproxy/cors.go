package httpproxy

import (
	"net/http"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// corsState is an allowed cross-origin request's policy and origin, whose
// response gets the CORS headers.
type corsState struct {
	policy *proxyconfig.CORS
	origin string
}

// cors applies a route's CORS policy as Envoy's CORS filter does, before
// the request is routed further. A request without an Origin goes on
// untouched. A preflight (OPTIONS with Access-Control-Request-Method)
// from an allowed origin is answered here, 200 with the policy's
// Access-Control-* headers; from another origin it goes on to the
// upstream unless the policy says to ignore it (then answered with the
// policy's preflight headers but no origin). Any other request from an
// allowed origin goes on, and
// its response gets Access-Control-Allow-Origin (and credentials and
// exposed headers as configured). It reports whether it answered.
func (p *Proxy) cors(sw *statusWriter, rs *reqState, r *http.Request, c *proxyconfig.CORS, clusterName *string) bool {
	v := r.Header["Origin"]
	if len(v) == 0 || v[0] == "" {
		return false
	}
	origin := v[0]
	allowed := false
	for i := range c.AllowOrigins {
		// A matcher that matches "*" allows every origin, as in Envoy.
		if m := &c.AllowOrigins[i]; router.MatchString(m, origin) || router.MatchString(m, "*") {
			allowed = true
			break
		}
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	switch {
	case preflight && allowed:
		p.countAgainstRoute(rs, r, clusterName)
		h := sw.Header()
		setCORS(h, c, origin)
		setPreflight(h, c, r)
		sw.WriteHeader(http.StatusOK)
		return true
	case preflight && !c.ForwardUnmatchedPreflights:
		// As Envoy: the policy's preflight headers, but no origin.
		p.countAgainstRoute(rs, r, clusterName)
		h := sw.Header()
		if c.AllowCredentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		setPreflight(h, c, r)
		sw.WriteHeader(http.StatusOK)
		return true
	case allowed && !preflight:
		rs.cors = &corsState{policy: c, origin: origin}
	}
	return false
}

// setPreflight sets a preflight answer's methods, headers and max age;
// "*" grants what the preflight asks for, as Envoy answers it (with
// credentials a browser reads "*" literally).
func setPreflight(h http.Header, c *proxyconfig.CORS, r *http.Request) {
	if m := c.AllowMethods; m == "*" {
		h.Set("Access-Control-Allow-Methods", r.Header.Get("Access-Control-Request-Method"))
	} else if m != "" {
		h.Set("Access-Control-Allow-Methods", m)
	}
	if hs := c.AllowHeaders; hs == "*" {
		if asked := r.Header.Get("Access-Control-Request-Headers"); asked != "" {
			h.Set("Access-Control-Allow-Headers", asked)
		}
	} else if hs != "" {
		h.Set("Access-Control-Allow-Headers", hs)
	}
	if c.MaxAge != "" {
		h.Set("Access-Control-Max-Age", c.MaxAge)
	}
}

// setCORS sets the headers every answer to an allowed origin carries.
func setCORS(h http.Header, c *proxyconfig.CORS, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.ExposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
	}
}
