package logfilter_test

import (
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/logfilter"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// TestTranslationsAreValid: what Compile accepts, Envoy accepts (its
// proto validation) and the sidecar parses.
func TestTranslationsAreValid(t *testing.T) {
	for _, expr := range []string{
		`request.headers['x'].startsWith('')`,
		`request.path.endsWith('')`,
		`request.useragent.contains('')`,
		`request.headers['bad header'] == 'a'`,
		`request.headers['x\n'] == 'a'`,
		`has(request.headers.x)`,
		`request.path.matches('\\Qv1')`,
		`request.path.matches('a\\')`,
		`request.path.matches('(?P<n>a)')`,
		`request.path.matches('\\C')`,
		`request.path.matches('a{1001}')`,
		`request.url_path == '` + strings.Repeat("/abcdefgh", 20) + `'`,
	} {
		f, err := logfilter.Compile(expr)
		if err != nil {
			t.Logf("%s: refused: %v", expr, err)
			continue
		}
		if err := f.ValidateAll(); err != nil {
			t.Errorf("%s: Envoy refuses the translation: %v", expr, err)
		}
		var un []string
		if _, err := proxyconfig.ParseLogFilter(f, "x", &un); err != nil {
			t.Errorf("%s: the sidecar refuses the translation: %v", expr, err)
		}
	}
}

// TestOddExpressions: expressions at the edges (deep nesting, huge
// literals, other attributes and types) are translated or refused, never
// a panic.
func TestOddExpressions(t *testing.T) {
	for _, expr := range []string{
		strings.Repeat("!", 500) + "(response.code >= 400)",
		strings.Repeat("(", 200) + "response.code >= 400" + strings.Repeat(")", 200),
		strings.TrimSuffix(strings.Repeat("response.code == 1 || ", 2000), " || "),
		`response.code == 18446744073709551615u`,
		`response.code == 9223372036854775808`,
		`request.duration > duration('1000000000h')`,
		`request.duration > duration('-1s')`,
		`has(request.headers)`,
		`has(request.headers.x.y)`,
		`request.headers.x.y == 'a'`,
		`request.headers[1] == 'a'`,
		`'' in request.headers`,
		`request.headers[''] == 'a'`,
		`response.flags != 0u`,
		`!(response.flags == 0)`,
		`response.flags >= 1`,
		`request.method in ['GET', 'POST']`,
		`response.code in [500, 503]`,
		`false`,
		`!true`,
		`response.code >= 400 && false`,
		`request.duration > duration('1s') || request.duration > duration(1)`,
		`request.size > 100`,
		`request.total_size > 100`,
		`request.time > timestamp('2024-01-01T00:00:00Z')`,
		`connection.mtls == true`,
		`source.address == '1.2.3.4'`,
		`request.path.matches('v[0-9]+') == true`,
		`request.headers.x.startsWith('a', 'b')`,
		`startsWith(request.path, 'a')`,
		`response.code == 200.0`,
		`request.method == "GET" && request.method == b"GET"`,
	} {
		_, err := logfilter.Compile(expr)
		if len(expr) > 80 {
			expr = expr[:80] + "..."
		}
		t.Logf("%s => %v", expr, err)
	}
}

// TestTCPConnections: a TCP connection (no request, no response) is logged
// only where CEL, which has no response.code, request.url_path or
// headers for it, says so.
func TestTCPConnections(t *testing.T) {
	for expr, want := range map[string]bool{
		`response.code < 400`:                  false,
		`response.code != 200`:                 false,
		`response.grpc_status == 2`:            false,
		`request.url_path == '/a?b'`:           false,
		`request.url_path != '/a?b'`:           false,
		`!request.url_path.contains('?')`:      false,
		`request.headers['x'].startsWith('')`:  false,
		`!request.headers['x'].startsWith('')`: false,
		`request.duration >= duration('0s')`:   true,
		`!has(request.headers.x)`:              true,
	} {
		f, err := logfilter.Compile(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		var un []string
		lf, err := proxyconfig.ParseLogFilter(f, "x", &un)
		if err != nil {
			t.Fatal(err)
		}
		if got := router.Logged(&lf, &router.LogInput{Duration: time.Second, GRPCStatus: router.GRPCUnknown}); got != want {
			t.Errorf("%s: a TCP connection is logged: %v, want %v", expr, got, want)
		}
	}
}
