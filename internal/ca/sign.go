package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"

	"weft.dev/weft/internal/spiffeid"
)

// Reasons a CSR is rejected: the values of the `reason` label of
// weft_ca_csr_rejections_total.
const (
	ReasonNoToken        = "no_token"        // no bearer token sent
	ReasonBadToken       = "bad_token"       // the token is not known (or revoked)
	ReasonMalformed      = "malformed"       // not a PEM CERTIFICATE REQUEST, or not parseable
	ReasonBadSignature   = "bad_signature"   // the CSR's self-signature does not verify
	ReasonUnsupportedKey = "unsupported_key" // not ECDSA P-256/P-384, RSA >= 2048 or Ed25519
	ReasonOtherSANs      = "other_sans"      // DNS, IP or email SANs, or more than one URI
	ReasonNoIdentity     = "no_identity"     // no URI SAN
	ReasonBadIdentity    = "bad_identity"    // the URI SAN is not a workload SPIFFE ID
	ReasonWrongIdentity  = "wrong_identity"  // the SPIFFE ID is not the caller's
	ReasonBadValidity    = "bad_validity"    // a negative lifetime was asked for
)

// RejectError is why a CSR was refused.
type RejectError struct {
	// Reason is one of the Reason constants.
	Reason string
	// Msg says what was wrong, for the caller.
	Msg string
}

func (e *RejectError) Error() string { return "certificate request rejected: " + e.Msg }

func reject(reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Caller is an authenticated workload instance.
type Caller struct {
	// ID is the only identity the caller may get a certificate for.
	ID spiffeid.ID
	// Instance names the caller, <name>.<namespace>, for the record.
	Instance string
}

// Issued is a signed certificate.
type Issued struct {
	// Leaf is the parsed leaf.
	Leaf *x509.Certificate
	// ChainPEM is the leaf then the intermediates.
	ChainPEM []byte
	// TrustBundlePEM is the roots.
	TrustBundlePEM []byte
}

// Sign checks a PEM CSR against the caller's identity and signs it for
// validity (0: the leaf lifetime; more than the leaf lifetime is cut to
// it). The CSR must carry exactly one SAN, a URI equal to caller.ID; its
// subject and requested extensions are ignored: the CA sets key usage
// (digital signature, key encipherment), extended key usage (server and
// client auth) and CA:FALSE itself. A refusal is a *RejectError, counted
// in weft_ca_csr_rejections_total by reason.
func (a *Authority) Sign(caller Caller, csrPEM []byte, validity time.Duration) (*Issued, error) {
	iss, err := a.sign(caller, csrPEM, validity)
	if err != nil {
		if re, ok := err.(*RejectError); ok {
			a.Rejected(re.Reason)
			a.log.Warn("certificate request rejected", "instance", caller.Instance, "identity", caller.ID.String(), "reason", re.Reason, "why", re.Msg)
		}
		return nil, err
	}
	a.metrics.issued.Inc()
	a.log.Debug("certificate issued", "instance", caller.Instance, "identity", caller.ID.String(), "serial", serialString(iss.Leaf.SerialNumber), "expires", iss.Leaf.NotAfter)
	return iss, nil
}

// Rejected counts a rejection for a reason found outside Sign (the
// caller's credential).
func (a *Authority) Rejected(reason string) { a.metrics.rejected.WithLabelValues(reason).Inc() }

func (a *Authority) sign(caller Caller, csrPEM []byte, validity time.Duration) (*Issued, error) {
	if validity < 0 {
		return nil, reject(ReasonBadValidity, "validity %s: want a positive lifetime, or 0 for the CA's default", validity)
	}
	if validity == 0 || validity > a.opts.LeafTTL {
		validity = a.opts.LeafTTL
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, reject(ReasonMalformed, "no PEM block found: send one PEM CERTIFICATE REQUEST")
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, reject(ReasonMalformed, "PEM block is %q: want CERTIFICATE REQUEST", block.Type)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, reject(ReasonMalformed, "more than one PEM block: send one CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, reject(ReasonMalformed, "parsing the CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reject(ReasonBadSignature, "the CSR's signature does not verify with its public key: %v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, reject(ReasonUnsupportedKey, "ECDSA curve %s: want P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, reject(ReasonUnsupportedKey, "RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return nil, reject(ReasonUnsupportedKey, "key type %T: want ECDSA P-256 (or P-384, RSA >= 2048, Ed25519)", csr.PublicKey)
	}
	if n := len(csr.DNSNames); n > 0 {
		return nil, reject(ReasonOtherSANs, "the CSR has DNS SANs %q: an SVID carries only its SPIFFE ID", csr.DNSNames)
	}
	if n := len(csr.IPAddresses); n > 0 {
		return nil, reject(ReasonOtherSANs, "the CSR has IP SANs %v: an SVID carries only its SPIFFE ID", csr.IPAddresses)
	}
	if n := len(csr.EmailAddresses); n > 0 {
		return nil, reject(ReasonOtherSANs, "the CSR has email SANs %q: an SVID carries only its SPIFFE ID", csr.EmailAddresses)
	}
	switch len(csr.URIs) {
	case 0:
		return nil, reject(ReasonNoIdentity, "the CSR has no URI SAN: put the SPIFFE ID %s in it", caller.ID)
	case 1:
	default:
		return nil, reject(ReasonOtherSANs, "the CSR has %d URI SANs: an SVID carries exactly one, its SPIFFE ID", len(csr.URIs))
	}
	id, err := spiffeid.Parse(csr.URIs[0].String())
	if err != nil {
		return nil, reject(ReasonBadIdentity, "the CSR's URI SAN: %v", err)
	}
	if id != caller.ID {
		return nil, reject(ReasonWrongIdentity, "the CSR asks for %s, but the caller %s is %s", id, caller.Instance, caller.ID)
	}

	a.rmu.RLock()
	signCert, signer, roots, bundle := a.signCert, a.signer, a.roots, a.bundlePEM
	a.rmu.RUnlock()
	now := time.Now()
	// A little backdating absorbs clock skew between hosts, without
	// stretching a short lifetime much.
	skew := min(time.Minute, validity/10)
	notAfter := now.Add(validity)
	if notAfter.After(signCert.NotAfter) {
		notAfter = signCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		NotBefore:             now.Add(-skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signCert, csr.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("reading back the certificate of %s: %w", id, err)
	}
	a.record(Leaf{Instance: caller.Instance, SPIFFEID: id.String(), Serial: serialString(leaf.SerialNumber), NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), Issuer: serialString(signCert.SerialNumber)})
	a.reportIssued(caller.Instance, leaf, signCert, roots)
	chain := append(encodeCert(leaf), a.chainPEM...)
	return &Issued{Leaf: leaf, ChainPEM: chain, TrustBundlePEM: bytes.Clone(bundle)}, nil
}
