// Package jwtauth validates the JSON Web Tokens of requests for the
// sidecar's request authentication (Istio's RequestAuthentication, sent
// as Envoy's jwt_authn filter): RS256 and ES256 signatures checked with
// go-jose against inline key sets or key sets fetched from a jwksUri,
// cached and refreshed, then the issuer, audiences and validity times.
//
// As in Istio, a request without a token passes (authorization decides
// what such requests may do, with requestPrincipals); a request with a
// token that fails any check is rejected with 401.
package jwtauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"weft.dev/weft/internal/proxy/rbac"
)

// HeaderLocation is a header that may carry a token, after Prefix.
type HeaderLocation struct {
	Name, Prefix string
}

// Provider is one issuer's rules (one jwtRules entry).
type Provider struct {
	// Name is the provider's name in the filter config.
	Name string
	// Issuer must equal the token's iss.
	Issuer string
	// Audiences, when set, must include one of the token's aud values.
	Audiences []string
	// Keys is the inline key set; nil when JWKSURI is set.
	Keys *jose.JSONWebKeySet
	// JWKSURI is where the key set is fetched from.
	JWKSURI string
	// CacheDuration is how long fetched keys are used before a refresh;
	// DefaultCacheDuration when 0.
	CacheDuration time.Duration
	// FromHeaders and FromParams are where tokens are looked for; both
	// empty means "Authorization: Bearer <token>" and the access_token
	// query parameter, as Istio.
	FromHeaders []HeaderLocation
	FromParams  []string
	// Forward keeps the token in the request sent on; by default the
	// header (or parameter) holding it is removed.
	Forward bool
	// PayloadHeader, when set, receives the token's payload (base64url)
	// on the request sent on.
	PayloadHeader string
}

// DefaultCacheDuration is how long fetched key sets are used before they
// are fetched again (Envoy's default is 10 minutes; Weft refreshes a bit
// sooner so rotated keys are picked up quickly).
const DefaultCacheDuration = 5 * time.Minute

// clockSkew is the leeway on exp and nbf (Envoy's default).
const clockSkew = 60 * time.Second

// algorithms accepted.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// ParseJWKS parses a JSON Web Key Set.
func ParseJWKS(s string) (*jose.JSONWebKeySet, error) {
	ks := &jose.JSONWebKeySet{}
	if err := json.Unmarshal([]byte(s), ks); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(ks.Keys) == 0 {
		return nil, errors.New("jwks has no keys")
	}
	for i, k := range ks.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("jwks: key %d is not a valid public key", i)
		}
	}
	return ks, nil
}

// Error is a rejected token; Message is the 401 body.
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

// Cache fetches and keeps key sets by URI: a key set is fetched on first
// use (the request waits at most fetchTimeout), used for its cache
// duration, then refreshed in the background while the old one keeps
// serving; a failed fetch is logged and the last good keys are kept. It
// is safe for concurrent use.
type Cache struct {
	client *http.Client
	log    *slog.Logger
	mu     sync.Mutex
	byURI  map[string]*entry
	now    func() time.Time
}

type entry struct {
	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	fetched  time.Time
	inFlight chan struct{} // closed when the running fetch ends; nil if none
	lastErr  error
}

const fetchTimeout = 5 * time.Second

// CAFileEnv names a PEM file of extra root CAs trusted when fetching a
// jwksUri over HTTPS (besides the system roots): for identity providers
// with a private CA. It is read once, when the proxy starts.
const CAFileEnv = "WEFT_JWKS_CA_FILE"

// NewCache returns a Cache that logs to log.
func NewCache(log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := os.Getenv(CAFileEnv); f != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(f); err != nil || !pool.AppendCertsFromPEM(pem) {
			log.Warn("cannot read the extra CAs for jwksUri", "env", CAFileEnv, "file", f, "error", err)
		} else {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
	return &Cache{client: &http.Client{Transport: tr, Timeout: fetchTimeout}, log: log, byURI: map[string]*entry{}, now: time.Now}
}

// Keys returns the key set of uri, fetching it if it has none or it is
// older than maxAge.
func (c *Cache) Keys(ctx context.Context, uri string, maxAge time.Duration) (*jose.JSONWebKeySet, error) {
	if maxAge <= 0 {
		maxAge = DefaultCacheDuration
	}
	c.mu.Lock()
	e := c.byURI[uri]
	if e == nil {
		e = &entry{}
		c.byURI[uri] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	keys, stale := e.keys, e.keys == nil || c.now().Sub(e.fetched) >= maxAge
	wait := e.inFlight
	if stale && wait == nil {
		wait = make(chan struct{})
		e.inFlight = wait
		go c.fetch(uri, e, wait)
	}
	e.mu.Unlock()
	if keys != nil {
		return keys, nil // refresh, if any, runs in the background
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	e.mu.Lock()
	keys, lastErr := e.keys, e.lastErr
	e.mu.Unlock()
	if keys == nil {
		return nil, fmt.Errorf("no keys from %s: %w", uri, lastErr)
	}
	return keys, nil
}

// fetch runs once per entry at a time; it ends within the client timeout.
func (c *Cache) fetch(uri string, e *entry, done chan struct{}) {
	ks, err := c.get(uri)
	e.mu.Lock()
	if err != nil {
		e.lastErr = err
		// Try again on the next request after a short pause, not on
		// every request.
		if e.keys != nil {
			e.fetched = c.now().Add(-DefaultCacheDuration + 10*time.Second)
		}
		c.log.Warn("fetching jwks failed; keeping the last good keys", "uri", uri, "error", err, "have_keys", e.keys != nil)
	} else {
		e.keys, e.fetched, e.lastErr = ks, c.now(), nil
	}
	e.inFlight = nil
	e.mu.Unlock()
	close(done)
}

func (c *Cache) get(uri string) (*jose.JSONWebKeySet, error) {
	resp, err := c.client.Get(uri)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", uri, resp.Status)
	}
	return ParseJWKS(string(body))
}

// found is a token and where it was.
type found struct {
	token  string
	header string // header name, or "" for a query parameter
	param  string
}

// locateAll returns the tokens at p's locations, in order.
func (p *Provider) locateAll(r *http.Request) []found {
	var out []found
	hs, ps := p.FromHeaders, p.FromParams
	if len(hs) == 0 && len(ps) == 0 {
		hs, ps = []HeaderLocation{{Name: "Authorization", Prefix: "Bearer "}}, []string{"access_token"}
	}
	for _, h := range hs {
		v := r.Header.Get(h.Name)
		if v == "" {
			continue
		}
		if h.Prefix != "" {
			if len(v) < len(h.Prefix) || !strings.EqualFold(v[:len(h.Prefix)], h.Prefix) {
				continue
			}
			v = v[len(h.Prefix):]
		}
		out = append(out, found{token: strings.TrimSpace(v), header: h.Name})
	}
	if len(ps) > 0 && r.URL.RawQuery != "" {
		q := r.URL.Query()
		for _, name := range ps {
			if v := q.Get(name); v != "" {
				out = append(out, found{token: v, param: name})
			}
		}
	}
	return out
}

// Authenticate looks for tokens of the providers. No token: nil, nil.
// Every token found must be valid, as Istio has it (a request with an
// invalid token is rejected, whatever other tokens it has): the first
// error is returned as an *Error. When all are valid, it returns what the
// first establishes, and the request is changed as each token's provider
// says (the token removed unless forwarded, its payload in a header).
func Authenticate(ctx context.Context, providers []*Provider, c *Cache, r *http.Request, now time.Time) (*rbac.Auth, error) {
	// Every token at every provider's locations, with the provider
	// whose location it is.
	type at struct {
		f found
		p *Provider
	}
	var all []at
	for _, p := range providers {
		for _, f := range p.locateAll(r) {
			all = append(all, at{f, p})
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	var first *rbac.Auth
	issuers := map[string]string{} // each distinct token's issuer
	for _, a := range all {
		if _, done := issuers[a.f.token]; done {
			continue
		}
		tok, err := jwt.ParseSigned(a.f.token, algorithms)
		if err != nil {
			return nil, &Error{"Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"}
		}
		var unverified jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
			return nil, &Error{"Jwt verification fails"}
		}
		// The token's provider: one with its issuer at one of whose
		// locations it is.
		var p *Provider
		for _, b := range all {
			if b.f.token == a.f.token && b.p.Issuer == unverified.Issuer {
				p = b.p
				break
			}
		}
		if p == nil {
			return nil, &Error{"Jwt issuer is not configured"}
		}
		auth, err := p.verify(ctx, c, tok, now)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = auth
		}
		issuers[a.f.token] = p.Issuer
		if p.PayloadHeader != "" {
			parts := strings.Split(a.f.token, ".")
			r.Header.Set(p.PayloadHeader, strings.TrimRight(parts[1], "="))
		}
	}
	// Each token is removed from the locations of its issuer's providers
	// that do not forward it.
	for _, a := range all {
		if a.p.Forward || a.p.Issuer != issuers[a.f.token] {
			continue
		}
		if a.f.header != "" {
			r.Header.Del(a.f.header)
		} else {
			q := r.URL.Query()
			q.Del(a.f.param)
			r.URL.RawQuery = q.Encode()
		}
	}
	return first, nil
}

// Present checks that r carries a valid token for p, whose token is
// required (RequestAuthentication presence REQUIRED): none is the *Error
// "Jwt is missing", an invalid one the verification's *Error. r is not
// changed.
func Present(ctx context.Context, p *Provider, c *Cache, r *http.Request, now time.Time) error {
	fs := p.locateAll(r)
	if len(fs) == 0 {
		return &Error{"Jwt is missing"}
	}
	tok, err := jwt.ParseSigned(fs[0].token, algorithms)
	if err != nil {
		return &Error{"Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"}
	}
	_, err = p.verify(ctx, c, tok, now)
	return err
}

func (p *Provider) verify(ctx context.Context, c *Cache, tok *jwt.JSONWebToken, now time.Time) (*rbac.Auth, error) {
	keys := p.Keys
	if keys == nil {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		ks, err := c.Keys(fctx, p.JWKSURI, p.CacheDuration)
		cancel()
		if err != nil {
			return nil, &Error{"Jwks remote fetch is failed"}
		}
		keys = ks
	}
	var std jwt.Claims
	all := map[string]any{}
	verified := false
	kid := ""
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	candidates := keys.Keys
	if kid != "" {
		if k := keys.Key(kid); len(k) > 0 {
			candidates = k
		}
	}
	for _, k := range candidates {
		if err := tok.Claims(k.Key, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, &Error{"Jwt verification fails"}
	}
	exp := jwt.Expected{Issuer: p.Issuer, Time: now}
	if len(p.Audiences) > 0 {
		exp.AnyAudience = p.Audiences
	}
	switch err := std.ValidateWithLeeway(exp, clockSkew); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return nil, &Error{"Jwt is expired"}
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, &Error{"Jwt not yet valid"}
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, &Error{"Audiences in Jwt are not allowed"}
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, &Error{"Jwt issuer is not configured"}
	default:
		return nil, &Error{"Jwt verification fails"}
	}
	a := &rbac.Auth{Principal: std.Issuer + "/" + std.Subject, Audiences: std.Audience, Claims: all}
	if azp, ok := all["azp"].(string); ok {
		a.Presenter = azp
	}
	return a, nil
}

// PayloadOf decodes a token's payload, for tests and logs.
func PayloadOf(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
}
