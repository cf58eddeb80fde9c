package xdstranslate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxyconfig"
)

func authzPolicy(name, ns string, spec *security.AuthorizationPolicy) *model.AuthorizationPolicy {
	return &model.AuthorizationPolicy{Meta: model.Meta{Kind: "AuthorizationPolicy", Namespace: ns, Name: name}, Spec: spec}
}

// authzSnapshot: STRICT mesh; productpage (HTTP 9080, TCP 9091) is
// selected by a mesh-wide DENY, a namespace ALLOW with every source,
// operation and condition form, and an AUDIT policy; a policy of another
// workload and one of another namespace do not apply.
func authzSnapshot() *model.Snapshot {
	s := meshMTLSSnapshot()
	pp := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}}
	s.AuthorizationPolicies = []*model.AuthorizationPolicy{
		authzPolicy("deny-blocked", "default", &security.AuthorizationPolicy{
			Action: security.AuthorizationPolicy_DENY,
			Rules: []*security.Rule{{
				From: []*security.Rule_From{{Source: &security.Source{IpBlocks: []string{"10.9.0.0/16"}, NotRemoteIpBlocks: []string{"10.9.1.1"}}}},
			}, {
				To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin*"}, Methods: []string{"DELETE"}}}},
			}},
		}),
		authzPolicy("frontend", "default", &security.AuthorizationPolicy{
			Selector: pp,
			Rules: []*security.Rule{{
				From: []*security.Rule_From{
					{Source: &security.Source{Principals: []string{"example.org/ns/default/sa/ingressgateway"}}},
					{Source: &security.Source{Namespaces: []string{"shop", "test-*"}, NotPrincipals: []string{"*/sa/legacy"}}},
				},
				To: []*security.Rule_To{{Operation: &security.Operation{
					Hosts: []string{"productpage", "*.example.com"}, Methods: []string{"GET", "HEAD"},
					Paths: []string{"/productpage", "/api/*", "*.css"}, NotPaths: []string{"/api/internal"}, Ports: []string{"9080"},
				}}},
				When: []*security.Condition{
					{Key: "request.headers[x-tenant]", Values: []string{"acme"}},
					{Key: "request.auth.claims[groups]", Values: []string{"admins"}},
					{Key: "source.ip", NotValues: []string{"192.168.0.0/16"}},
				},
			}, {
				From: []*security.Rule_From{{Source: &security.Source{RequestPrincipals: []string{"https://issuer.example.com/*"}}}},
			}, {
				To: []*security.Rule_To{{Operation: &security.Operation{Ports: []string{"9091"}}}},
			}},
		}),
		authzPolicy("audit-admin", "default", &security.AuthorizationPolicy{
			Action: security.AuthorizationPolicy_AUDIT,
			Rules:  []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin"}}}}}},
		}),
		authzPolicy("reviews-only", "default", &security.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "reviews"}},
		}),
		authzPolicy("elsewhere", "prod", &security.AuthorizationPolicy{}),
	}
	s.RequestAuthentications = []*model.RequestAuthentication{{
		Meta: model.Meta{Kind: "RequestAuthentication", Namespace: "default", Name: "jwt"},
		Spec: &security.RequestAuthentication{Selector: pp, JwtRules: []*security.JWTRule{{
			Issuer: "https://issuer.example.com", Audiences: []string{"productpage"}, JwksUri: "https://issuer.example.com/jwks.json",
			FromHeaders: []*security.JWTHeader{{Name: "x-jwt", Prefix: "Token "}}, FromParams: []string{"token"},
			ForwardOriginalToken: true, OutputPayloadToHeader: "x-jwt-payload",
		}}},
	}}
	return s
}

// TestAuthzGolden checks the RBAC filters of productpage's inbound
// listeners and the JWT filter before them (testdata/authz_sidecar.golden.json).
func TestAuthzGolden(t *testing.T) {
	snap := authzSnapshot()
	res, err := Translate(snap, withInstance(sidecarProxy())(snap))
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	only := &Resources{}
	for _, l := range res.Listeners {
		if strings.HasPrefix(l.GetName(), "inbound|") {
			only.Listeners = append(only.Listeners, l)
		}
	}
	// The sidecar understands and enforces all of it.
	for _, l := range only.Listeners {
		pl, err := proxyconfig.ParseListener(l)
		if err != nil {
			t.Fatalf("the proxy refuses %s: %v", l.GetName(), err)
		}
		if len(pl.Unenforced) > 0 {
			t.Errorf("%s: not enforced: %v", l.GetName(), pl.Unenforced)
		}
		for _, fc := range pl.FilterChains {
			if fc.RBAC == nil && (fc.HTTP == nil || fc.HTTP.RBAC == nil || fc.HTTP.JWT == nil) {
				t.Errorf("%s chain %q: RBAC or JWT missing after parsing", l.GetName(), fc.Name)
			}
		}
	}
	got := dumpJSON(t, only)
	path := filepath.Join("testdata", "authz_sidecar.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/xdstranslate -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// gatewaySecuritySnapshot: the bookinfo gateway (namespace default,
// labels istio=ingressgateway) selected by a RequestAuthentication and a
// DENY policy of the root namespace (a JWT for /api/*), an ALLOW policy
// with ipBlocks and remoteIpBlocks in its own namespace, and a
// namespace-wide AUDIT policy; policies of productpage and of another
// namespace do not apply.
func gatewaySecuritySnapshot() *model.Snapshot {
	const jwks = `{"keys":[{"use":"sig","kty":"EC","kid":"test","crv":"P-256","alg":"ES256","x":"tr1uDKIlYhIjSbb-e6nFI7jbYl9TYTHhQTE8pOp0p2E","y":"ngyIzos_Ex_q4OcW3PcF4RLqP2cZSL5hl7s_ORNjQTk"}]}`
	s := testSnapshot()
	goldenGateway(s)
	gw := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}}
	s.RequestAuthentications = []*model.RequestAuthentication{{
		Meta: model.Meta{Kind: "RequestAuthentication", Namespace: "istio-system", Name: "ingress-jwt"},
		Spec: &security.RequestAuthentication{Selector: gw, JwtRules: []*security.JWTRule{{
			Issuer: "https://issuer.example.com", Jwks: jwks,
		}}},
	}, {
		Meta: model.Meta{Kind: "RequestAuthentication", Namespace: "default", Name: "productpage-jwt"},
		Spec: &security.RequestAuthentication{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			JwtRules: []*security.JWTRule{{Issuer: "https://other.example.com", Jwks: jwks}},
		},
	}}
	s.AuthorizationPolicies = []*model.AuthorizationPolicy{
		authzPolicy("ingress-api-needs-jwt", "istio-system", &security.AuthorizationPolicy{
			Selector: gw,
			Action:   security.AuthorizationPolicy_DENY,
			Rules: []*security.Rule{{
				From: []*security.Rule_From{{Source: &security.Source{NotRequestPrincipals: []string{"*"}}}},
				To:   []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/api/*"}}}},
			}},
		}),
		authzPolicy("ingress-clients", "default", &security.AuthorizationPolicy{
			Selector: gw,
			Rules: []*security.Rule{{
				From: []*security.Rule_From{{Source: &security.Source{IpBlocks: []string{"127.0.0.0/8"}, NotRemoteIpBlocks: []string{"127.0.0.66"}}}},
			}, {
				To: []*security.Rule_To{{Operation: &security.Operation{Ports: []string{"9999"}}}},
			}},
		}),
		authzPolicy("audit-all", "default", &security.AuthorizationPolicy{
			Action: security.AuthorizationPolicy_AUDIT,
			Rules:  []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"DELETE"}}}}}},
		}),
		authzPolicy("productpage-only", "default", &security.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
		}),
		authzPolicy("elsewhere", "prod", &security.AuthorizationPolicy{}),
	}
	return s
}

// TestGatewaySecurityGolden checks that the policies selecting a gateway
// put their JWT and RBAC filters on its listener, before the fault filter
// and the router, and that the proxy parses and enforces all of it
// (testdata/authz_gateway.golden.json).
func TestGatewaySecurityGolden(t *testing.T) {
	snap := gatewaySecuritySnapshot()
	res, err := Translate(snap, gatewayProxy())
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	only := &Resources{Listeners: res.Listeners}
	for _, l := range only.Listeners {
		pl, err := proxyconfig.ParseListener(l)
		if err != nil {
			t.Fatalf("the proxy refuses %s: %v", l.GetName(), err)
		}
		for _, u := range pl.Unenforced {
			if strings.Contains(u, "rbac") || strings.Contains(u, "jwt") {
				t.Errorf("%s: not enforced: %s", l.GetName(), u)
			}
		}
		for _, fc := range pl.FilterChains {
			if fc.HTTP == nil || fc.HTTP.JWT == nil || fc.HTTP.RBAC == nil {
				t.Fatalf("%s: JWT or RBAC missing after parsing", l.GetName())
			}
			var actions []string
			for _, e := range fc.HTTP.RBAC.Engines {
				a := e.Action.String()
				if e.Shadow {
					a = "shadow"
				}
				actions = append(actions, a)
			}
			if diff := cmp.Diff([]string{"DENY", "ALLOW", "shadow"}, actions); diff != "" {
				t.Errorf("%s: RBAC filters (-want +got):\n%s", l.GetName(), diff)
			}
			if n := len(fc.HTTP.JWT.Providers); n != 1 {
				t.Errorf("%s: %d JWT providers, want the gateway's one", l.GetName(), n)
			}
		}
	}
	got := dumpJSON(t, only)
	path := filepath.Join("testdata", "authz_gateway.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/xdstranslate -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// TestGatewayPolicyScope: which policies select a gateway, as Istio
// scopes them.
func TestGatewayPolicyScope(t *testing.T) {
	gwLabels := map[string]string{"istio": "ingressgateway"}
	sel := func(l map[string]string) *typev1beta1.WorkloadSelector {
		return &typev1beta1.WorkloadSelector{MatchLabels: l}
	}
	for _, tc := range []struct {
		name   string
		ns     string
		sel    *typev1beta1.WorkloadSelector
		gwNS   string
		apply  bool
		reason string
	}{
		{name: "root namespace, gateway selector", ns: "istio-system", sel: sel(gwLabels), gwNS: "default", apply: true},
		{name: "root namespace, no selector", ns: "istio-system", gwNS: "default", apply: true},
		{name: "gateway's namespace, no selector", ns: "default", gwNS: "default", apply: true},
		{name: "gateway's namespace, gateway selector", ns: "default", sel: sel(gwLabels), gwNS: "default", apply: true},
		{name: "gateway's namespace, other selector", ns: "default", sel: sel(map[string]string{"app": "productpage"}), gwNS: "default"},
		{name: "other namespace, gateway selector", ns: "prod", sel: sel(gwLabels), gwNS: "default"},
		{name: "gateway in the root namespace", ns: "istio-system", sel: sel(gwLabels), gwNS: "istio-system", apply: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSnapshot()
			goldenGateway(s)
			s.AuthorizationPolicies = []*model.AuthorizationPolicy{authzPolicy("p", tc.ns, &security.AuthorizationPolicy{Selector: tc.sel})}
			p := gatewayProxy()
			p.Namespace = tc.gwNS
			res, err := Translate(s, p)
			if err != nil {
				t.Fatal(err)
			}
			pl, err := proxyconfig.ParseListener(res.Listeners[0])
			if err != nil {
				t.Fatal(err)
			}
			got := pl.FilterChains[0].HTTP.RBAC != nil
			if got != tc.apply {
				t.Errorf("policy %s/p applies to the gateway: %v, want %v", tc.ns, got, tc.apply)
			}
		})
	}
}
