// Package spiffeid parses and builds the SPIFFE IDs of Weft workloads:
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// It is used by the control plane's CA and by the sidecar, so it imports
// nothing but the standard library. Parsing is strict: an ID is accepted
// only in its canonical form (lowercase scheme and trust domain, no port,
// user info, query, fragment, percent-encoding, empty or dot segments), so
// ID.String of a parsed ID gives back the input byte for byte.
package spiffeid

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "cluster.local"

// MaxLength is the longest SPIFFE ID accepted, in bytes (the SPIFFE
// specification's limit for URIs in X.509 SVIDs).
const MaxLength = 2048

const scheme = "spiffe://"

// ID is a workload identity. The zero ID is not valid.
type ID struct {
	// TrustDomain is the identity's trust domain, e.g. cluster.local.
	TrustDomain string
	// Namespace is the workload's namespace.
	Namespace string
	// ServiceAccount is the workload's service account.
	ServiceAccount string
}

// New builds and checks a workload ID.
func New(trustDomain, namespace, serviceAccount string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Validate checks every part of the ID.
func (id ID) Validate() error {
	if err := ValidateTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validateSegment("namespace", id.Namespace); err != nil {
		return err
	}
	if err := validateSegment("service account", id.ServiceAccount); err != nil {
		return err
	}
	if n := len(id.String()); n > MaxLength {
		return fmt.Errorf("spiffe id is %d bytes long: at most %d are allowed", n, MaxLength)
	}
	return nil
}

// String is the ID's URI, spiffe://<td>/ns/<ns>/sa/<sa>.
func (id ID) String() string {
	return scheme + id.Principal()
}

// Principal is the ID without its scheme, <td>/ns/<ns>/sa/<sa>: the form
// Istio's AuthorizationPolicy uses in `principals`.
func (id ID) Principal() string {
	return id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the ID as a URL, for x509.Certificate.URIs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Parse reads a workload SPIFFE ID in canonical form.
func Parse(s string) (ID, error) {
	if len(s) > MaxLength {
		return ID{}, fmt.Errorf("spiffe id is %d bytes long: at most %d are allowed", len(s), MaxLength)
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return ID{}, fmt.Errorf("spiffe id %q: must start with %q", s, scheme)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("spiffe id %q: no path: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	if err := ValidateTrustDomain(td); err != nil {
		return ID{}, fmt.Errorf("spiffe id %q: %w", s, err)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("spiffe id %q: path must be /ns/<namespace>/sa/<service-account>", s)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := validateSegment("namespace", id.Namespace); err != nil {
		return ID{}, fmt.Errorf("spiffe id %q: %w", s, err)
	}
	if err := validateSegment("service account", id.ServiceAccount); err != nil {
		return ID{}, fmt.Errorf("spiffe id %q: %w", s, err)
	}
	return id, nil
}

// FromURIs returns the ID of a certificate's URI SANs: there must be
// exactly one, and it must be a workload SPIFFE ID.
func FromURIs(uris []*url.URL) (ID, error) {
	switch len(uris) {
	case 0:
		return ID{}, errors.New("no URI SAN: an SVID has exactly one, its SPIFFE ID")
	case 1:
	default:
		return ID{}, fmt.Errorf("%d URI SANs: an SVID has exactly one, its SPIFFE ID", len(uris))
	}
	return Parse(uris[0].String())
}

// FromCertificate returns the SPIFFE ID of an X.509 SVID. It checks the
// URI SAN only; verifying the chain is the caller's job.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	return FromURIs(cert.URIs)
}

// ValidateTrustDomain checks a trust domain name: 1 to 255 bytes of
// lowercase letters, digits, '.', '-' and '_'.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("empty trust domain")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain is %d bytes long: at most 255 are allowed", len(td))
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q is not allowed (use lowercase letters, digits, '.', '-' and '_')", td, c)
		}
	}
	return nil
}

// validateSegment checks one path segment: letters, digits, '.', '-' and
// '_', not empty, not "." or "..".
func validateSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%s %q: dot segments are not allowed", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q: character %q is not allowed (use letters, digits, '.', '-' and '_')", what, s, c)
		}
	}
	return nil
}
