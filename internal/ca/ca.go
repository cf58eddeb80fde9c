// Package ca is Weft's built-in certificate authority. It signs short-lived
// X.509 SVIDs (one URI SAN, spiffe://<trust-domain>/ns/<ns>/sa/<sa>) from
// CSRs whose keys stay with the workload, and serves the certificate API
// (package caapi) over TLS on the control plane's 15012 port.
//
// The signing certificate is either a self-signed root created on first
// start and kept in a folder (root-cert.pem, root-key.pem with mode 0600),
// or a plug-in CA loaded from files in Istio's cacerts layout (ca-cert.pem,
// ca-key.pem, root-cert.pem, cert-chain.pem).
//
// The CA is part of the control plane: the sidecar never links it; it
// talks to it through caapi and checks IDs with spiffeid.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/spiffeid"
)

// File names of the self-signed root folder and of the plug-in layout.
const (
	RootCertFile  = "root-cert.pem"
	RootKeyFile   = "root-key.pem"
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
	// TrustBundleFile (self-signed mode) holds every root of the trust
	// bundle: the root, and during a rotation the staged one too.
	TrustBundleFile = "trust-bundle.pem"
)

// Defaults.
const (
	DefaultLeafTTL = 24 * time.Hour
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
	// ExpiryWarning is how long before a root or intermediate expires the
	// CA starts warning.
	ExpiryWarning = 30 * 24 * time.Hour
)

// Options configure the CA; they are read once.
type Options struct {
	// Dir keeps the self-signed root (created on first start). Used when
	// PluginDir is empty.
	Dir string
	// PluginDir, when set, holds a plug-in CA in Istio's cacerts layout:
	// ca-cert.pem (the signing certificate), ca-key.pem, root-cert.pem (the
	// roots, the trust bundle) and cert-chain.pem (ca-cert and the
	// intermediates above it; optional).
	PluginDir string
	// TrustDomain of the SPIFFE IDs issued; default cluster.local.
	TrustDomain string
	// LeafTTL is the lifetime of workload certificates and the most a
	// caller may ask for; default 24 h. Minutes are sensible in
	// production; tests use seconds.
	LeafTTL time.Duration
	// RootTTL is the lifetime of a self-signed root created on first
	// start; default 10 years.
	RootTTL time.Duration
	// Logger receives the CA's logs; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the CA's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Authority signs workload certificates. Its methods are safe for
// concurrent use.
type Authority struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mode string // "self-signed" or "plug-in"

	// rmu guards what a root rotation changes: the signer, the roots and
	// the bundle, and the rotation state.
	rmu           sync.RWMutex
	signer        crypto.Signer
	signCert      *x509.Certificate
	intermediates []*x509.Certificate // signCert and those above it, roots excluded
	roots         []*x509.Certificate
	rootPool      *x509.CertPool
	bundlePEM     []byte
	chainPEM      []byte // intermediates as PEM, appended after each leaf
	bundleFile    string
	rot           rotation

	mu      sync.Mutex
	leaves  map[string]Leaf // by serial; expired ones pruned
	reports map[string]report

	serverMu   sync.Mutex
	serverCert *serverCert

	// failpoint, when set (tests), runs before every change to the CA
	// folder, named "write <file>" or "remove <file>"; an error stops the
	// change there, as a crash would.
	failpoint func(op string) error
}

// New loads or creates the CA's signing certificate.
func New(opts Options) (*Authority, error) {
	if opts.TrustDomain == "" {
		opts.TrustDomain = spiffeid.DefaultTrustDomain
	}
	if err := spiffeid.ValidateTrustDomain(opts.TrustDomain); err != nil {
		return nil, fmt.Errorf("CA trust domain: %w", err)
	}
	if opts.LeafTTL == 0 {
		opts.LeafTTL = DefaultLeafTTL
	}
	if opts.LeafTTL < time.Second {
		return nil, fmt.Errorf("CA leaf lifetime %s: want at least 1s (minutes or more outside tests)", opts.LeafTTL)
	}
	if opts.RootTTL == 0 {
		opts.RootTTL = DefaultRootTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Authority{opts: opts, log: opts.Logger.With("component", "ca"), leaves: map[string]Leaf{}, reports: map[string]report{}, metrics: newMetrics(opts.Registerer)}
	var err error
	switch {
	case opts.PluginDir != "":
		err = a.loadPlugin(opts.PluginDir)
	case opts.Dir != "":
		err = a.loadOrCreateRoot(opts.Dir)
	default:
		err = errors.New("CA: no folder for the root and no plug-in CA folder")
	}
	if err != nil {
		return nil, err
	}
	if err := a.setRoots(a.roots); err != nil {
		return nil, err
	}
	for _, c := range a.intermediates {
		a.chainPEM = append(a.chainPEM, encodeCert(c)...)
	}
	a.log.Info("CA ready", "mode", a.mode, "trust_domain", opts.TrustDomain, "signer", a.signCert.Subject.String(),
		"signer_expires", a.signCert.NotAfter.UTC().Format(time.RFC3339), "leaf_lifetime", opts.LeafTTL, "bundle", a.bundleFile)
	a.CheckExpiry(time.Now())
	return a, nil
}

// TrustDomain is the trust domain of the IDs this CA issues.
func (a *Authority) TrustDomain() string { return a.opts.TrustDomain }

// LeafTTL is the lifetime of the leaves this CA issues.
func (a *Authority) LeafTTL() time.Duration { return a.opts.LeafTTL }

// TrustBundlePEM is the roots peers verify against, as PEM.
func (a *Authority) TrustBundlePEM() []byte {
	a.rmu.RLock()
	defer a.rmu.RUnlock()
	return bytes.Clone(a.bundlePEM)
}

// TrustBundleFile is a file holding TrustBundlePEM, for clients of the
// certificate API to verify the CA's TLS certificate with.
func (a *Authority) TrustBundleFile() string { return a.bundleFile }

// Roots is the trust bundle as a pool.
func (a *Authority) Roots() *x509.CertPool {
	a.rmu.RLock()
	defer a.rmu.RUnlock()
	return a.rootPool.Clone()
}

// setRoots makes roots the trust bundle (callers hold rmu or own a): the
// pool, the PEM, the metrics, and in self-signed mode the bundle file.
func (a *Authority) setRoots(roots []*x509.Certificate) error {
	a.roots = roots
	a.rootPool = x509.NewCertPool()
	a.bundlePEM = nil
	for _, r := range roots {
		a.rootPool.AddCert(r)
		a.bundlePEM = append(a.bundlePEM, encodeCert(r)...)
	}
	a.metrics.setExpiry(a.roots, a.intermediates)
	if a.mode == "self-signed" {
		if err := a.writeFile(a.bundleFile, a.bundlePEM, 0o644); err != nil {
			return fmt.Errorf("writing the trust bundle: %w", err)
		}
	}
	return nil
}

// loadOrCreateRoot reads the self-signed root from dir, or creates it.
func (a *Authority) loadOrCreateRoot(dir string) error {
	a.mode = "self-signed"
	certPath, keyPath := filepath.Join(dir, RootCertFile), filepath.Join(dir, RootKeyFile)
	a.bundleFile = filepath.Join(dir, TrustBundleFile)
	if _, err := os.Stat(dir); err == nil {
		if err := a.recoverRotation(dir); err != nil {
			return err
		}
	}
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
			a.log.Warn("CA root key is readable by others: run chmod 600 on it", "file", keyPath, "mode", fi.Mode().Perm().String())
		}
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return err
		}
		if err := checkSigningCert(cert, certPath); err != nil {
			return err
		}
		a.signCert, a.signer, a.roots = cert, key, []*x509.Certificate{cert}
		return a.loadRotation(dir)
	case certErr == nil || keyErr == nil:
		return fmt.Errorf("CA folder %s holds only one of %s and %s: restore the other, or remove both to create a new root (every workload then needs new certificates)", dir, RootCertFile, RootKeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating CA folder: %w", err)
	}
	cert, key, err := a.newRoot()
	if err != nil {
		return err
	}
	if err := a.writeRootFiles(certPath, keyPath, cert, key); err != nil {
		return err
	}
	a.log.Info("created a self-signed root CA", "dir", dir, "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	a.signCert, a.signer, a.roots = cert, key, []*x509.Certificate{cert}
	return nil
}

// newRoot makes a self-signed root certificate and its key.
func (a *Authority) newRoot() (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"Weft"}, CommonName: "Weft root CA " + a.opts.TrustDomain},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(a.opts.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// writeRootFiles writes a root's key (0600) then its certificate.
func (a *Authority) writeRootFiles(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a crash in between leaves a key alone, which the
	// next start reports rather than overwrites (the root), or removes
	// (a staged root never committed; rotate.go).
	if err := a.writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("writing the root key: %w", err)
	}
	if err := a.writeFile(certPath, encodeCert(cert), 0o644); err != nil {
		return fmt.Errorf("writing the root certificate: %w", err)
	}
	return nil
}

// writeFile is writeFile after the failpoint.
func (a *Authority) writeFile(path string, data []byte, perm os.FileMode) error {
	if a.failpoint != nil {
		if err := a.failpoint("write " + filepath.Base(path)); err != nil {
			return err
		}
	}
	return writeFile(path, data, perm)
}

// removeFile removes path, if it is there, and makes that durable.
func (a *Authority) removeFile(path string) error {
	if a.failpoint != nil {
		if err := a.failpoint("remove " + filepath.Base(path)); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// loadPlugin reads a plug-in CA in Istio's cacerts layout.
func (a *Authority) loadPlugin(dir string) error {
	a.mode = "plug-in"
	a.bundleFile = filepath.Join(dir, RootCertFile)
	cert, key, err := loadPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return err
	}
	if err := checkSigningCert(cert, filepath.Join(dir, CACertFile)); err != nil {
		return err
	}
	roots, err := readCerts(a.bundleFile)
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	chainPath := filepath.Join(dir, CertChainFile)
	if _, err := os.Stat(chainPath); err == nil {
		if chain, err = readCerts(chainPath); err != nil {
			return err
		}
	} else {
		chain = []*x509.Certificate{cert}
	}
	// The chain sent after each leaf: ca-cert first, then the
	// intermediates above it, never a self-signed root.
	inter := []*x509.Certificate{cert}
	for _, c := range chain {
		if c.Equal(cert) || isSelfSigned(c) {
			continue
		}
		inter = append(inter, c)
	}
	if isSelfSigned(cert) {
		inter = nil // ca-cert is itself a root
	}
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	interPool := x509.NewCertPool()
	for _, c := range inter {
		interPool.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: interPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("plug-in CA %s: %s does not chain to %s through %s: %w", dir, CACertFile, RootCertFile, CertChainFile, err)
	}
	a.signCert, a.signer, a.roots, a.intermediates = cert, key, roots, inter
	return nil
}

// checkSigningCert checks that cert may sign certificates.
func checkSigningCert(cert *x509.Certificate, path string) error {
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return fmt.Errorf("%s: not a CA certificate (basic constraints CA:TRUE missing)", path)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s: key usage does not allow signing certificates (keyCertSign)", path)
	}
	if time.Now().After(cert.NotAfter) {
		return fmt.Errorf("%s: expired on %s: replace it", path, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckExpiry logs a warning for every root or intermediate that expires
// within ExpiryWarning of now, and says what to do.
func (a *Authority) CheckExpiry(now time.Time) {
	check := func(role string, c *x509.Certificate) {
		left := c.NotAfter.Sub(now)
		if left > ExpiryWarning {
			return
		}
		what := "replace the plug-in CA files (" + CACertFile + ", " + CAKeyFile + ", " + CertChainFile + ", " + RootCertFile + ") with a renewed CA and restart the control plane"
		if a.mode == "self-signed" {
			what = "create a new root: stop the mesh, move " + RootCertFile + " and " + RootKeyFile + " out of " + a.opts.Dir + " and start it again (every workload gets new certificates), or plug in a CA with --cacerts"
		}
		a.log.Warn("CA "+role+" certificate expires soon", "subject", c.Subject.String(), "serial", serialString(c.SerialNumber),
			"expires", c.NotAfter.UTC().Format(time.RFC3339), "left", left.Round(time.Minute).String(), "what_to_do", what)
	}
	a.rmu.RLock()
	roots := a.roots
	a.rmu.RUnlock()
	for _, r := range roots {
		check("root", r)
	}
	for _, c := range a.intermediates {
		check("intermediate", c)
	}
}

// Leaf is a workload certificate the CA issued.
type Leaf struct {
	// Instance is the workload instance that asked, <name>.<namespace>.
	Instance string `json:"instance"`
	// SPIFFEID is the certificate's identity.
	SPIFFEID string `json:"spiffeId"`
	// Serial is the serial number in hex.
	Serial string `json:"serial"`
	// NotBefore and NotAfter bound its validity.
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Issuer is the serial (hex) of the certificate that signed it.
	Issuer string `json:"issuer"`
}

// CertInfo describes a root or intermediate certificate.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}

// Status is what `weft ca status` shows (GET /api/v1/ca).
type Status struct {
	// Mode is "self-signed" or "plug-in".
	Mode string `json:"mode"`
	// TrustDomain of the issued IDs.
	TrustDomain string `json:"trustDomain"`
	// LeafLifetime is the lifetime of issued leaves, e.g. "24h0m0s".
	LeafLifetime string `json:"leafLifetime"`
	// TrustBundleFile is where the roots are read from.
	TrustBundleFile string `json:"trustBundleFile"`
	// Roots are the trust bundle.
	Roots []CertInfo `json:"roots"`
	// Intermediates are the certificates between the roots and the leaves.
	Intermediates []CertInfo `json:"intermediates"`
	// Leaves are the workload certificates issued that have not expired,
	// by instance then expiry.
	Leaves []Leaf `json:"leaves"`
	// Rotation is the root rotation's stage and, when the caller knows
	// the instances (the control plane's admin API), who is ready for
	// the next step.
	Rotation RotationStatus `json:"rotation"`
}

// Status reports the CA's certificates and the leaves it issued.
func (a *Authority) Status() Status {
	return a.StatusFor(nil)
}

// StatusFor is Status with the readiness of the instances named (those
// holding bootstrap tokens) for the rotation's next step.
func (a *Authority) StatusFor(instances []string) Status {
	st := Status{Mode: a.mode, TrustDomain: a.opts.TrustDomain, LeafLifetime: a.opts.LeafTTL.String(), TrustBundleFile: a.bundleFile,
		Roots: []CertInfo{}, Intermediates: []CertInfo{}, Leaves: []Leaf{}}
	st.Rotation = a.rotationStatus(instances)
	a.rmu.RLock()
	for _, r := range a.roots {
		st.Roots = append(st.Roots, certInfo(r))
	}
	a.rmu.RUnlock()
	for _, c := range a.intermediates {
		st.Intermediates = append(st.Intermediates, certInfo(c))
	}
	now := time.Now()
	a.mu.Lock()
	for k, l := range a.leaves {
		if now.After(l.NotAfter) {
			delete(a.leaves, k)
			continue
		}
		st.Leaves = append(st.Leaves, l)
	}
	a.mu.Unlock()
	sort.Slice(st.Leaves, func(i, j int) bool {
		x, y := st.Leaves[i], st.Leaves[j]
		if x.Instance != y.Instance {
			return x.Instance < y.Instance
		}
		if !x.NotAfter.Equal(y.NotAfter) {
			return x.NotAfter.Before(y.NotAfter)
		}
		return x.Serial < y.Serial
	})
	return st
}

func certInfo(c *x509.Certificate) CertInfo {
	return CertInfo{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: serialString(c.SerialNumber), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}

// maxLeaves bounds the issued-leaf record; the oldest expiring are
// dropped first when it is full.
const maxLeaves = 10000

func (a *Authority) record(l Leaf) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.leaves) >= maxLeaves {
		now := time.Now()
		var oldest string
		for k, v := range a.leaves {
			if now.After(v.NotAfter) {
				delete(a.leaves, k)
				continue
			}
			if oldest == "" || v.NotAfter.Before(a.leaves[oldest].NotAfter) {
				oldest = k
			}
		}
		if len(a.leaves) >= maxLeaves {
			delete(a.leaves, oldest)
		}
	}
	a.leaves[l.Serial] = l
}

// newSerial is a random positive 128-bit serial number.
func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return n.Add(n, big.NewInt(1))
}

func serialString(n *big.Int) string { return fmt.Sprintf("%x", n) }

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	out, err := caapi.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// loadPair reads a certificate (the first of its file) and its key, and
// checks that they belong together.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key: %w", err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return certs[0], key, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		}
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// writeFile writes data atomically and durably with perm: a temporary
// file, synced, renamed over path, then the folder synced, so a crash
// leaves the old content or the new, never a mix or nothing.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the entries of a folder (renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
