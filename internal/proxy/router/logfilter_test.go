package router

import (
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// TestLoggedConnection: a TCP connection has no headers and no response
// code; a header filter passes it only when it asks for the header's
// absence, and response flags and durations count as for requests.
func TestLoggedConnection(t *testing.T) {
	absent := proxyconfig.LogFilter{Kind: proxyconfig.LogHeader, HeaderKey: "X-Debug", Header: proxyconfig.HeaderMatcher{Name: "x-debug", Match: proxyconfig.StringMatcher{Kind: proxyconfig.MatchPresent}, Present: true, Invert: true}}
	present := absent
	present.Header.Invert = false
	exact := proxyconfig.LogFilter{Kind: proxyconfig.LogHeader, HeaderKey: "X-Debug", Header: proxyconfig.HeaderMatcher{Name: "x-debug", Match: proxyconfig.StringMatcher{Kind: proxyconfig.MatchExact, Value: "on"}, Invert: true}}
	errors := proxyconfig.LogFilter{Kind: proxyconfig.LogStatus, Op: proxyconfig.CompareGE, Value: 400}
	anyFlag := proxyconfig.LogFilter{Kind: proxyconfig.LogResponseFlags}
	connectFailed := proxyconfig.LogFilter{Kind: proxyconfig.LogResponseFlags, Flags: []string{"UF"}}
	long := proxyconfig.LogFilter{Kind: proxyconfig.LogDuration, Op: proxyconfig.CompareGE, Value: 1000}
	for _, c := range []struct {
		name string
		f    proxyconfig.LogFilter
		in   LogInput
		want bool
	}{
		{"header absent", absent, LogInput{}, true},
		{"header present", present, LogInput{}, false},
		{"inverted exact on a missing header", exact, LogInput{}, false},
		{"status", errors, LogInput{}, false},
		{"no flags", anyFlag, LogInput{Flags: "-"}, false},
		{"a flag", anyFlag, LogInput{Flags: "UF,URX"}, true},
		{"the flag", connectFailed, LogInput{Flags: "UH,UF"}, true},
		{"another flag", connectFailed, LogInput{Flags: "UH"}, false},
		{"long", long, LogInput{Duration: 1500 * time.Millisecond}, true},
		{"short", long, LogInput{Duration: 999 * time.Millisecond}, false},
	} {
		if got := Logged(&c.f, &c.in); got != c.want {
			t.Errorf("%s: Logged = %v, want %v", c.name, got, c.want)
		}
	}
}
