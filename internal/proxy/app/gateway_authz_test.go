package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestGatewayPolicies runs an ingress gateway proxy whose config is
// Weft's real translation of a Gateway, a VirtualService and the
// RequestAuthentication and AuthorizationPolicies that select the gateway
// workload (root namespace and its own), in front of a real backend.
// Clients dial from different loopback addresses, so ipBlocks and
// remoteIpBlocks see real peers: a JWT is needed for /api/*, only
// 127.0.0.1 and 127.0.0.3 may call, 127.0.0.3 is denied by
// remoteIpBlocks, and X-Forwarded-For changes nothing. A policy that
// selects another workload does not apply to the gateway.
func TestGatewayPolicies(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "shop ok")
	}))
	t.Cleanup(backend.Close)

	yaml := gatewayYAML + serviceEntryYAML("shop", serverPort(backend)) + fmt.Sprintf(shopVirtualService+`  - route: [{destination: {host: shop.default.svc.cluster.local, port: {number: 80}}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ingress-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: %s
    jwks: '%s'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-needs-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: known-clients, namespace: default}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - from: [{source: {ipBlocks: ["127.0.0.1/32", "127.0.0.3"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: blocked-client, namespace: default}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: ["127.0.0.3/32"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-nothing, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
`, testIssuer, jwks)
	snap := meshModel(t, "gateway.yaml", yaml)
	gw := startGateway(t, snap)
	addr := gw.ListenerAddr(t, "0.0.0.0_8080")

	now := time.Now()
	good := newSigner(t, jose.ES256, key, "k1")
	bad := newSigner(t, jose.ES256, other, "k1")
	valid := good.token(t, testIssuer, "alice", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	for _, tc := range []struct {
		name, from, path, token, xff string
		want                         int
		body                         string
	}{
		{name: "page without a token", from: "127.0.0.1", path: "/page", want: 200, body: "shop ok"},
		{name: "api without a token", from: "127.0.0.1", path: "/api/items", want: 403, body: "RBAC: access denied"},
		{name: "api with a valid token", from: "127.0.0.1", path: "/api/items", token: valid, want: 200, body: "shop ok"},
		{name: "api with an expired token", from: "127.0.0.1", path: "/api/items", token: good.token(t, testIssuer, "alice", nil, now.Add(-2*time.Hour), now.Add(-time.Hour), nil), want: 401, body: "Jwt is expired"},
		{name: "api with a token from another issuer", from: "127.0.0.1", path: "/api/items", token: good.token(t, "https://evil.example.com", "alice", nil, now.Add(-time.Minute), now.Add(time.Hour), nil), want: 401, body: "Jwt issuer is not configured"},
		{name: "api with a badly signed token", from: "127.0.0.1", path: "/api/items", token: bad.token(t, testIssuer, "alice", nil, now.Add(-time.Minute), now.Add(time.Hour), nil), want: 401, body: "Jwt verification fails"},
		{name: "ipBlocks: an unknown client", from: "127.0.0.2", path: "/page", want: 403, body: "RBAC: access denied"},
		{name: "ipBlocks: an unknown client with a valid token", from: "127.0.0.2", path: "/api/items", token: valid, want: 403, body: "RBAC: access denied"},
		{name: "remoteIpBlocks: the blocked client", from: "127.0.0.3", path: "/page", want: 403, body: "RBAC: access denied"},
		{name: "remoteIpBlocks: X-Forwarded-For does not unblock", from: "127.0.0.3", path: "/page", xff: "127.0.0.1", want: 403, body: "RBAC: access denied"},
		{name: "remoteIpBlocks: X-Forwarded-For does not block", from: "127.0.0.1", path: "/page", xff: "127.0.0.3", want: 200, body: "shop ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				Proxy:             nil,
				DisableKeepAlives: true,
				DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}, Timeout: 5 * time.Second}).DialContext,
			}}
			req, _ := http.NewRequest("GET", "http://"+addr+tc.path, nil)
			req.Host = "shop.example.com"
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%d %q, want %d %q\ngateway logs:\n%s", resp.StatusCode, body, tc.want, tc.body, gw.Logs.String())
			}
		})
	}
}
