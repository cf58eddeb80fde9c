package authzcheck

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/rbac"
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

const (
	ra   = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
	jwks = `{"keys":[{"use":"sig","kty":"EC","kid":"test","crv":"P-256","alg":"ES256","x":"tr1uDKIlYhIjSbb-e6nFI7jbYl9TYTHhQTE8pOp0p2E","y":"ngyIzos_Ex_q4OcW3PcF4RLqP2cZSL5hl7s_ORNjQTk"}]}`
	iss  = "https://idp.example.com"
)

// TestSimulatedTokens checks calls with a simulated JWT (requestPrincipals,
// request.auth.claims, audiences) and the note on calls evaluated as
// unauthenticated, decided by the sidecar's translation, parser and
// matcher.
func TestSimulatedTokens(t *testing.T) {
	reqAuthn := ra + "metadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n  - issuer: " + iss + "\n    audiences: [httpbin, shop]\n    jwks: '" + jwks + "'\n"
	policy := reqAuthn + "---\n" + ap + `metadata: {name: admins, namespace: foo}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["` + iss + `/*"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: ["admins"]}
    - {key: "request.auth.claims[realm][level]", values: ["gold"]}
  - to: [{operation: {paths: ["/public"]}}]
---
` + ap + `metadata: {name: no-bob, namespace: foo}
spec:
  action: DENY
  rules: [{from: [{source: {requestPrincipals: ["` + iss + `/bob"]}}]}]
`
	tok := func(principal string, claims ...string) *Request {
		a, err := ParseToken(principal, claims)
		if err != nil {
			t.Fatal(err)
		}
		return &Request{Principal: sleepFoo, Path: "/admin", Auth: a}
	}
	for _, tc := range []struct {
		name   string
		policy string
		req    *Request
		want   string // decision ":" reason substring
		note   string // substring of the note; "" for none
	}{
		{name: "no token: the rule matching on it is named", policy: policy, req: &Request{Principal: sleepFoo, Path: "/admin"},
			want: "DENY:no rule", note: "evaluated as unauthenticated (no JWT), and foo/no-bob rule 0, foo/admins rule 0 match"},
		{name: "no token on a path that needs none: still noted, the DENY rule took part", policy: policy, req: &Request{Principal: sleepFoo, Path: "/public"},
			want: "ALLOW:foo/admins, rule 1", note: "foo/no-bob rule 0"},
		{name: "token with the claims", policy: policy, req: tok(iss+"/alice", "groups=users", "groups=admins", "realm[level]=gold", "aud=shop"),
			want: "ALLOW:foo/admins, rule 0", note: "evaluated with a valid token from issuer " + iss},
		{name: "token with a nested claim missing", policy: policy, req: tok(iss+"/alice", "groups=admins", "aud=shop"), want: "DENY:no rule", note: "valid token"},
		{name: "token with a claim in condition syntax", policy: policy, req: tok(iss+"/alice", "request.auth.claims[groups]=admins", "realm[level]=gold", "aud=httpbin"),
			want: "ALLOW:foo/admins, rule 0", note: "valid token"},
		{name: "denied request principal", policy: policy, req: tok(iss+"/bob", "groups=admins", "realm[level]=gold", "aud=shop"), want: "DENY:DENY policy foo/no-bob", note: "valid token"},
		{name: "issuer no RequestAuthentication accepts: 401", policy: policy, req: tok("https://evil.example.com/alice", "aud=shop"),
			want: "DENY:401 Jwt issuer is not configured", note: `accepts issuer "https://evil.example.com"`},
		{name: "wrong audience: 401", policy: policy, req: tok(iss+"/alice", "aud=billing"), want: "DENY:401 Audiences in Jwt are not allowed", note: "include none of"},
		{name: "no RequestAuthentication: the token is not read", policy: ap + "metadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}\n",
			req: tok(iss + "/alice"), want: "DENY:no rule", note: "no RequestAuthentication applies"},
		{name: "no rule depends on a token: no note", policy: ap + "metadata: {name: p, namespace: foo}\nspec: {rules: [{from: [{source: {namespaces: ['foo']}}]}]}\n",
			req: &Request{Principal: sleepFoo}, want: "ALLOW"},
		{name: "required token missing: 401", policy: strings.Replace(reqAuthn, "    audiences:", "    presence: REQUIRED\n    audiences:", 1), req: &Request{Principal: sleepFoo, Path: "/admin"},
			want: "DENY:401 Jwt is missing (RequestAuthentication foo/jwt/0 requires a token from issuer " + iss},
		{name: "required token present", policy: strings.Replace(reqAuthn, "    audiences:", "    presence: REQUIRED\n    audiences:", 1), req: tok(iss+"/alice", "aud=shop"),
			want: "ALLOW", note: "valid token"},
		{name: "required token for other audiences: 401", policy: strings.Replace(reqAuthn, "    audiences:", "    presence: REQUIRED\n    audiences:", 1), req: tok(iss+"/alice", "aud=billing"),
			want: "DENY:401 Audiences in Jwt are not allowed (RequestAuthentication foo/jwt/0"},
		{name: "required token whose subject holds a slash", policy: strings.Replace(reqAuthn, "    audiences:", "    presence: REQUIRED\n    audiences:", 1), req: tok(iss+"/team/alice", "aud=shop"),
			want: "ALLOW", note: "valid token"},
		{name: "a token of an issuer under the required one's: 401", policy: strings.Replace(reqAuthn, "    audiences:", "    presence: REQUIRED\n    audiences:", 1) +
			"---\n" + strings.Replace(strings.Replace(reqAuthn, "name: jwt", "name: tenant", 1), "issuer: "+iss, "issuer: "+iss+"/tenant", 1), req: tok(iss+"/tenant/alice", "aud=shop"),
			want: "DENY:401 Jwt is missing"},
		{name: "TCP port: no token is read", policy: reqAuthn, req: func() *Request { r := tok(iss + "/alice"); r.Port = 9000; return r }(),
			want: "ALLOW", note: "TCP port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshotOf(t, tc.policy)
			got, err := Check(snap, snap.Instances["httpbin-0.foo"], *tc.req)
			if err != nil {
				t.Fatal(err)
			}
			want, reason, _ := strings.Cut(tc.want, ":")
			if got.Decision != want || !strings.Contains(got.Reason+" "+got.Policy+", rule "+got.Rule, reason) {
				t.Errorf("got %s (%s; policy %q rule %q), want %s", got.Decision, got.Reason, got.Policy, got.Rule, tc.want)
			}
			if (tc.note == "") != (got.Note == "") || !strings.Contains(got.Note, tc.note) {
				t.Errorf("note %q, want one with %q", got.Note, tc.note)
			}
		})
	}
}

// TestParseToken checks the flags' syntax.
func TestParseToken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		principal string
		claims    []string
		want      *rbac.Auth
		err       string
	}{
		{name: "none", want: nil},
		{name: "issuer URL and subject", principal: "https://idp.example.com/alice",
			want: &rbac.Auth{Principal: "https://idp.example.com/alice", Claims: map[string]any{"iss": "https://idp.example.com", "sub": "alice"}}},
		{name: "claims: list, nested, audiences, presenter", principal: "iss/sub", claims: []string{"groups=a", "groups=b", "realm[roles]=admin", "aud=x", "aud=y", "azp=web"},
			want: &rbac.Auth{Principal: "iss/sub", Audiences: []string{"x", "y"}, Presenter: "web", Claims: map[string]any{
				"iss": "iss", "sub": "sub", "groups": []any{"a", "b"}, "realm": map[string]any{"roles": "admin"}, "aud": []any{"x", "y"}, "azp": "web"}}},
		{name: "claim without principal", claims: []string{"groups=a"}, err: "--claim needs --request-principal"},
		{name: "principal without subject", principal: "https://idp.example.com/", err: "want ISS/SUB"},
		{name: "principal without issuer", principal: "alice", err: "want ISS/SUB"},
		{name: "claim without value", principal: "i/s", claims: []string{"groups"}, err: "want NAME=VALUE"},
		{name: "bad nesting", principal: "i/s", claims: []string{"a[b=c"}, err: "want NAME=VALUE"},
		{name: "issuer as a claim", principal: "i/s", claims: []string{"iss=x"}, err: "come from --request-principal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.principal, tc.claims)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
