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
