package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"weft.dev/weft/internal/proxy/jwtauth"
	"weft.dev/weft/internal/proxy/proxytest"
)

const testIssuer = "https://issuer.example.com"

type signer struct {
	s jose.Signer
}

func newSigner(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string) signer {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	return signer{s}
}

func (s signer) token(t *testing.T, iss, sub string, aud []string, nbf, exp time.Time, extra map[string]any) string {
	t.Helper()
	tok, err := jwt.Signed(s.s).Claims(jwt.Claims{Issuer: iss, Subject: sub, Audience: aud, NotBefore: jwt.NewNumericDate(nbf), Expiry: jwt.NewNumericDate(exp)}).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWTThroughSidecars: a RequestAuthentication whose jwksUri is served
// by a real HTTPS server, and an AuthorizationPolicy that allows requests
// with a token from the issuer (or to /public): valid RS256 and ES256
// tokens pass and reach the app (the token removed, its payload put in a
// header); expired, not yet valid, wrong issuer, wrong audience and badly
// signed tokens get 401; a missing token passes authentication and is
// then denied by the policy (403) except on /public.
func TestJWTThroughSidecars(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rsaKey.Public(), KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
		{Key: ecKey.Public(), KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
	}})
	var fetches atomic.Int32
	idp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(idp.Close)
	caFile := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idp.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(jwtauth.CAFileEnv, caFile)

	policies := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: ` + testIssuer + `
    audiences: [httpbin]
    jwksUri: ` + idp.URL + `/jwks.json
    outputPayloadToHeader: x-jwt-payload
---
` + ap("require-jwt", `
  rules:
  - from: [{source: {requestPrincipals: ["`+testIssuer+`/*"]}}]
  - to: [{operation: {paths: ["/public"]}}]`)

	env := &authzEnv{testCA: startCA(t, time.Hour), cp: proxytest.StartControlPlane(t)}
	var mu sync.Mutex
	var seen http.Header
	m := startAuthzMeshWithApp(t, env, policies, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		io.WriteString(w, "httpbin ok")
	})
	now := time.Now()
	rs := newSigner(t, jose.RS256, rsaKey, "rsa1")
	es := newSigner(t, jose.ES256, ecKey, "ec1")
	bad := newSigner(t, jose.RS256, otherKey, "rsa1")
	for _, tc := range []struct {
		name, path, token string
		want              int
		body              string
	}{
		{"valid RS256", "/ip", rs.token(t, testIssuer, "alice", []string{"httpbin"}, now.Add(-time.Minute), now.Add(time.Hour), nil), 200, "httpbin ok"},
		{"valid ES256", "/ip", es.token(t, testIssuer, "bob", []string{"other", "httpbin"}, now.Add(-time.Minute), now.Add(time.Hour), map[string]any{"groups": []string{"a"}}), 200, "httpbin ok"},
		{"expired", "/ip", rs.token(t, testIssuer, "alice", []string{"httpbin"}, now.Add(-2*time.Hour), now.Add(-time.Hour), nil), 401, "Jwt is expired"},
		{"not yet valid", "/ip", rs.token(t, testIssuer, "alice", []string{"httpbin"}, now.Add(time.Hour), now.Add(2*time.Hour), nil), 401, "Jwt not yet valid"},
		{"wrong issuer", "/ip", rs.token(t, "https://evil.example.com", "alice", []string{"httpbin"}, now.Add(-time.Minute), now.Add(time.Hour), nil), 401, "Jwt issuer is not configured"},
		{"wrong audience", "/ip", rs.token(t, testIssuer, "alice", []string{"billing"}, now.Add(-time.Minute), now.Add(time.Hour), nil), 401, "Audiences in Jwt are not allowed"},
		{"bad signature", "/ip", bad.token(t, testIssuer, "alice", []string{"httpbin"}, now.Add(-time.Minute), now.Add(time.Hour), nil), 401, "Jwt verification fails"},
		{"garbage", "/ip", "not.a-token", 401, "Jwt"},
		{"invalid token even where no token is needed", "/public", rs.token(t, testIssuer, "alice", []string{"httpbin"}, now.Add(-2*time.Hour), now.Add(-time.Hour), nil), 401, "Jwt is expired"},
		{"missing: denied by the policy", "/ip", "", 403, "RBAC: access denied"},
		{"missing: allowed on /public", "/public", "", 200, "httpbin ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			req, _ := http.NewRequest("GET", "http://httpbin:8000"+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			expectResponse(t, m.sleep, req, tc.want, tc.body)
			mu.Lock()
			defer mu.Unlock()
			if tc.want == 200 && tc.token != "" {
				if seen.Get("Authorization") != "" {
					t.Errorf("the app got the token; forwardOriginalToken is off")
				}
				payload, _ := jwtauth.PayloadOf(tc.token)
				if got, _ := jwtauth.PayloadOf("x." + seen.Get("X-Jwt-Payload") + ".y"); string(got) != string(payload) {
					t.Errorf("x-jwt-payload = %s, want %s", got, payload)
				}
			}
		})
	}
	if fetches.Load() == 0 {
		t.Error("the jwksUri was never fetched")
	}
}

// TestJWTPresenceRequired: a RequestAuthentication whose first rule's
// token is REQUIRED (presence) and whose second is optional: a request
// without the required token gets 401 "Jwt is missing" even with a valid
// token of the other rule, or with none (which the optional rule alone
// would let through); with it, valid, the request reaches the app without
// either token, and an invalid one, or an invalid token of the other rule
// beside it, gets 401.
func TestJWTPresenceRequired(t *testing.T) {
	keyA, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyB, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := func(k *rsa.PrivateKey, kid string) string {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: kid, Algorithm: "RS256", Use: "sig"}}})
		return string(b)
	}
	const issuerA, issuerB = "https://required.example.com", "https://optional.example.com"
	policies := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: ` + issuerA + `
    jwks: '` + jwks(keyA, "a") + `'
    fromHeaders: [{name: x-a-token}]
    presence: REQUIRED
  - issuer: ` + issuerB + `
    jwks: '` + jwks(keyB, "b") + `'
`
	env := &authzEnv{testCA: startCA(t, time.Hour), cp: proxytest.StartControlPlane(t)}
	var mu sync.Mutex
	var seen http.Header
	m := startAuthzMeshWithApp(t, env, policies, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		io.WriteString(w, "httpbin ok")
	})
	now := time.Now()
	a, b := newSigner(t, jose.RS256, keyA, "a"), newSigner(t, jose.RS256, keyB, "b")
	forgedB := newSigner(t, jose.RS256, keyA, "b").token(t, issuerB, "mallory", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	validA := a.token(t, issuerA, "alice", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	expiredA := a.token(t, issuerA, "alice", nil, now.Add(-2*time.Hour), now.Add(-time.Hour), nil)
	validB := b.token(t, issuerB, "bob", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	for _, tc := range []struct {
		name, a, b string
		want       int
		body       string
	}{
		{"no token", "", "", 401, "Jwt is missing"},
		{"only the optional token", "", validB, 401, "Jwt is missing"},
		{"the required token", validA, "", 200, "httpbin ok"},
		{"both", validA, validB, 200, "httpbin ok"},
		{"the required token expired", expiredA, validB, 401, "Jwt is expired"},
		{"the required token, and a forged one of the other rule", validA, forgedB, 401, "Jwt verification fails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://httpbin:8000/ip", nil)
			if tc.a != "" {
				req.Header.Set("x-a-token", tc.a)
			}
			if tc.b != "" {
				req.Header.Set("Authorization", "Bearer "+tc.b)
			}
			expectResponse(t, m.sleep, req, tc.want, tc.body)
			mu.Lock()
			defer mu.Unlock()
			if tc.want == 200 && (seen.Get("x-a-token") != "" || seen.Get("Authorization") != "") {
				t.Errorf("the app got a token (x-a-token %q, authorization %q); forwardOriginalToken is off", seen.Get("x-a-token"), seen.Get("Authorization"))
			}
		})
	}
}

// expectResponse sends req with c and fails the test unless the answer
// has status want and a body containing wantBody.
func expectResponse(t *testing.T, c *http.Client, req *http.Request, want int, wantBody string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want || !strings.Contains(string(body), wantBody) {
		t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, want, wantBody)
	}
}
