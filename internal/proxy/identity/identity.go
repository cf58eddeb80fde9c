// Package identity is the sidecar's side of Weft's workload identity. It
// has two sources of the proxy's X.509 SVID:
//
//   - the control plane's CA (SourceCA): it generates an ECDSA P-256 key
//     in memory (the key never leaves the process), asks the CA for an
//     SVID with a CSR naming its SPIFFE ID, and renews it at a jittered
//     point between 50 and 80 % of its lifetime, with a fresh key each
//     time;
//   - the SPIFFE Workload API (SourceSPIFFE), e.g. a SPIRE agent, through
//     go-spiffe's X509Source: the agent attests the process and hands it
//     the SVID, its key and the trust bundle, and pushes new ones before
//     they expire. The key stays in the agent and this process.
//
// The current certificate is served by GetCertificate and
// GetClientCertificate, which fit tls.Config: a TLS listener or client
// pool built with them picks up a renewed leaf on its next handshake,
// while connections already up keep the certificate they started with.
//
// It imports no Istio, Kubernetes or control-plane code (the proxy's
// import-graph test checks that).
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/spiffesource"
)

// Options configure a Client; they are read once.
type Options struct {
	// Source is where the SVID comes from: SourceCA (default) or
	// SourceSPIFFE.
	Source string
	// SPIFFESocket is the Workload API's address (unix:///path or
	// tcp://ip:port); required with SourceSPIFFE.
	SPIFFESocket string
	// Addr is the CA's address (the control plane's 15012); required with
	// SourceCA.
	Addr string
	// RootFile is a PEM file of the roots the control plane's TLS
	// certificate (the CA port) is verified against (weft up passes the
	// mesh's trust-bundle.pem); required with SourceCA, optional with
	// SourceSPIFFE (needed only for xDS over mTLS).
	RootFile string
	// TokenFile holds the bootstrap token that proves which workload the
	// proxy is; it is read before every request, so it may be replaced.
	// Required with SourceCA, unused with SourceSPIFFE (the agent attests
	// the process instead).
	TokenFile string
	// ID is the identity to ask for.
	ID spiffeid.ID
	// ServerName is the name checked on the CA's certificate; default
	// caapi.ServerName.
	ServerName string
	// Validity is the lifetime asked for; 0 takes the CA's default.
	Validity time.Duration
	// BackoffBase and BackoffMax bound the retry delay when the CA cannot
	// be reached or refuses; defaults 500 ms and 30 s.
	BackoffBase, BackoffMax time.Duration
	// BundlePoll is how often the client asks the CA for the trust
	// bundle between renewals (and reports the bundle and leaf it uses),
	// so that a root rotation reaches it without waiting for a renewal;
	// default 10 s, negative: never.
	BundlePoll time.Duration
	// Logger receives the client's logs; default slog.Default().
	Logger *slog.Logger
}

// SVID is one issued certificate with its key. It is immutable.
type SVID struct {
	// ID is the certificate's SPIFFE ID.
	ID spiffeid.ID
	// Certificate is the leaf, intermediates and key, ready for TLS.
	Certificate *tls.Certificate
	// Leaf is the parsed leaf.
	Leaf *x509.Certificate
	// Chain is the leaf then the intermediates.
	Chain []*x509.Certificate
	// Bundle is the trust bundle the CA sent, to verify peers with.
	Bundle *x509.CertPool
	// BundleCerts are the roots in Bundle.
	BundleCerts []*x509.Certificate
	// RenewAt is when the client will ask for the next one; zero with
	// SourceSPIFFE, where the agent decides.
	RenewAt time.Time
}

// Client obtains and renews the proxy's SVID. Its methods are safe for
// concurrent use.
type Client struct {
	opts    Options
	log     *slog.Logger
	caRoots *x509.CertPool // verify the CA's TLS certificate
	current atomic.Pointer[SVID]
	ready   chan struct{}
	once    sync.Once
	// renewals counts certificates obtained (the first included).
	renewals atomic.Int64
}

// New checks the options; Run does the work.
func New(opts Options) (*Client, error) {
	switch opts.Source {
	case "", SourceCA:
		opts.Source = SourceCA
		if opts.Addr == "" {
			return nil, errors.New("identity: no CA address")
		}
		if opts.RootFile == "" {
			return nil, errors.New("identity: no CA root file: pass --ca-root-file")
		}
		if opts.TokenFile == "" {
			return nil, errors.New("identity: no bootstrap token file: pass --bootstrap-token-file")
		}
	case SourceSPIFFE:
		if opts.SPIFFESocket == "" {
			return nil, errors.New("identity: no SPIFFE Workload API address: pass --spiffe-socket or set SPIFFE_ENDPOINT_SOCKET")
		}
		if err := spiffesource.CheckAddr("identity: SPIFFE Workload API address", opts.SPIFFESocket); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("identity: source %q: want %s or %s", opts.Source, SourceCA, SourceSPIFFE)
	}
	if err := opts.ID.Validate(); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if opts.ServerName == "" {
		opts.ServerName = caapi.ServerName
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BundlePoll == 0 {
		opts.BundlePoll = 10 * time.Second
	}
	caRoots := x509.NewCertPool()
	if opts.RootFile != "" {
		pemData, err := os.ReadFile(opts.RootFile)
		if err != nil {
			return nil, fmt.Errorf("identity: reading the CA root file: %w", err)
		}
		if !caRoots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("identity: CA root file %s: no PEM certificate in it", opts.RootFile)
		}
	}
	return &Client{opts: opts, log: opts.Logger, caRoots: caRoots, ready: make(chan struct{})}, nil
}

// ID is the identity the client asks for.
func (c *Client) ID() spiffeid.ID { return c.opts.ID }

// Source is where the certificate comes from: SourceCA or SourceSPIFFE.
func (c *Client) Source() string { return c.opts.Source }

// Ready is closed once the first certificate is in hand.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Current returns the certificate in force, or nil before the first.
func (c *Client) Current() *SVID { return c.current.Load() }

// Renewals is how many certificates the client has obtained.
func (c *Client) Renewals() int64 { return c.renewals.Load() }

// GetCertificate fits tls.Config.GetCertificate (server side).
func (c *Client) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.certificate()
}

// GetClientCertificate fits tls.Config.GetClientCertificate (client side).
func (c *Client) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.certificate()
}

func (c *Client) certificate() (*tls.Certificate, error) {
	s := c.current.Load()
	if s == nil {
		return nil, fmt.Errorf("no certificate for %s yet: %s has not issued one", c.opts.ID, c.sourceName())
	}
	return s.Certificate, nil
}

// TrustBundle is the pool peers' chains verify against, or nil before the
// first certificate.
func (c *Client) TrustBundle() *x509.CertPool {
	if s := c.current.Load(); s != nil {
		return s.Bundle
	}
	return nil
}

// Run obtains a certificate, then renews it until ctx ends. It returns
// nil when ctx ends; a source that cannot be reached is retried with
// backoff, never fatal. With SourceSPIFFE, a first SVID of another trust
// domain is fatal (a *TrustDomainError).
func (c *Client) Run(ctx context.Context) error {
	if c.opts.Source == SourceSPIFFE {
		return c.runSPIFFE(ctx)
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	backoff := c.opts.BackoffBase
	var warnedExpiry time.Time
	for {
		if s := c.current.Load(); s != nil && time.Until(s.RenewAt) > 0 {
			if !c.waitRenewal(ctx, cc, s.RenewAt) {
				return nil
			}
		}
		svid, err := c.fetch(ctx, cc)
		if err == nil {
			c.install(svid)
			backoff = c.opts.BackoffBase
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		cur := c.current.Load()
		switch {
		case cur == nil:
			c.log.Warn("cannot get a certificate yet; retrying", "id", c.opts.ID.String(), "ca", c.opts.Addr, "retry_in", backoff, "error", err)
		case time.Now().After(cur.Leaf.NotAfter):
			if time.Since(warnedExpiry) > time.Minute/4 {
				warnedExpiry = time.Now()
				c.log.Error("certificate EXPIRED and cannot be renewed: peers will refuse this proxy until the CA answers",
					"id", c.opts.ID.String(), "serial", serial(cur.Leaf), "expired", cur.Leaf.NotAfter.UTC().Format(time.RFC3339), "ca", c.opts.Addr, "error", err)
			}
		default:
			left := time.Until(cur.Leaf.NotAfter)
			c.log.Error("certificate expires soon and cannot be renewed: check that the control plane's CA is reachable and the bootstrap token is valid",
				"id", c.opts.ID.String(), "serial", serial(cur.Leaf), "expires_in", left.Round(time.Millisecond), "ca", c.opts.Addr, "retry_in", backoff, "error", err)
		}
		delay := backoff
		if cur != nil {
			// Never sleep past most of what is left of the certificate.
			if left := time.Until(cur.Leaf.NotAfter); left > 0 {
				delay = min(delay, max(left/4, c.opts.BackoffBase))
			}
		}
		t := time.NewTimer(jitter(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.opts.BackoffMax)
	}
}

// install makes svid the certificate in force.
func (c *Client) install(svid *SVID) {
	old := c.current.Swap(svid)
	c.renewals.Add(1)
	c.once.Do(func() { close(c.ready) })
	args := []any{"id", svid.ID.String(), "serial", serial(svid.Leaf), "not_after", svid.Leaf.NotAfter.UTC().Format(time.RFC3339), "source", c.sourceName()}
	if !svid.RenewAt.IsZero() {
		args = append(args, "renew_at", svid.RenewAt.UTC().Format(time.RFC3339Nano))
	}
	if old == nil {
		c.log.Info("workload certificate issued", args...)
	} else {
		c.log.Info("workload certificate renewed", append(args, "previous_serial", serial(old.Leaf))...)
	}
}

// waitRenewal waits until at, polling the trust bundle meanwhile; it
// returns false when ctx ends, true when it is time to renew (at passed,
// or the CA asked for a renewal).
func (c *Client) waitRenewal(ctx context.Context, cc *grpc.ClientConn, at time.Time) bool {
	renew := time.NewTimer(time.Until(at))
	defer renew.Stop()
	var poll <-chan time.Time
	if c.opts.BundlePoll > 0 {
		t := time.NewTicker(c.opts.BundlePoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-renew.C:
			return true
		case <-poll:
			if c.poll(ctx, cc) {
				return true
			}
			if c.opts.BundlePoll < 0 {
				poll = nil // the CA has no bundle endpoint: stop asking
			}
		}
	}
}

// poll reports the leaf and bundle in use to the CA and installs the
// bundle it answers; it returns whether the CA asks for a renewal now.
func (c *Client) poll(ctx context.Context, cc *grpc.ClientConn) bool {
	for range 2 { // a changed bundle is reported back at once
		cur := c.current.Load()
		if cur == nil {
			return false
		}
		tok, err := os.ReadFile(c.opts.TokenFile)
		if err != nil {
			c.log.Debug("bundle poll: reading the bootstrap token", "error", err)
			return false
		}
		req := &caapi.BundleRequest{CertChain: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cur.Leaf.Raw})}
		for _, r := range cur.BundleCerts {
			req.BundleSerials = append(req.BundleSerials, serial(r))
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := caapi.GetTrustBundle(rctx, cc, strings.TrimSpace(string(tok)), req)
		cancel()
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				c.log.Info("the CA has no trust bundle endpoint; the bundle is updated at renewals only")
				c.opts.BundlePoll = -1
			} else {
				c.log.Debug("bundle poll failed", "error", err)
			}
			return false
		}
		roots, err := caapi.ParseCertificates(resp.TrustBundle)
		if err != nil {
			c.log.Warn("the CA sent an unusable trust bundle; keeping the current one", "error", err)
			return false
		}
		if sameCerts(roots, cur.BundleCerts) {
			return resp.Renew
		}
		bundle := x509.NewCertPool()
		for _, r := range roots {
			bundle.AddCert(r)
		}
		next := *cur
		next.Bundle, next.BundleCerts = bundle, roots
		if !c.current.CompareAndSwap(cur, &next) {
			return false // renewed meanwhile
		}
		serials := make([]string, len(roots))
		for i, r := range roots {
			serials[i] = serial(r)
		}
		c.log.Info("trust bundle updated", "id", c.opts.ID.String(), "roots", serials, "renew_now", resp.Renew)
		if resp.Renew {
			return true
		}
	}
	return false
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// ControlPlaneTLS is the TLS config for the control plane's CA port:
// its certificate is verified (name ServerName) against the root file
// given at start and the trust bundle of the moment, so it still verifies
// after a root rotation; with clientCert, the proxy's SVID is presented
// (xDS over mTLS). With SourceSPIFFE the bundle is SPIRE's, which does
// not sign the control plane's certificate: the root file is read again
// instead (the built-in CA rewrites it during a root rotation).
func (c *Client) ControlPlaneTLS(clientCert bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.opts.ServerName,
		InsecureSkipVerify: true, // verified in VerifyConnection against a pool that changes
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the control plane sent no certificate")
			}
			pool := c.caRoots.Clone()
			if c.opts.Source == SourceSPIFFE {
				if data, err := os.ReadFile(c.opts.RootFile); err == nil {
					pool.AppendCertsFromPEM(data)
				}
			} else if s := c.current.Load(); s != nil {
				for _, r := range s.BundleCerts {
					pool.AddCert(r)
				}
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: c.opts.ServerName}); err != nil {
				return fmt.Errorf("the control plane's certificate (serial %s, valid %s to %s): %w", serial(leaf),
					leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), err)
			}
			return nil
		},
	}
	if clientCert {
		cfg.GetClientCertificate = c.GetClientCertificate
	}
	return cfg
}

func (c *Client) dial() (*grpc.ClientConn, error) {
	creds := credentials.NewTLS(c.ControlPlaneTLS(false))
	cc, err := grpc.NewClient(c.opts.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("CA address %s: %w", c.opts.Addr, err)
	}
	return cc, nil
}

// fetch makes a key and a CSR, calls the CA, and checks the answer.
func (c *Client) fetch(ctx context.Context, cc *grpc.ClientConn) (*SVID, error) {
	tokData, err := os.ReadFile(c.opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("reading the bootstrap token: %w", err)
	}
	token := strings.TrimSpace(string(tokData))
	if token == "" {
		return nil, fmt.Errorf("bootstrap token file %s is empty", c.opts.TokenFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{c.opts.ID.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CSR: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := caapi.CreateCertificate(rctx, cc, token, &caapi.Request{
		CSR:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
		Validity: c.opts.Validity,
	})
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded {
			return nil, fmt.Errorf("the CA refused: %s: %s", s.Code(), s.Message())
		}
		return nil, fmt.Errorf("calling the CA at %s: %w", c.opts.Addr, err)
	}
	return c.check(resp, key)
}

// check verifies an answer: the chain parses, the leaf holds our key and
// exactly our SPIFFE ID, and it verifies against the bundle sent.
func (c *Client) check(resp *caapi.Response, key *ecdsa.PrivateKey) (*SVID, error) {
	chain, err := caapi.ParseCertificates(resp.CertChain)
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate chain: %w", err)
	}
	roots, err := caapi.ParseCertificates(resp.TrustBundle)
	if err != nil {
		return nil, fmt.Errorf("the CA's trust bundle: %w", err)
	}
	leaf := chain[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("the CA returned a certificate for another key")
	}
	id, err := spiffeid.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	if id != c.opts.ID {
		return nil, fmt.Errorf("the CA returned a certificate for %s, not %s", id, c.opts.ID)
	}
	bundle := x509.NewCertPool()
	for _, r := range roots {
		bundle.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bundle, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the CA's certificate does not verify against its trust bundle: %w", err)
	}
	raw := make([][]byte, len(chain))
	for i, ch := range chain {
		raw[i] = ch.Raw
	}
	return &SVID{
		ID:          id,
		Certificate: &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		Leaf:        leaf,
		Chain:       chain,
		Bundle:      bundle,
		BundleCerts: roots,
		RenewAt:     RenewAt(leaf.NotBefore, leaf.NotAfter, mrand.Float64()),
	}, nil
}

// RenewAt is the point between 50 and 80 % of the lifetime from notBefore
// to notAfter that u (in [0, 1)) picks.
func RenewAt(notBefore, notAfter time.Time, u float64) time.Time {
	life := notAfter.Sub(notBefore)
	return notBefore.Add(time.Duration(float64(life) * (0.5 + 0.3*u)))
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func serial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// CertInfo describes one certificate on the admin API's /certs.
type CertInfo struct {
	SPIFFEID  string    `json:"spiffe_id,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`
}

// Info is what the admin API's /certs shows: the leaf in force, its chain
// and the trust bundle; never the key.
type Info struct {
	CertInfo
	// Source is where the certificate comes from: "ca" or "spiffe".
	Source string `json:"source"`
	// SourceAddr is the CA's address or the Workload API's socket.
	SourceAddr string `json:"source_addr"`
	// RenewAt is when the next certificate will be asked for; absent
	// with the SPIFFE Workload API, whose agent pushes new ones.
	RenewAt time.Time `json:"renew_at,omitzero"`
	// Chain are the intermediates sent after the leaf.
	Chain []CertInfo `json:"chain"`
	// TrustBundle are the roots peers are verified against.
	TrustBundle []CertInfo `json:"trust_bundle"`
}

// Info describes the certificate in force, or returns false before the
// first.
func (c *Client) Info() (Info, bool) {
	s := c.current.Load()
	if s == nil {
		return Info{}, false
	}
	describe := func(x *x509.Certificate) CertInfo {
		return CertInfo{Subject: x.Subject.String(), Serial: serial(x), NotBefore: x.NotBefore.UTC(), NotAfter: x.NotAfter.UTC(), Issuer: x.Issuer.String()}
	}
	in := Info{CertInfo: describe(s.Leaf), Source: c.opts.Source, SourceAddr: c.opts.Addr, Chain: []CertInfo{}, TrustBundle: []CertInfo{}}
	if c.opts.Source == SourceSPIFFE {
		in.SourceAddr = c.opts.SPIFFESocket
	}
	if !s.RenewAt.IsZero() {
		in.RenewAt = s.RenewAt.UTC()
	}
	in.SPIFFEID = s.ID.String()
	for _, x := range s.Chain[1:] {
		in.Chain = append(in.Chain, describe(x))
	}
	for _, x := range s.BundleCerts {
		in.TrustBundle = append(in.TrustBundle, describe(x))
	}
	return in, true
}
