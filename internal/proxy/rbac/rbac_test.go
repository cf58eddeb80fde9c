package rbac

import (
	"net/http"
	"net/netip"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func principal(s string) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exact(s)}}}
}

func header(name string, m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}}}
}

// testChain: DENY /admin*; ALLOW GET /api/* from productpage or
// ingressgateway with x-tenant present.
func testChain(t testing.TB) *Chain {
	deny, err := Compile(&rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[no-admin]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: prefix("/admin")}}}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	allow, err := Compile(&rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[api]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
				header(":method", exact("GET")),
				{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: prefix("/api/")}}}},
				{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: "x-tenant", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}},
			}}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
				principal("spiffe://cluster.local/ns/default/sa/productpage"),
				principal("spiffe://cluster.local/ns/default/sa/ingressgateway"),
			}}}}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &Chain{Engines: []*Engine{deny, allow}}
}

func TestEvaluate(t *testing.T) {
	c := testChain(t)
	pp := "spiffe://cluster.local/ns/default/sa/productpage"
	for _, tc := range []struct {
		name    string
		in      Input
		allowed bool
		action  Action
		policy  string
	}{
		{"allowed", Input{HTTP: true, Principal: pp, Method: "GET", Path: "/api/x", Header: http.Header{"X-Tenant": {"a"}}}, true, Allow, "ns[default]-policy[api]-rule[0]"},
		{"deny wins", Input{HTTP: true, Principal: pp, Method: "GET", Path: "/admin", Header: http.Header{"X-Tenant": {"a"}}}, false, Deny, "ns[default]-policy[no-admin]-rule[0]"},
		{"no allow match", Input{HTTP: true, Principal: pp, Method: "POST", Path: "/api/x", Header: http.Header{"X-Tenant": {"a"}}}, false, Allow, ""},
		{"header missing", Input{HTTP: true, Principal: pp, Method: "GET", Path: "/api/x", Header: http.Header{}}, false, Allow, ""},
		{"no principal", Input{HTTP: true, Method: "GET", Path: "/api/x", Header: http.Header{"X-Tenant": {"a"}}}, false, Allow, ""},
		{"tcp never matches HTTP fields", Input{Principal: pp}, false, Allow, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Evaluate(&tc.in)
			if d.Allowed != tc.allowed || d.Action != tc.action || d.Policy != tc.policy {
				t.Errorf("Evaluate = %+v, want allowed=%v action=%v policy=%q", d, tc.allowed, tc.action, tc.policy)
			}
		})
	}
	var nilChain *Chain
	if d := nilChain.Evaluate(&Input{}); !d.Allowed || d.Decided {
		t.Errorf("nil chain: %+v", d)
	}
}

func TestPolicyOrigin(t *testing.T) {
	ns, name, rule, ok := PolicyOrigin("ns[default]-policy[a]-rule[b]-rule[3]")
	if !ok || ns != "default" || name != "a]-rule[b" || rule != "3" {
		t.Errorf("PolicyOrigin = %q %q %q %v", ns, name, rule, ok)
	}
	if _, _, _, ok := PolicyOrigin("other"); ok {
		t.Error("PolicyOrigin(other) ok")
	}
}

func TestEvaluateAllowPathDoesNotAllocate(t *testing.T) {
	c := testChain(t)
	in := &Input{HTTP: true, Principal: "spiffe://cluster.local/ns/default/sa/ingressgateway", Method: "GET", Path: "/api/v1/products", Header: http.Header{"X-Tenant": {"a"}}, SourceIP: netip.MustParseAddr("127.0.0.1")}
	if n := testing.AllocsPerRun(100, func() { c.Evaluate(in) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call", n)
	}
}

func BenchmarkEvaluateAllow(b *testing.B) {
	c := testChain(b)
	in := &Input{HTTP: true, Principal: "spiffe://cluster.local/ns/default/sa/ingressgateway", Method: "GET", Path: "/api/v1/products", Header: http.Header{"X-Tenant": {"a"}}}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Evaluate(in).Allowed {
			b.Fatal("denied")
		}
	}
}

func BenchmarkEvaluateDeny(b *testing.B) {
	c := testChain(b)
	in := &Input{HTTP: true, Principal: "spiffe://cluster.local/ns/default/sa/ratings", Method: "GET", Path: "/api/v1/products", Header: http.Header{"X-Tenant": {"a"}}}
	b.ReportAllocs()
	for b.Loop() {
		if c.Evaluate(in).Allowed {
			b.Fatal("allowed")
		}
	}
}

// FuzzEvaluate feeds the matcher arbitrary requests: it must not panic,
// must be deterministic, and a request under /admin is never allowed.
func FuzzEvaluate(f *testing.F) {
	f.Add("spiffe://cluster.local/ns/default/sa/productpage", "GET", "/api/x", "acme", "127.0.0.1", true)
	f.Add("", "POST", "/admin/x", "", "::1", false)
	f.Add("spiffe://x/ns/y/sa/z", "\x00", "", "\xff", "10.0.0.1", true)
	c := testChain(f)
	f.Fuzz(func(t *testing.T, principal, method, path, tenant, ip string, http bool) {
		in := &Input{HTTP: http, Principal: principal, Method: method, Path: path, Header: map[string][]string{}}
		if tenant != "" {
			in.Header["X-Tenant"] = []string{tenant, tenant}
		}
		in.SourceIP, _ = netip.ParseAddr(ip)
		d1, d2 := c.Evaluate(in), c.Evaluate(in)
		if d1 != d2 {
			t.Fatalf("not deterministic: %+v %+v", d1, d2)
		}
		if http && len(path) >= 6 && path[:6] == "/admin" && d1.Allowed {
			t.Fatalf("allowed under /admin: %+v", d1)
		}
	})
}
