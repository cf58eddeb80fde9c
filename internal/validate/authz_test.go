package validate

import (
	"strings"
	"testing"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// TestAuthorizationPolicyChecks: CUSTOM is refused as out of scope, and
// malformed values are refused naming the field; HTTP-only fields on a
// TCP port of a selected workload give a warning.
func TestAuthorizationPolicyChecks(t *testing.T) {
	set, findings := config.Parse("authz.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: default}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/33"]}}, {source: {}}]
    to: [{operation: {ports: ["http"], paths: ["/a*b"]}}]
    when: [{key: request.regex, values: ["x"]}, {key: source.ip}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: good, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["prod-*"], remoteIpBlocks: ["::1"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admin"]}, {key: destination.port, values: ["9080"]}]
`))
	if len(findings) > 0 {
		t.Fatalf("parse: %v", findings)
	}
	db := &model.Instance{Name: "db-0", Namespace: "default", Workload: "db", Labels: map[string]string{"app": "db"},
		Ports: []model.InstancePort{{Name: "tcp", Number: 5432, Protocol: model.ProtocolTCP}}}
	snap := NewBuilder().Build(set, []*model.Instance{db})
	var names []string
	for _, ap := range snap.AuthorizationPolicies {
		names = append(names, ap.Name)
	}
	if strings.Join(names, ",") != "good,tcp" {
		t.Errorf("in force: %v, want good,tcp", names)
	}
	var msgs []string
	for _, st := range snap.Status {
		for _, f := range st.Findings {
			msgs = append(msgs, string(f.Severity)+" "+st.Meta.Name+" "+f.Field+": "+f.Message)
		}
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"ext spec.action: action CUSTOM (external authorization) is out of scope for now",
		"ext spec.provider",
		"bad spec.rules[0].from[0].source.ipBlocks[0]",
		"bad spec.rules[0].from[1].source: a from entry needs a source",
		"bad spec.rules[0].to[0].operation.ports[0]",
		"bad spec.rules[0].to[0].operation.paths[0]",
		`bad spec.rules[0].when[0].key: condition key "request.regex" is not supported`,
		`bad spec.rules[0].when[1]: condition "source.ip" needs values`,
		"tcp spec.rules[0]: rule uses HTTP-only fields (methods) and applies to TCP port 5432 of workload db: the rule never matches there",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "error good ") {
		t.Errorf("errors about a good policy:\n%s", all)
	}
}

// TestRequestAuthenticationChecks: an issuer and one key source are
// required, inline keys must parse, unsupported fields are named.
func TestRequestAuthenticationChecks(t *testing.T) {
	set, findings := config.Parse("ra.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad, namespace: default}
spec:
  jwtRules:
  - jwksUri: "ftp://keys"
  - issuer: a
  - issuer: b
    jwks: "{}"
    fromCookies: [session]
    fromHeaders: [{prefix: "Bearer "}]
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: good, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  jwtRules:
  - issuer: https://issuer.example.com
    audiences: [api]
    jwksUri: https://issuer.example.com/.well-known/jwks.json
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    fromParams: [token]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
`))
	if len(findings) > 0 {
		t.Fatalf("parse: %v", findings)
	}
	snap := NewBuilder().Build(set, nil)
	if len(snap.RequestAuthentications) != 1 || snap.RequestAuthentications[0].Name != "good" {
		t.Fatalf("in force: %v", snap.RequestAuthentications)
	}
	var msgs []string
	for _, st := range snap.Status {
		for _, f := range st.Findings {
			msgs = append(msgs, st.Meta.Name+" "+f.Field+": "+f.Message)
		}
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"bad spec.jwtRules[0].issuer: issuer is required",
		`bad spec.jwtRules[0].jwksUri: "ftp://keys" is not an http(s) URL`,
		"bad spec.jwtRules[1]: set jwks or jwksUri",
		"bad spec.jwtRules[2].jwks: jwks has no keys",
		"bad spec.jwtRules[2].fromCookies",
		"bad spec.jwtRules[2].fromHeaders[0].name",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "good ") {
		t.Errorf("findings about good:\n%s", all)
	}
}
