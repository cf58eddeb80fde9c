package proxyconfig_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// meshRoutes is a route configuration as a sidecar gets it: one virtual
// host a service (host is the first's), with route-level headers, a
// regex match and something Weft does not enforce, so that every part
// of a parse shows in a comparison.
func meshRoutes(services int, host string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{
		Name:                "80",
		RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-mesh", Value: "weft"}}},
	}
	for i := range services {
		name := fmt.Sprintf("svc-%d.ns.svc.cluster.local", i)
		if i == 0 {
			name = host
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:       name + ":80",
			Domains:    []string{name, name + ":80"},
			RequireTls: routev3.VirtualHost_EXTERNAL_ONLY, // unenforced: a note
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+/.*"}}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||" + name},
					RetryPolicy:      &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream", NumRetries: nil},
				}},
			}},
		})
	}
	return rc
}

func wire(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A route configuration parsed from its wire form is what
// ParseRouteConfig makes of the decoded message; sent again with one
// virtual host changed, the others are the same parsed objects, and the
// changed one is parsed anew.
func TestVirtualHostCacheReusesUnchangedHosts(t *testing.T) {
	var c proxyconfig.VirtualHostCache
	first := meshRoutes(20, "a.example.com")
	name, got, err := c.ParseRouteConfig(wire(t, first))
	if err != nil {
		t.Fatal(err)
	}
	want, err := proxyconfig.ParseRouteConfig(first)
	if err != nil {
		t.Fatal(err)
	}
	if name != "80" || !reflect.DeepEqual(got, want) {
		t.Fatalf("from the wire: %q %+v; want what ParseRouteConfig makes, %+v", name, got, want)
	}
	if len(got.Unenforced) != 20 {
		t.Errorf("%d unenforced notes, want one a virtual host", len(got.Unenforced))
	}

	_, again, err := c.ParseRouteConfig(wire(t, meshRoutes(20, "b.example.com")))
	if err != nil {
		t.Fatal(err)
	}
	if again.VirtualHosts[0] == got.VirtualHosts[0] || again.VirtualHosts[0].Name != "b.example.com:80" {
		t.Errorf("the changed virtual host: %q, the same object %v; want b.example.com:80 parsed anew", again.VirtualHosts[0].Name, again.VirtualHosts[0] == got.VirtualHosts[0])
	}
	for i := 1; i < 20; i++ {
		if again.VirtualHosts[i] != got.VirtualHosts[i] {
			t.Errorf("virtual host %d parsed again; want the one kept", i)
		}
	}
	if len(again.Unenforced) != 20 {
		t.Errorf("%d unenforced notes after reuse, want 20", len(again.Unenforced))
	}
}

// Keep drops the virtual hosts of route configurations no longer in
// force, and those of parses that failed.
func TestVirtualHostCacheKeep(t *testing.T) {
	var c proxyconfig.VirtualHostCache
	if _, _, err := c.ParseRouteConfig(wire(t, meshRoutes(10, "a.example.com"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ParseRouteConfig(wire(t, meshRoutes(10, "b.example.com"))); err != nil {
		t.Fatal(err)
	}
	bad := meshRoutes(10, "c.example.com")
	bad.VirtualHosts[5].Domains = nil // fails after c.example.com and four others parsed
	if _, _, err := c.ParseRouteConfig(wire(t, bad)); err == nil {
		t.Fatal("a virtual host without domains parsed")
	}
	c.Keep(func(name string) bool { return name == "80" })
	if c.Len() != 10 {
		t.Errorf("%d virtual hosts kept for the route configuration in force (its last good parse), want 10", c.Len())
	}
	c.Keep(func(string) bool { return false })
	if c.Len() != 0 {
		t.Errorf("%d virtual hosts kept with no route configuration in force", c.Len())
	}
}

// Bad input fails as ParseRouteConfig fails, whether its virtual hosts
// are new or kept: a bad virtual host, a domain in two of them, bytes
// that are not a route configuration.
func TestVirtualHostCacheErrors(t *testing.T) {
	var c proxyconfig.VirtualHostCache
	if _, _, err := c.ParseRouteConfig(wire(t, meshRoutes(3, "a.example.com"))); err != nil {
		t.Fatal(err)
	}
	dup := meshRoutes(3, "a.example.com")
	dup.VirtualHosts = append(dup.VirtualHosts, proto.Clone(dup.VirtualHosts[1]).(*routev3.VirtualHost))
	badRegex := meshRoutes(3, "a.example.com")
	badRegex.VirtualHosts[2].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"a domain in two kept virtual hosts", wire(t, dup), `route configuration "80": domain "svc-1.ns.svc.cluster.local" is in virtual hosts`},
		{"a bad regex", wire(t, badRegex), `route configuration "80": virtual_hosts[2] "svc-2.ns.svc.cluster.local:80": routes[0] "": match: safe_regex`},
		{"not a route configuration", []byte{0x12, 0x05, 0x0a}, "route configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.ParseRouteConfig(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
			if tc.name != "not a route configuration" {
				m := &routev3.RouteConfiguration{}
				if err := proto.Unmarshal(tc.b, m); err != nil {
					t.Fatal(err)
				}
				if _, werr := proxyconfig.ParseRouteConfig(m); werr == nil || werr.Error() != err.Error() {
					t.Errorf("ParseRouteConfig says %v; from the wire %v", werr, err)
				}
			}
		})
	}
}

// BenchmarkParseRouteConfigWire parses a 100-service route configuration
// from its wire form: "all-new" with nothing kept (the first response),
// "one-changed" with the other 99 virtual hosts kept from the response
// before, as when one service changed; "decoded" is proto.Unmarshal and
// ParseRouteConfig, as before the cache.
func BenchmarkParseRouteConfigWire(b *testing.B) {
	bytesA, bytesB := wire(b, meshRoutes(100, "a.example.com")), wire(b, meshRoutes(100, "b.example.com"))
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := &routev3.RouteConfiguration{}
			if err := proto.Unmarshal(bytesA, m); err != nil {
				b.Fatal(err)
			}
			if _, err := proxyconfig.ParseRouteConfig(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("all-new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c proxyconfig.VirtualHostCache
			if _, _, err := c.ParseRouteConfig(bytesA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		var c proxyconfig.VirtualHostCache
		if _, _, err := c.ParseRouteConfig(bytesA); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			bs := bytesA
			if i%2 == 0 {
				bs = bytesB
			}
			i++
			if _, _, err := c.ParseRouteConfig(bs); err != nil {
				b.Fatal(err)
			}
			c.Keep(func(string) bool { return true })
		}
	})
}
