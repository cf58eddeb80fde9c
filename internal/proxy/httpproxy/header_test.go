package httpproxy

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
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
	if len(fields()) <= onePassFields {
		t.Fatal("header is not larger than onePassFields")
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

// TestRemoveHopByHopSmall covers the walk removeHopByHop takes for
// headers of up to onePassFields fields (TestRemoveHopByHop's header is
// larger and takes the lookups).
func TestRemoveHopByHopSmall(t *testing.T) {
	for _, tc := range []struct {
		forwarding bool
		want       []string
	}{
		{false, []string{"Content-Type", "X-Forwarded-Proto"}},
		{true, []string{"Content-Type"}},
	} {
		h := http.Header{
			"Connection":        {"X-Hop"},
			"X-Hop":             {"1"},
			"Te":                {"trailers"},
			"X-Forwarded-Proto": {"https"},
			"Content-Type":      {"text/plain"},
		}
		if len(h) > onePassFields {
			t.Fatalf("header of %d fields is not small", len(h))
		}
		removeHopByHop(h, tc.forwarding)
		got := slices.Sorted(maps.Keys(h))
		if !slices.Equal(got, tc.want) {
			t.Errorf("forwarding %v: left %v, want %v", tc.forwarding, got, tc.want)
		}
	}
}

// TestDropWaysAgree runs both ways of dropping the standard fields over
// each of their names, with and without forwarding, and checks that they
// leave the same header: the names live in a switch and in two lists.
func TestDropWaysAgree(t *testing.T) {
	names := append(append([]string{}, hopByHopFields[:]...), forwardingFields[:]...)
	if len(names) != 13 {
		t.Fatalf("%d names, want the 9 hop-by-hop and 4 forwarding fields", len(names))
	}
	for _, n := range names {
		for _, fwd := range []bool{false, true} {
			a := http.Header{n: {"v"}, "X-End-To-End": {"kept"}}
			b := http.Header{n: {"v"}, "X-End-To-End": {"kept"}}
			dropByWalk(a, fwd)
			dropByName(b, fwd)
			ka, kb := slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))
			if !slices.Equal(ka, kb) {
				t.Errorf("%s, forwarding %v: the walk left %v, the lookups %v", n, fwd, ka, kb)
			}
			_, present := a[n]
			wantGone := isHopByHop(n) || fwd && isForwarding(n)
			if present == wantGone || a["X-End-To-End"] == nil {
				t.Errorf("%s, forwarding %v: left %v", n, fwd, ka)
			}
		}
	}
}

// BenchmarkDropHopByHop compares the two ways removeHopByHop drops the
// standard fields, at header sizes either side of onePassFields. Each
// iteration first refills the header, the same cost for both.
func BenchmarkDropHopByHop(b *testing.B) {
	for _, n := range []int{4, 6, 8, 10, 12, 20, 40} {
		src := http.Header{
			"Connection":        {"keep-alive"},
			"Content-Type":      {"text/plain"},
			"Content-Length":    {"1024"},
			"X-Forwarded-Proto": {"http"},
		}
		for i := len(src); i < n; i++ {
			src["X-Field-"+strconv.Itoa(i)] = []string{"v"}
		}
		for _, way := range []struct {
			name string
			drop func(http.Header, bool)
		}{{"walk", dropByWalk}, {"name", dropByName}} {
			b.Run(way.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				h := make(http.Header, n)
				for b.Loop() {
					maps.Copy(h, src)
					way.drop(h, true)
				}
			})
		}
	}
}
