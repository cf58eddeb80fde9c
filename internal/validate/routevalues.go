package validate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// The values of an http route that the sidecar's xDS client parses
// (proxyconfig.ParseRouteConfig): one it refuses makes it refuse the whole
// route configuration of the port, for every VirtualService on it. So
// every value it would refuse is an error here, on its field, and the
// VirtualService's last good version stays in force.

// checkHTTPRouteValues checks the values of one http route (field f):
// match regexes and names, rewrite, header operations, timeouts, retries,
// redirect and direct response.
func checkHTTPRouteValues(rep *reporter, f string, h *networking.HTTPRoute) {
	for i, m := range h.GetMatch() {
		checkMatchValues(rep, fmt.Sprintf("%s.match[%d]", f, i), m)
	}
	checkRewrite(rep, f, h)
	checkHeaders(rep, f+".headers", h.GetHeaders())
	for j, d := range h.GetRoute() {
		checkHeaders(rep, fmt.Sprintf("%s.route[%d].headers", f, j), d.GetHeaders())
	}
	if t := h.GetTimeout(); t != nil && t.AsDuration() < 0 {
		rep.errorf(f+".timeout", "timeout %v is negative; use a positive duration, or 0s for no timeout", t.AsDuration())
	}
	checkRetries(rep, f+".retries", h.GetRetries())
	if rd := h.GetRedirect(); rd != nil {
		if c := rd.GetRedirectCode(); c != 0 && !redirectCodes[c] {
			rep.errorf(f+".redirect.redirectCode", "redirectCode %d is not supported; use 301 (the default), 302, 303, 307 or 308", c)
		}
		if p, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok && p.Port != 0 {
			checkPortNumber(rep, f+".redirect.port", p.Port)
		}
	}
	if d := h.GetDirectResponse(); d != nil && (d.GetStatus() < 200 || d.GetStatus() > 599) {
		rep.errorf(f+".directResponse.status", "status %d is not an HTTP status from 200 to 599", d.GetStatus())
	}
}

// redirectCodes are the redirect statuses the sidecar serves (Envoy's
// RedirectResponseCode); 0 means 301.
var redirectCodes = map[uint32]bool{301: true, 302: true, 303: true, 307: true, 308: true}

// checkMatchValues checks one match of an http route (field f).
func checkMatchValues(rep *reporter, f string, m *networking.HTTPMatchRequest) {
	// An empty uri regex is refused; an empty regex elsewhere means
	// "present", as an empty exact or prefix does.
	if re, ok := m.GetUri().GetMatchType().(*networking.StringMatch_Regex); ok && re.Regex == "" {
		rep.errorf(f+".uri.regex", "regex is empty; give an RE2 regex the whole path must match, or use prefix \"/\" to match every path")
	} else {
		checkStringMatchRegex(rep, f+".uri", m.GetUri())
	}
	checkStringMatchRegex(rep, f+".scheme", m.GetScheme())
	checkStringMatchRegex(rep, f+".method", m.GetMethod())
	checkStringMatchRegex(rep, f+".authority", m.GetAuthority())
	for _, list := range []struct {
		name string
		m    map[string]*networking.StringMatch
	}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}, {"queryParams", m.GetQueryParams()}} {
		what := "header"
		if list.name == "queryParams" {
			what = "query parameter"
		}
		for _, k := range slices.Sorted(maps.Keys(list.m)) {
			kf := f + "." + list.name + "[" + k + "]"
			if k == "" {
				rep.errorf(kf, "%s name is empty; give the name of the %s to match", what, what)
			}
			checkStringMatchRegex(rep, kf, list.m[k])
		}
	}
}

// checkStringMatchRegex checks the regex of a StringMatch (field f), if it
// is one.
func checkStringMatchRegex(rep *reporter, f string, sm *networking.StringMatch) {
	if re, ok := sm.GetMatchType().(*networking.StringMatch_Regex); ok && re.Regex != "" {
		checkRegex(rep, f+".regex", re.Regex, true)
	}
}

// checkRegex reports a regex (field f) the sidecar cannot compile. It
// compiles them as the sidecar does: RE2 syntax (Go's regexp, which
// Envoy's and Istio's RE2 agree with), and a match regex anchored to the
// whole value ("^(?:" + expr + ")$"). The expression must also compile on
// its own, so that the anchors cannot pair with a stray parenthesis.
func checkRegex(rep *reporter, f, expr string, anchored bool) {
	_, err := regexp.Compile(expr)
	if err == nil && anchored {
		_, err = regexp.Compile(`^(?:` + expr + `)$`)
	}
	if err != nil {
		rep.errorf(f, "regex %q does not compile (RE2 syntax): %v", expr, err)
	}
}

// checkRewrite checks a route's rewrite against its matches.
func checkRewrite(rep *reporter, f string, h *networking.HTTPRoute) {
	rw := h.GetRewrite()
	if rw == nil {
		return
	}
	if rr := rw.GetUriRegexRewrite(); rr != nil {
		if rw.GetUri() != "" {
			rep.errorf(f+".rewrite", "set uri or uriRegexRewrite, not both")
		}
		if rr.GetMatch() == "" {
			rep.errorf(f+".rewrite.uriRegexRewrite.match", "match is empty; give an RE2 regex of the part of the path to rewrite")
		} else {
			checkRegex(rep, f+".rewrite.uriRegexRewrite.match", rr.GetMatch(), false)
		}
	}
	if rw.GetUri() != "" {
		for i, m := range h.GetMatch() {
			if matchesURIByRegex(m) {
				rep.errorf(f+".rewrite.uri", "uri replaces the path prefix a match matched, but match[%d] matches the uri by regex; use uriRegexRewrite instead", i)
				break
			}
		}
	}
}

func matchesURIByRegex(m *networking.HTTPMatchRequest) bool {
	_, ok := m.GetUri().GetMatchType().(*networking.StringMatch_Regex)
	return ok
}

// checkHeaders checks the header operations of a route or destination
// (field f): the sidecar sets no pseudo-header but :authority, removes no
// host or pseudo-header, and takes no header value with a line break or
// other control character.
func checkHeaders(rep *reporter, f string, h *networking.Headers) {
	for _, part := range []struct {
		name string
		ops  *networking.Headers_HeaderOperations
	}{{"request", h.GetRequest()}, {"response", h.GetResponse()}} {
		pf := f + "." + part.name
		for _, list := range []struct {
			name string
			m    map[string]string
		}{{"set", part.ops.GetSet()}, {"add", part.ops.GetAdd()}} {
			for _, k := range slices.Sorted(maps.Keys(list.m)) {
				kf := pf + "." + list.name + "[" + k + "]"
				switch {
				case k == "":
					rep.errorf(kf, "header name is empty; give the name of the header to %s", list.name)
				case strings.HasPrefix(k, ":") && !strings.EqualFold(k, ":authority"):
					rep.errorf(kf, "%q is a pseudo-header, which cannot be %s (only :authority or host can); use rewrite to change the path", k, pastTense(list.name))
				case !strings.HasPrefix(k, ":") && !httpguts.ValidHeaderFieldName(k):
					rep.errorf(kf, "%q is not a valid header name; use letters, digits and !#$%%&'*+-.^_`|~", k)
				}
				if c, ok := controlChar(list.m[k]); ok {
					rep.errorf(kf, "the value of header %q has the control character %q; header values cannot hold line breaks or other control characters (a tab is fine)", k, c)
				}
			}
		}
		for i, name := range part.ops.GetRemove() {
			rf := fmt.Sprintf("%s.remove[%d]", pf, i)
			switch {
			case name == "":
				rep.errorf(rf, "header name is empty; give the name of the header to remove")
			case strings.HasPrefix(name, ":") || strings.EqualFold(name, "host"):
				rep.errorf(rf, "%q cannot be removed: the host and the pseudo-headers are part of every request and response; take it out of remove", name)
			}
		}
	}
}

func pastTense(op string) string {
	if op == "add" {
		return "added"
	}
	return op
}

// controlChar returns the first control character of a header value
// other than a tab (RFC 9110 section 5.5).
func controlChar(v string) (byte, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return c, true
		}
	}
	return 0, false
}

// checkRetries checks a route's retry policy (field f).
func checkRetries(rep *reporter, f string, r *networking.HTTPRetry) {
	if r == nil {
		return
	}
	if r.GetAttempts() < 0 {
		rep.errorf(f+".attempts", "attempts %d is negative; use 0 to turn retries off", r.GetAttempts())
	}
	if t := r.GetPerTryTimeout(); t != nil && t.AsDuration() < 0 {
		rep.errorf(f+".perTryTimeout", "perTryTimeout %v is negative; use a positive duration", t.AsDuration())
	}
	if b := r.GetBackoff(); b != nil && b.AsDuration() <= 0 {
		rep.errorf(f+".backoff", "backoff %v is not more than 0; use a positive base interval, such as 25ms (the default when it is not set)", b.AsDuration())
	}
	for _, s := range strings.Split(r.GetRetryOn(), ",") {
		name, n, isCode := model.RetryOnItem(s)
		switch {
		case name == "":
		case isCode:
			if n < 100 || n > 599 {
				rep.errorf(f+".retryOn", "retryOn %q is not an HTTP status from 100 to 599", strings.TrimSpace(s))
			}
		case !slices.Contains(model.RetryConditions, name):
			rep.errorf(f+".retryOn", "retryOn %q is not a retry condition%s; use %s, or an HTTP status code to retry on",
				strings.TrimSpace(s), didYouMean(name, model.RetryConditions), strings.Join(model.RetryConditions, ", "))
		}
	}
}

// didYouMean suggests the closest of names to s, when one is close.
func didYouMean(s string, names []string) string {
	if best := config.Closest(s, names); best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}
