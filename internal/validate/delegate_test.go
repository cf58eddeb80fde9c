package validate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

const delegateYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: team}
spec:
  hosts: [cart.team.svc.cluster.local, items.team.svc.cluster.local, front.web.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: web}
spec:
  hosts: [front]
  http:
  - name: shop
    match: [{uri: {prefix: /shop}, headers: {x-team: {exact: a}}}]
    delegate: {name: shop, namespace: team}
    timeout: 3s
  - route: [{destination: {host: front}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: team}
spec:
  http:
  - name: cart
    match: [{uri: {exact: /shop/cart}}]
    route: [{destination: {host: cart}}]
    timeout: 1s
  - name: elsewhere
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: cart}}]
  - route: [{destination: {host: items}}]
`

// TestDelegate: a root route's delegate routes take its place, each
// match narrowed within the root's and filled from it, unset policies
// taken from the root route, hosts resolved in the delegate's
// namespace; a delegate route outside the root's match is left out
// with a warning.
func TestDelegate(t *testing.T) {
	snap := NewBuilder().Build(parse(t, "d.yaml", delegateYAML), nil)
	got := findingTexts(Findings(snap))
	if len(got) != 1 || !strings.Contains(got[0], "VirtualService web/front: spec.http[0].delegate: route http[1] of delegate team/shop matches nothing this route matches, so it is left out") {
		t.Errorf("findings: %v; want the one about http[1] of team/shop", got)
	}
	if len(snap.VirtualServices) != 1 {
		t.Fatalf("%d VirtualServices in the model; want the root alone", len(snap.VirtualServices))
	}
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	prefix := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
	}
	dest := func(h string) []*networking.HTTPRouteDestination {
		return []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: h}}}
	}
	team := map[string]*networking.StringMatch{"x-team": exact("a")}
	want := []*networking.HTTPRoute{
		{Name: "shop-cart", Match: []*networking.HTTPMatchRequest{{Uri: exact("/shop/cart"), Headers: team}}, Route: dest("cart.team.svc.cluster.local"), Timeout: durationpb.New(1e9)},
		{Name: "shop", Match: []*networking.HTTPMatchRequest{{Uri: prefix("/shop"), Headers: team}}, Route: dest("items.team.svc.cluster.local"), Timeout: durationpb.New(3e9)},
		{Route: dest("front.web.svc.cluster.local")},
	}
	if diff := cmp.Diff(want, snap.VirtualServices[0].Spec.GetHttp(), protocmp.Transform()); diff != "" {
		t.Errorf("merged routes (-want +got):\n%s", diff)
	}
}

// delegateD is a delegate VirtualService "d" with one route.
const delegateD = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: d}
spec:
  http: [{route: [{destination: {host: front.example.com}}]}]
`

func TestDelegateErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"missing", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.example.com]
  http: [{delegate: {name: nosuch}}]
`, "spec.http[0].delegate: VirtualService default/nosuch is not a delegate in force"},
		{"delegate and route", delegateD + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.example.com]
  http: [{delegate: {name: d}, route: [{destination: {host: front.example.com}}]}]
`, "spec.http[0].delegate: a route that delegates has no route, redirect or directResponse of its own"},
		{"two levels", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: d}
spec:
  http: [{delegate: {name: e}}]
`, "VirtualService default/d: spec.http[0].delegate: a delegate VirtualService cannot delegate further"},
		{"unused", delegateD, "VirtualService default/d: spec.hosts: no VirtualService delegates to it and it has no hosts, so it routes nothing"},
		{"catch-all delegate", delegateD + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.example.com]
  http:
  - delegate: {name: d}
  - route: [{destination: {host: front.example.com}}]
`, "VirtualService default/front: spec.http[1]: this route can never match: http[0] above it matches every request"},
		{"tcp", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: d}
spec:
  tcp: [{route: [{destination: {host: front.example.com}}]}]
`, "a VirtualService without hosts is a delegate, which holds http routes only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: front}
spec:
  hosts: [front.example.com]
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: DNS
---
`
			fs := findingTexts(Findings(NewBuilder().Build(parse(t, "d.yaml", se+tc.yaml), nil)))
			if !strings.Contains(strings.Join(fs, "\n"), tc.want) {
				t.Errorf("findings:\n%s\nwant one containing %q", strings.Join(fs, "\n"), tc.want)
			}
		})
	}
}

func findingTexts(fs []model.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}

// shopEntryYAML declares front.example.com and cart.example.com.
const shopEntryYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [front.example.com, cart.example.com]
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: DNS
---
`

// TestDelegateLastGood: a root whose delegate goes missing, or stops
// being a delegate, keeps serving its last good routes (the merged ones),
// as the one-shot Build from the previous snapshot does; a delegate whose
// new version is broken keeps serving its last good routes in the root.
func TestDelegateLastGood(t *testing.T) {
	const base = shopEntryYAML + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.example.com]
  http:
  - match: [{uri: {prefix: /shop}}]
    delegate: {name: shop}
  - route: [{destination: {host: front.example.com}}]
`
	delegate := func(spec string) string {
		return base + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
` + spec
	}
	good := delegate("  http: [{route: [{destination: {host: cart.example.com}}]}]\n")
	front := model.Meta{Kind: "VirtualService", Namespace: "default", Name: "front"}
	routes := func(s *model.Snapshot) []string {
		var out []string
		for _, vs := range s.VirtualServices {
			if vs.Name != front.Name {
				continue
			}
			for _, h := range vs.Spec.GetHttp() {
				out = append(out, fmt.Sprint(h.GetMatch())+" -> "+h.GetRoute()[0].GetDestination().GetHost())
			}
		}
		return out
	}
	statusOf := func(s *model.Snapshot) (model.State, bool) {
		for _, st := range s.Status {
			if st.Kind == front.Kind && st.Name == front.Name {
				return st.State, st.ServingLastGood
			}
		}
		return "", false
	}
	want := routes(NewBuilder().Build(parse(t, "c.yaml", good), nil))
	if len(want) != 2 {
		t.Fatalf("routes in force: %v; want the delegate's and the root's own", want)
	}
	for _, tc := range []struct {
		name, next string
		wantState  model.State
		wantLG     bool
	}{
		{"delegate deleted", base, model.StateInvalid, true},
		{"delegate gets hosts", delegate("  hosts: [cart.example.com]\n  http: [{route: [{destination: {host: cart.example.com}}]}]\n"), model.StateInvalid, true},
		{"delegate broken", delegate("  http: [{route: [{destination: {host: cart.example.com, subset: nosuch}}]}]\n"), model.StateValid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder()
			first := b.Build(parse(t, "c.yaml", good), nil)
			// The one-shot Build from the previous snapshot agrees on the
			// routes; it has no delegate to keep (the snapshot holds merged
			// roots), so there the root serves its last good version.
			for i, s := range []*model.Snapshot{b.Build(parse(t, "c.yaml", tc.next), nil), Build(parse(t, "c.yaml", tc.next), nil, first)} {
				if diff := cmp.Diff(want, routes(s)); diff != "" {
					t.Errorf("build %d: routes of %s in force (-want +got):\n%s", i, front.Name, diff)
				}
				if st, lg := statusOf(s); i == 0 && (st != tc.wantState || lg != tc.wantLG) {
					t.Errorf("status %s, serving last good %v; want %s, %v", st, lg, tc.wantState, tc.wantLG)
				}
			}
		})
	}
}

// TestRootLosesHostsLastGood: a VirtualService whose broken new version
// has no hosts (so reads as a delegate) keeps its last good version, with
// hosts, in force, as its status says.
func TestRootLosesHostsLastGood(t *testing.T) {
	const se = shopEntryYAML + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
`
	b := NewBuilder()
	b.Build(parse(t, "c.yaml", se+"  hosts: [front.example.com]\n  http: [{route: [{destination: {host: cart.example.com}}]}]\n"), nil)
	s := b.Build(parse(t, "c.yaml", se+"  http: [{route: [{destination: {host: cart.example.com, subset: nosuch}}]}]\n"), nil)
	if len(s.VirtualServices) != 1 || s.VirtualServices[0].Spec.GetHosts()[0] != "front.example.com" {
		t.Errorf("VirtualServices in force: %v; want the last good front", s.VirtualServices)
	}
	for _, st := range s.Status {
		if st.Kind == "VirtualService" && (st.State != model.StateInvalid || !st.ServingLastGood) {
			t.Errorf("status %s, serving last good %v; want Invalid, true", st.State, st.ServingLastGood)
		}
	}
}
