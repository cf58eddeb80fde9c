package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sort"
	"sync"

	"weft.dev/weft/internal/spiffeid"
)

// Tokens are the bootstrap credentials of local mode: `weft up` issues one
// random 256-bit token per instance and hands it to the instance's
// sidecar in a 0600 file; a call bearing it is that instance. Only
// SHA-256 hashes of the tokens are kept. Safe for concurrent use.
type Tokens struct {
	mu         sync.Mutex
	byHash     map[[32]byte]Caller
	byInstance map[string][32]byte
}

// NewTokens returns an empty token store.
func NewTokens() *Tokens {
	return &Tokens{byHash: map[[32]byte]Caller{}, byInstance: map[string][32]byte{}}
}

// Issue returns a new token for the instance (<name>.<namespace>) with
// identity id; a token the instance had before stops working.
func (t *Tokens) Issue(instance string, id spiffeid.ID) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256([]byte(tok))
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byInstance[instance]; ok {
		delete(t.byHash, old)
	}
	t.byInstance[instance] = h
	t.byHash[h] = Caller{ID: id, Instance: instance}
	return tok, nil
}

// Revoke makes the instance's token stop working.
func (t *Tokens) Revoke(instance string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.byInstance[instance]; ok {
		delete(t.byHash, h)
		delete(t.byInstance, instance)
	}
}

// Lookup returns who a token belongs to. Tokens are compared by their
// SHA-256 hash, so the lookup time says nothing about a token's bytes.
func (t *Tokens) Lookup(token string) (Caller, bool) {
	h := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.byHash[h]
	return c, ok
}

// Instances lists the instances that hold a token, sorted.
func (t *Tokens) Instances() []string {
	t.mu.Lock()
	out := make([]string, 0, len(t.byInstance))
	for k := range t.byInstance {
		out = append(out, k)
	}
	t.mu.Unlock()
	sort.Strings(out)
	return out
}
