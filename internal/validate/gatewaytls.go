package validate

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// checkGatewayServers checks each server's protocol and TLS settings, and
// that no port is both HTTP and HTTPS and no host is served twice on an
// HTTPS port. Relative certificate paths are made absolute against the
// directory of file (the Gateway's), in the servers given (the snapshot's
// copy).
func checkGatewayServers(rep *reporter, file string, servers []*networking.Server) {
	portProto := map[uint32]string{}
	sniAt := map[string]string{} // "port|host" -> the server that has it
	for i, s := range servers {
		f := fmt.Sprintf("spec.servers[%d]", i)
		protocol := strings.ToUpper(s.GetPort().GetProtocol())
		n := s.GetPort().GetNumber()
		switch protocol {
		case "HTTP":
			// On an HTTP server, tls may only ask for a redirect to https.
			if t := s.GetTls(); t != nil {
				only := &networking.ServerTLSSettings{HttpsRedirect: t.GetHttpsRedirect()}
				if !proto.Equal(t, only) {
					rep.errorf(f+".tls", "on an HTTP server tls only takes httpsRedirect; remove the other fields, or set port.protocol to HTTPS")
				}
			}
		case "HTTPS", "TLS":
			checkServerTLS(rep, f+".tls", file, protocol, s.GetTls())
			for _, h := range s.GetHosts() {
				if _, host, ok := strings.Cut(h, "/"); ok {
					h = host
				}
				k := fmt.Sprintf("%d|%s", n, strings.ToLower(h))
				if at, dup := sniAt[k]; dup {
					rep.errorf(f+".hosts", "host %q is already served on port %d by %s: a TLS server name picks one server; keep it on one", h, n, at)
					continue
				}
				sniAt[k] = f
			}
		default:
			rep.errorf(f+".port.protocol", "protocol %q is not supported on a gateway yet; use HTTP, HTTPS to terminate TLS, or TLS to pass it through", s.GetPort().GetProtocol())
			continue
		}
		if n == 0 {
			continue
		}
		if protocol == "TLS" {
			protocol = "HTTPS" // both are TLS on the wire: servers picked by server name
		}
		if p, seen := portProto[n]; seen && p != protocol {
			rep.errorf(f+".port", "port %d is %s on another server of this Gateway and %s here; a port serves one protocol", n, p, protocol)
			continue
		}
		portProto[n] = protocol
	}
}

// checkServerTLS checks the tls of an HTTPS or TLS server (protocol):
// PASSTHROUGH, or on HTTPS SIMPLE or MUTUAL with a certificate and key
// (and for MUTUAL a CA) that load and have not expired.
func checkServerTLS(rep *reporter, f, file, protocol string, t *networking.ServerTLSSettings) {
	if t == nil {
		rep.errorf(f, "an %s server needs tls: mode SIMPLE (or MUTUAL) with serverCertificate and privateKey to terminate TLS, or mode PASSTHROUGH to pass it through", protocol)
		return
	}
	switch t.GetMode() {
	case networking.ServerTLSSettings_PASSTHROUGH:
		if t.GetServerCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" || t.GetCredentialName() != "" {
			rep.warnf(f, "certificates are not used in mode PASSTHROUGH (the connection's TLS goes through to the destination); remove them, or set mode SIMPLE to terminate TLS")
		}
		return
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL:
		if protocol == "TLS" {
			rep.errorf(f+".mode", "terminating TLS on a TLS server (then forwarding TCP) is not supported by Weft yet; use protocol HTTPS for HTTP, or mode PASSTHROUGH")
			return
		}
	default:
		rep.errorf(f+".mode", "mode %s is not supported by Weft yet; use SIMPLE or MUTUAL to terminate TLS, or PASSTHROUGH", t.GetMode())
		return
	}
	unsupported := []struct {
		set         bool
		field, hint string
	}{
		{t.GetCredentialName() != "" || len(t.GetCredentialNames()) > 0, "credentialName", "Weft reads certificates from files; set serverCertificate and privateKey"},
		{len(t.GetTlsCertificates()) > 0, "tlsCertificates", "set one serverCertificate and privateKey"},
		{len(t.GetSubjectAltNames()) > 0, "subjectAltNames", "remove it (client certificates are checked against caCertificates only)"},
		{len(t.GetVerifyCertificateSpki()) > 0, "verifyCertificateSpki", "remove it"},
		{len(t.GetVerifyCertificateHash()) > 0, "verifyCertificateHash", "remove it"},
		{len(t.GetCipherSuites()) > 0, "cipherSuites", "remove it (Go's TLS 1.2 and 1.3 suites are used)"},
		{t.GetCaCrl() != "", "caCrl", "remove it"},
		{t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO && t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLSV1_2, "minProtocolVersion", "remove it (the minimum is TLS 1.2)"},
		{t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO && t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLSV1_3, "maxProtocolVersion", "remove it (the maximum is TLS 1.3)"},
	}
	for _, u := range unsupported {
		if u.set {
			rep.errorf(f+"."+u.field, "%s is not supported by Weft yet; %s", u.field, u.hint)
		}
	}
	if unsupported[0].set {
		return // the files are what it asks for
	}
	if t.GetHttpsRedirect() {
		rep.errorf(f+".httpsRedirect", "httpsRedirect applies to HTTP servers (a redirect to https); remove it here")
	}
	cert, key := resolvePath(file, t.GetServerCertificate()), resolvePath(file, t.GetPrivateKey())
	switch {
	case cert == "" || key == "":
		if cert == "" {
			rep.errorf(f+".serverCertificate", "serverCertificate is required: the path of the server's PEM certificate chain")
		}
		if key == "" {
			rep.errorf(f+".privateKey", "privateKey is required: the path of the server's PEM private key")
		}
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			rep.errorf(f+".serverCertificate", "cannot load the certificate %s with the key %s: %v", cert, key, err)
			break
		}
		if leaf := pair.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
			rep.errorf(f+".serverCertificate", "the certificate in %s expired on %s; renew it", cert, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		t.ServerCertificate, t.PrivateKey = cert, key
	}
	ca := resolvePath(file, t.GetCaCertificates())
	switch {
	case t.GetMode() == networking.ServerTLSSettings_MUTUAL && ca == "":
		rep.errorf(f+".caCertificates", "MUTUAL needs caCertificates: the path of the PEM CA certificates that client certificates must chain to")
	case ca == "":
	case t.GetMode() != networking.ServerTLSSettings_MUTUAL:
		rep.warnf(f+".caCertificates", "caCertificates is not used in SIMPLE mode (clients are not asked for certificates); set mode MUTUAL or remove it")
	default:
		if err := checkCAFile(ca); err != nil {
			rep.errorf(f+".caCertificates", "%v", err)
			break
		}
		t.CaCertificates = ca
	}
}

// resolvePath makes a relative path absolute against the directory of
// file (the resource's); "" stays "".
func resolvePath(file, p string) string {
	if p == "" || filepath.IsAbs(p) || file == "" {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

// checkCAFile reads PEM CA certificates.
func checkCAFile(name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("cannot read the CA certificates: %v", err)
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("%s: a certificate does not parse: %v", name, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s holds no PEM certificate", name)
	}
	return nil
}
