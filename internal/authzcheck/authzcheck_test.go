package authzcheck

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/validate"
)

const (
	sleepFoo = "spiffe://cluster.local/ns/foo/sa/sleep"
	otherFoo = "spiffe://cluster.local/ns/foo/sa/other"
	sleepBar = "spiffe://cluster.local/ns/bar/sa/sleep"
)

// httpbin in namespace foo: HTTP on 8000, TCP on 9000.
func httpbin() *model.Instance {
	return &model.Instance{
		Name: "httpbin-0", Namespace: "foo", Workload: "httpbin", Service: "httpbin", ServiceAccount: "httpbin",
		Labels: map[string]string{"app": "httpbin"}, Address: "127.0.0.1",
		Ports: []model.InstancePort{
			{Name: "http", Number: 8000, Protocol: model.ProtocolHTTP, AppPort: 31000, InboundPort: 31001},
			{Name: "tcp", Number: 9000, Protocol: model.ProtocolTCP, AppPort: 31002, InboundPort: 31003},
		},
	}
}

func snapshotOf(t testing.TB, yaml string) *model.Snapshot {
	t.Helper()
	set, findings := config.Parse("policy.yaml", []byte(yaml))
	for _, f := range findings {
		t.Fatalf("parse: %v", f)
	}
	inst := httpbin()
	snap := validate.NewBuilder().Build(set, []*model.Instance{inst})
	for _, st := range snap.Status {
		for _, f := range st.Findings {
			if f.Severity == model.SeverityError {
				t.Fatalf("finding: %s: %s", f.Field, f.Message)
			}
		}
	}
	snap.MeshTelemetry = model.DefaultMeshTelemetry()
	return snap
}

const ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"

// TestIstioSemantics is a table of allow/deny cases mirroring Istio's
// documented AuthorizationPolicy semantics, decided by the same
// translation, parser and matcher the sidecar uses.
func TestIstioSemantics(t *testing.T) {
	get := func(principal, path string) Request { return Request{Principal: principal, Method: "GET", Path: path} }
	type call struct {
		req  Request
		want string // ALLOW or DENY, then optionally ":" and a reason substring
	}
	for _, tc := range []struct {
		name   string
		policy string
		calls  []call
	}{
		{name: "no policy allows", calls: []call{{get(sleepFoo, "/"), "ALLOW:no policy applies"}, {get("", "/"), "ALLOW"}}},
		{name: "allow-nothing denies everything", policy: ap + "metadata: {name: allow-nothing, namespace: foo}\nspec: {}\n",
			calls: []call{{get(sleepFoo, "/"), "DENY:no rule"}, {Request{Principal: sleepFoo, Port: 9000}, "DENY"}}},
		{name: "empty rule allows all", policy: ap + "metadata: {name: allow-all, namespace: foo}\nspec: {rules: [{}]}\n",
			calls: []call{{get("", "/x"), "ALLOW:foo/allow-all, rule 0"}, {Request{Port: 9000}, "ALLOW"}}},
		{name: "deny-all", policy: ap + "metadata: {name: deny-all, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n",
			calls: []call{{get(sleepFoo, "/"), "DENY:DENY policy foo/deny-all"}, {Request{Principal: sleepFoo, Port: 9000}, "DENY"}}},
		{name: "deny without rules denies nothing", policy: ap + "metadata: {name: d, namespace: foo}\nspec: {action: DENY}\n",
			calls: []call{{get(sleepFoo, "/"), "ALLOW"}}},
		{name: "allow GET from one principal", policy: ap + `metadata: {name: get-only, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"]}}]
`, calls: []call{
			{get(sleepFoo, "/ip"), "ALLOW:foo/get-only, rule 0"},
			{Request{Principal: sleepFoo, Method: "POST", Path: "/ip"}, "DENY"},
			{get(otherFoo, "/ip"), "DENY"},
			{get("", "/ip"), "DENY"},
		}},
		{name: "DENY wins over ALLOW", policy: ap + "metadata: {name: allow-all, namespace: foo}\nspec: {rules: [{}]}\n---\n" + ap + `metadata: {name: no-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, calls: []call{{get(sleepFoo, "/admin/users"), "DENY:foo/no-admin"}, {get(sleepFoo, "/ip"), "ALLOW"}}},
		{name: "namespaces and notNamespaces", policy: ap + `metadata: {name: ns, namespace: foo}
spec:
  rules:
  - from: [{source: {namespaces: ["foo", "ba*"], notNamespaces: ["bar"]}}]
`, calls: []call{{get(sleepFoo, "/"), "ALLOW"}, {get(sleepBar, "/"), "DENY"}, {get("spiffe://cluster.local/ns/baz/sa/x", "/"), "ALLOW"}, {get("", "/"), "DENY"}}},
		{name: "principal wildcards", policy: ap + `metadata: {name: p, namespace: foo}
spec:
  rules:
  - from: [{source: {principals: ["*/sa/sleep"], notPrincipals: ["cluster.local/ns/bar/*"]}}]
`, calls: []call{{get(sleepFoo, "/"), "ALLOW"}, {get(sleepBar, "/"), "DENY"}, {get(otherFoo, "/"), "DENY"}}},
		{name: "any authenticated principal", policy: ap + "metadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {principals: ['*']}}]}]}\n",
			calls: []call{{get(sleepFoo, "/"), "ALLOW"}, {get("", "/"), "DENY"}}},
		{name: "paths exact prefix suffix and notPaths", policy: ap + `metadata: {name: paths, namespace: foo}
spec:
  rules:
  - to: [{operation: {paths: ["/ip", "/api/*", "*.png"], notPaths: ["/api/private"]}}]
`, calls: []call{
			{get(sleepFoo, "/ip"), "ALLOW"}, {get(sleepFoo, "/ip/x"), "DENY"}, {get(sleepFoo, "/api/v1"), "ALLOW"},
			{get(sleepFoo, "/api/private"), "DENY"}, {get(sleepFoo, "/img/a.png"), "ALLOW"}, {get(sleepFoo, "/headers"), "DENY"},
		}},
		{name: "notMethods and hosts", policy: ap + `metadata: {name: m, namespace: foo}
spec:
  rules:
  - to: [{operation: {notMethods: ["DELETE"], hosts: ["httpbin.foo", "*.example.com"]}}]
`, calls: []call{
			{Request{Principal: sleepFoo, Method: "GET", Host: "httpbin.foo:8000"}, "ALLOW"},
			{Request{Principal: sleepFoo, Method: "GET", Host: "HTTPBIN.foo"}, "ALLOW"},
			{Request{Principal: sleepFoo, Method: "GET", Host: "a.example.com"}, "ALLOW"},
			{Request{Principal: sleepFoo, Method: "DELETE", Host: "httpbin.foo"}, "DENY"},
			{Request{Principal: sleepFoo, Method: "GET", Host: "evil.com"}, "DENY"},
		}},
		{name: "ipBlocks and notIpBlocks", policy: ap + `metadata: {name: ip, namespace: foo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8", "127.0.0.1"], notIpBlocks: ["10.1.0.0/16"]}}]
`, calls: []call{
			{Request{SourceIP: netip.MustParseAddr("10.2.3.4")}, "ALLOW"},
			{Request{SourceIP: netip.MustParseAddr("10.1.3.4")}, "DENY"},
			{Request{SourceIP: netip.MustParseAddr("192.168.1.1")}, "DENY"},
			{Request{}, "ALLOW"},
		}},
		{name: "remoteIpBlocks", policy: ap + "metadata: {name: ip, namespace: foo}\nspec: {action: DENY, rules: [{from: [{source: {remoteIpBlocks: ['192.168.0.0/16']}}]}]}\n",
			calls: []call{{Request{SourceIP: netip.MustParseAddr("192.168.1.1")}, "DENY"}, {Request{}, "ALLOW"}}},
		{name: "when conditions", policy: ap + `metadata: {name: when, namespace: foo}
spec:
  rules:
  - when:
    - {key: "request.headers[x-version]", values: ["v1", "v2*"]}
    - {key: source.namespace, values: ["foo"]}
    - {key: source.principal, notValues: ["cluster.local/ns/foo/sa/other"]}
    - {key: destination.port, values: ["8000"]}
`, calls: []call{
			{Request{Principal: sleepFoo, Header: http.Header{"X-Version": {"v2beta"}}}, "ALLOW"},
			{Request{Principal: sleepFoo, Header: http.Header{"X-Version": {"v3"}}}, "DENY"},
			{Request{Principal: sleepFoo}, "DENY"},
			{Request{Principal: otherFoo, Header: http.Header{"X-Version": {"v1"}}}, "DENY"},
			{Request{Principal: sleepBar, Header: http.Header{"X-Version": {"v1"}}}, "DENY"},
		}},
		{name: "ports", policy: ap + "metadata: {name: tcp-only, namespace: foo}\nspec: {rules: [{to: [{operation: {ports: ['9000']}}]}]}\n",
			calls: []call{{Request{Principal: sleepFoo, Port: 9000}, "ALLOW"}, {get(sleepFoo, "/"), "DENY"}}},
		{name: "notPorts", policy: ap + "metadata: {name: np, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {notPorts: ['9000']}}]}]}\n",
			calls: []call{{Request{Principal: sleepFoo, Port: 9000}, "ALLOW"}, {get(sleepFoo, "/"), "DENY"}}},
		{name: "TCP: ALLOW rule with HTTP fields never matches", policy: ap + `metadata: {name: tcp, namespace: foo}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"]}}]
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/other"]}}]
`, calls: []call{{Request{Principal: sleepFoo, Port: 9000}, "DENY"}, {Request{Principal: otherFoo, Port: 9000}, "ALLOW:rule 1"}, {get(sleepFoo, "/"), "ALLOW:rule 0"}}},
		{name: "TCP: DENY rule with HTTP fields matches without them", policy: ap + `metadata: {name: tcp, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: ["POST"], ports: ["9000"]}}]
`, calls: []call{{Request{Principal: sleepFoo, Port: 9000}, "DENY"}, {get(sleepFoo, "/"), "ALLOW"}}},
		{name: "root namespace applies to every namespace", policy: ap + "metadata: {name: deny-all, namespace: istio-system}\nspec: {action: DENY, rules: [{}]}\n",
			calls: []call{{get(sleepFoo, "/"), "DENY:istio-system/deny-all"}}},
		{name: "other namespace does not apply", policy: ap + "metadata: {name: deny-all, namespace: bar}\nspec: {action: DENY, rules: [{}]}\n",
			calls: []call{{get(sleepFoo, "/"), "ALLOW:no policy applies"}}},
		{name: "selector of another workload does not apply", policy: ap + "metadata: {name: d, namespace: foo}\nspec: {selector: {matchLabels: {app: other}}, action: DENY, rules: [{}]}\n",
			calls: []call{{get(sleepFoo, "/"), "ALLOW"}}},
		{name: "requestPrincipals need a token", policy: ap + "metadata: {name: jwt, namespace: foo}\nspec: {rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}\n",
			calls: []call{{get(sleepFoo, "/"), "DENY"}}},
		{name: "AUDIT never denies", policy: ap + "metadata: {name: audit, namespace: foo}\nspec: {action: AUDIT, rules: [{to: [{operation: {paths: ['/ip']}}]}]}\n",
			calls: []call{{get(sleepFoo, "/ip"), "ALLOW"}, {get(sleepFoo, "/x"), "ALLOW"}}},
		{name: "STRICT refuses plaintext", policy: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
			calls: []call{{get("", "/"), "DENY:only mTLS"}, {get(sleepFoo, "/"), "ALLOW"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshotOf(t, tc.policy)
			inst := snap.Instances["httpbin-0.foo"]
			for i, c := range tc.calls {
				got, err := Check(snap, inst, c.req)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				want, reason, _ := strings.Cut(c.want, ":")
				if got.Decision != want || !strings.Contains(got.Reason+" "+got.Policy+" rule "+got.Rule, reason) {
					t.Errorf("call %d %+v: got %s (%s; policy %q rule %q), want %s", i, c.req, got.Decision, got.Reason, got.Policy, got.Rule, c.want)
				}
			}
		})
	}
}
