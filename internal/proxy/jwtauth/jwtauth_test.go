package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestCacheKeepsLastGoodKeys: keys are fetched once, reused while fresh,
// refreshed in the background when stale, and kept when a refresh fails.
func TestCacheKeepsLastGoodKeys(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256"}}})
	var fail atomic.Bool
	var fetches atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(jwks)
	}))
	defer srv.Close()
	c := NewCache(nil)
	c.client = srv.Client()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	c.now = func() time.Time { return time.Unix(0, clock.Load()) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ks, err := c.Keys(ctx, srv.URL, time.Minute)
	if err != nil || len(ks.Key("k1")) != 1 {
		t.Fatalf("first fetch: %v %v", ks, err)
	}
	if _, err := c.Keys(ctx, srv.URL, time.Minute); err != nil || fetches.Load() != 1 {
		t.Fatalf("fresh keys refetched: fetches=%d err=%v", fetches.Load(), err)
	}
	fail.Store(true)
	clock.Add(int64(2 * time.Minute))
	ks, err = c.Keys(ctx, srv.URL, time.Minute) // stale: refresh in the background, old keys served
	if err != nil || len(ks.Key("k1")) != 1 {
		t.Fatalf("stale keys not served: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		e := c.byURI[srv.URL]
		c.mu.Unlock()
		e.mu.Lock()
		done := e.inFlight == nil && e.lastErr != nil
		e.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("refresh did not fail")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ks, err := c.Keys(ctx, srv.URL, time.Minute); err != nil || len(ks.Key("k1")) != 1 {
		t.Fatalf("last good keys lost after a failed refresh: %v", err)
	}
	// A URI that never answered has no keys to fall back on.
	if _, err := c.Keys(ctx, srv.URL+"/other", time.Minute); err == nil {
		t.Error("keys from a failing URI")
	}
}

func TestParseJWKS(t *testing.T) {
	for _, bad := range []string{"", "{}", `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`} {
		if _, err := ParseJWKS(bad); err == nil {
			t.Errorf("ParseJWKS(%q) accepted", bad)
		}
	}
}

// TestAuthenticateEveryToken: every token a request carries is verified,
// wherever it is: two valid tokens of one issuer at two locations of its
// provider pass and both are removed; the same token at the locations of
// two providers of its issuer is removed from both; a forged token beside
// a valid one is refused.
func TestAuthenticateEveryToken(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256"}}}
	sign := func(k *ecdsa.PrivateKey, sub string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"iss": "https://a.example.com", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
		jws, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jws.CompactSerialize()
		return tok
	}
	a := &Provider{Name: "a", Issuer: "https://a.example.com", Keys: keys, FromHeaders: []HeaderLocation{{Name: "x-a"}, {Name: "Authorization", Prefix: "Bearer "}}}
	b := &Provider{Name: "b", Issuer: "https://a.example.com", Keys: keys, FromHeaders: []HeaderLocation{{Name: "x-b"}}}
	for _, tc := range []struct {
		name    string
		headers map[string]string
		wantErr string
	}{
		{"two tokens of one issuer at two locations", map[string]string{"x-a": sign(key, "alice"), "Authorization": "Bearer " + sign(key, "bob")}, ""},
		{"one token at two providers' locations", map[string]string{"Authorization": "Bearer " + sign(key, "alice"), "x-b": sign(key, "alice")}, ""},
		{"a forged token beside a valid one", map[string]string{"x-a": sign(key, "alice"), "x-b": sign(other, "mallory")}, "Jwt verification fails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			auth, err := Authenticate(context.Background(), []*Provider{a, b}, nil, r, time.Now())
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Authenticate = %v, %v; want %q", auth, err, tc.wantErr)
				}
				return
			}
			if err != nil || auth == nil {
				t.Fatalf("Authenticate = %v, %v; want a principal", auth, err)
			}
			for k := range tc.headers {
				if v := r.Header.Get(k); v != "" {
					t.Errorf("%s left on the request: %.20s...", k, v)
				}
			}
		})
	}
}
