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
