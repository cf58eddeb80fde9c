package logfilter_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"weft.dev/weft/internal/logfilter"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// request is one finished request, seen by CEL as Envoy's attributes and
// by the sidecar as a LogInput.
type request struct {
	method, target, host string
	headers              map[string]string
	code                 int
	duration             time.Duration
	flags                string
	grpc                 int
	// noResponse: no response was sent (a TCP connection, a client that
	// went away): CEL has no response.code or response.grpc_status.
	noResponse bool
}

// The durations avoid lasting exactly as long as a > or <= literal, to
// the nanosecond: Envoy compares whole milliseconds, and the translation
// takes such a request as longer (see the request.duration case).
var requests = []request{
	{method: "GET", target: "/productpage", host: "productpage:9080", headers: map[string]string{"user-agent": "curl/8.0", "x-request-id": "a1"}, code: 200, duration: 3 * time.Millisecond, grpc: 0},
	{method: "POST", target: "/api/v1/orders?debug=1", host: "orders", headers: map[string]string{"end-user": "jason", "x-request-id": "b2"}, code: 503, duration: 1500 * time.Millisecond, flags: "UF,URX", grpc: 14},
	{method: "GET", target: "/healthz", host: "reviews", headers: map[string]string{"user-agent": "kube-probe/1.30"}, code: 404, duration: 0, flags: "NR", grpc: 12},
	{method: "PUT", target: "/api/v2/items?x=/api", host: "ratings", headers: map[string]string{"end-user": "anna", "referer": "https://shop/"}, code: 429, duration: 998*time.Millisecond + 800*time.Microsecond, grpc: 14},
	{method: "GET", target: "/static/app.js", host: "productpage", headers: map[string]string{}, code: 304, duration: 1000*time.Millisecond + 300*time.Microsecond, grpc: 2},
	{method: "POST", target: "/api/v1/orders", host: "orders", headers: map[string]string{"end-user": "jason", "user-agent": "kube-probe/1.30"}, code: 400, duration: 1001 * time.Millisecond, grpc: 3},
	{method: "DELETE", target: "/api/v1/orders/7", host: "orders", headers: map[string]string{"x-debug": ""}, code: 500, duration: 2 * time.Second, flags: "UT", grpc: 13},
	{method: "GET", target: "/slow", host: "reviews", headers: map[string]string{}, code: 200, duration: time.Second + 500*time.Microsecond, grpc: 2},
	{method: "GET", target: "/fast", host: "reviews", headers: map[string]string{}, code: 200, duration: 999*time.Millisecond + 500*time.Microsecond, grpc: 2},
	{method: "GET", target: "/tiny", host: "reviews", headers: map[string]string{}, code: 200, duration: 1700 * time.Microsecond, grpc: 2},
	{method: "GET", target: "/gone", host: "reviews", headers: map[string]string{}, code: 0, duration: 5 * time.Millisecond, flags: "DC", grpc: 2, noResponse: true},
}

// expressions Istio's users write, and harder ones: each must log exactly
// the requests CEL itself says it should.
var expressions = []string{
	`response.code >= 400`,
	`response.code >= 500`,
	`response.code != 200`,
	`response.code == 404 || response.code == 503`,
	`response.code > 399 && response.code < 500`,
	`400 <= response.code`,
	`!(response.code < 400)`,
	`response.code >= 400 && !request.url_path.startsWith('/healthz')`,
	`request.duration > duration('1s')`,
	`request.duration >= duration('1s')`,
	`request.duration < duration('1s') && response.code == 200`,
	`request.duration <= duration('999ms')`,
	`request.headers['end-user'] == 'jason'`,
	`request.headers['end-user'] != 'jason'`,
	`!(request.headers['end-user'] == 'jason')`,
	`request.headers['user-agent'].startsWith('kube-probe')`,
	`!request.headers['user-agent'].startsWith('kube-probe')`,
	`'end-user' in request.headers`,
	`!('end-user' in request.headers)`,
	`has(request.headers.referer)`,
	`!has(request.headers.referer) && response.code >= 300`,
	`request.method == 'GET'`,
	`request.method != 'GET' && response.code >= 400`,
	`request.path.startsWith('/api/')`,
	`request.path.contains('/api')`,
	`request.url_path.contains('/api')`,
	`request.url_path == '/api/v1/orders'`,
	`request.url_path.endsWith('/orders')`,
	`request.path.endsWith('=1')`,
	`request.path.matches('v[0-9]+')`,
	`request.host == 'orders'`,
	`request.useragent.contains('curl')`,
	`request.referer.startsWith('https://')`,
	`request.id == 'a1'`,
	`response.grpc_status == 14`,
	`response.grpc_status != 0`,
	`response.grpc_status >= 13`,
	`response.flags != 0`,
	`request.method in ['GET', 'DELETE']`,
	`!(request.method in ['GET', 'DELETE'])`,
	`response.code in [404, 503] || request.headers['end-user'] in ['anna']`,
	`!(response.code in [200, 304])`,
	`(response.code >= 500 || request.duration > duration('1s')) && request.method != 'DELETE'`,
	`!(response.code >= 500 || request.headers['end-user'] == 'anna')`,
	// lists
	`!(request.headers['end-user'] in ['anna', 'jason'])`,
	`request.referer in ['https://shop/']`,
	`!(request.useragent in ['curl/8.0'])`,
	`response.code in [0, 200]`,
	`!(response.code in [0, 200])`,
	`response.grpc_status in [0, 14]`,
	`!(response.grpc_status in [2])`,
	`response.code in [404u, 503]`,
	`404 in [response.code]`,
	`request.url_path in ['/healthz', '/api/v1/orders']`,
	`!(request.url_path in ['/healthz'])`,
	`request.path in ['/api/v1/orders?debug=1']`,
	`request.scheme in ['http']`,
	`request.host in ['orders', 'reviews'] && !(request.method in ['GET'])`,
	`!(response.flags in [0])`,
	`response.code in [404, 404]`,
	// edges: query strings, empty literals, TCP-like requests
	`request.url_path == '/api/v1/orders?debug=1'`,
	`request.url_path.startsWith('/api/v1/orders?')`,
	`request.url_path.endsWith('?debug=1')`,
	`!request.url_path.contains('?')`,
	`response.code > 9223372036854775807`,
	`response.code < -9223372036854775808`,
	`response.code < 400`,
	`response.code != 200`,
	`!(response.code >= 400)`,
	`response.grpc_status == 2`,
	`response.code >= 400u`,
	`request.headers['x-debug'].startsWith('')`,
	`!request.useragent.contains('')`,
	`request.url_path.startsWith('')`,
	`request.url_path != '/api/v1/orders?debug=1'`,
	`!request.url_path.endsWith('?debug=1')`,
	`response.grpc_status != 0 && response.code != 200`,
	`!(response.grpc_status == 2)`,
}

func TestTranslationAgreesWithCEL(t *testing.T) {
	env, err := cel.NewEnv(
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("response", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range expressions {
		f, err := logfilter.Compile(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		var unenforced []string
		lf, err := proxyconfig.ParseLogFilter(f, "test", &unenforced)
		if err != nil || len(unenforced) > 0 {
			t.Errorf("%s: the sidecar refuses its translation %v: %v %v", expr, f, err, unenforced)
			continue
		}
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range requests {
			out, _, _ := prg.Eval(r.attributes())
			want := out == types.True // an error does not log, as in Envoy's CEL filter
			if got := router.Logged(&lf, r.input()); got != want {
				t.Errorf("%s, request %d (%s %s %d): the sidecar logs %v, CEL says %v (CEL: %v; filter %v)", expr, i, r.method, r.target, r.code, got, want, out, f)
			}
		}
	}
}

func (r request) attributes() map[string]any {
	req := map[string]any{
		"method": r.method, "path": r.target, "url_path": strings.SplitN(r.target, "?", 2)[0],
		"host": r.host, "scheme": "http", "duration": r.duration, "headers": r.headers,
	}
	for attr, h := range map[string]string{"id": "x-request-id", "useragent": "user-agent", "referer": "referer"} {
		if v, ok := r.headers[h]; ok {
			req[attr] = v
		}
	}
	flags := 0
	if r.flags != "" {
		flags = 1
	}
	resp := map[string]any{"code": r.code, "grpc_status": r.grpc, "flags": flags}
	if r.noResponse {
		delete(resp, "code")
		delete(resp, "grpc_status")
	}
	return map[string]any{"request": req, "response": resp}
}

func (r request) input() *router.LogInput {
	u, err := url.ParseRequestURI(r.target)
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	for k, v := range r.headers {
		h.Set(k, v)
	}
	hr := &http.Request{Method: r.method, URL: u, Header: h, Host: r.host}
	return &router.LogInput{Request: &router.Request{HTTP: hr, Authority: r.host}, Code: r.code, Duration: r.duration, Flags: r.flags, GRPCStatus: r.grpc}
}

func TestCompileErrors(t *testing.T) {
	for expr, want := range map[string]string{
		``:                                        "the expression is empty",
		`response.code >=`:                        "not a CEL expression",
		`true`:                                    "always true",
		`response.size > 100`:                     "`response.size`: not an attribute Weft can filter access logs on",
		`respnse.code >= 400`:                     "`respnse.code`: not an attribute",
		`response.code >= '400'`:                  "response.code is compared with an integer",
		`request.duration > 1000`:                 "duration('1s')",
		`request.duration == duration('1s')`:      "compared with <, <=, > or >=",
		`!(request.duration != duration('1s'))`:   "compared with <, <=, > or >=",
		`request.duration > duration('1500us')`:   "whole, positive number",
		`request.headers['x\n'] == 'a'`:           "a header name",
		`request.headers[''] == 'a'`:              "a header name",
		`request.headers[1].startsWith('a')`:      "a header name",
		`request.method.startsWith(request.path)`: "needs a string literal",
		`request.url_path.matches('^/a')`:         "matches is translated on request.path",
		`request.path.matches('(')`:               "the regular expression is invalid",
		`response.flags == 0`:                     "response.flags != 0",
		`request.headers['x'] > 'a'`:              "compared with a string literal by == or !=",
		`size(request.path) > 3`:                  "compares no request or response attribute",
		`response.code >= 400 ? true : false`:     "?: is not translated",
		`connection.mtls`:                         "not a condition on an attribute",
		`1 + 2`:                                   "+ is not translated",
		`[1, 2]`:                                  "not a condition",
		`request.method`:                          "not a condition on an attribute",
	} {
		_, err := logfilter.Compile(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q) = %v, want an error with %q", expr, err, want)
		}
	}
}
