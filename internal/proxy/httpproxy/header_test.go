package httpproxy

import (
	"net/http"
	"slices"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	fields := func() http.Header {
		return http.Header{
			"Connection":          {"keep-alive, X-Hop"},
			"Keep-Alive":          {"timeout=5"},
			"X-Hop":               {"1"},
			"Te":                  {"trailers"},
			"Transfer-Encoding":   {"chunked"},
			"Upgrade":             {"websocket"},
			"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
			"Proxy-Connection":    {"keep-alive"},
			"Trailer":             {"X-Sum"},
			"Forwarded":           {"for=203.0.113.9"},
			"X-Forwarded-For":     {"203.0.113.9"},
			"X-Forwarded-Host":    {"evil.example"},
			"X-Forwarded-Proto":   {"https"},
			"Content-Type":        {"text/plain"},
			"X-End-To-End":        {"kept"},
		}
	}
	keys := func(h http.Header) []string {
		var ks []string
		for k := range h {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	for _, tc := range []struct {
		forwarding bool
		want       []string
	}{
		{false, []string{"Content-Type", "Forwarded", "X-End-To-End", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}},
		{true, []string{"Content-Type", "X-End-To-End"}},
	} {
		h := fields()
		removeHopByHop(h, tc.forwarding)
		if got := keys(h); !slices.Equal(got, tc.want) {
			t.Errorf("forwarding %v: left %v, want %v", tc.forwarding, got, tc.want)
		}
	}
}
