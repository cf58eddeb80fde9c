package validate

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/tlsnames"
)

// checkGatewayServers checks each server's protocol and TLS settings, and
// that no port is both HTTP and HTTPS and no host is served twice on an
// HTTPS or TLS port. It returns the indexes of the servers whose
// certificate files do not load or have expired: those are left out of
// the Gateway in force, each with an error, and its other servers serve
// (the files change without an edit of the Gateway, so no last good
// version of it could keep the Gateway in force).
func checkGatewayServers(rep *reporter, servers []*networking.Server) (leftOut []int) {
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
			if !checkServerTLS(rep, f+".tls", protocol, s.GetTls()) {
				leftOut = append(leftOut, i)
			}
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
	return leftOut
}

// putGateway puts a checked Gateway in force without the servers left out.
// Later Gateways' conflict checks see the servers in force.
func (b *build) putGateway(r *config.Resource, gw *networking.Gateway, leftOut []int) {
	spec := withoutServers(gw, leftOut)
	held := r
	if len(leftOut) > 0 {
		c := *r
		c.Spec = spec
		held = &c
	}
	b.gateways[r.Namespace+"/"+r.Name] = held
	b.snap.Gateways = append(b.snap.Gateways, &model.Gateway{Meta: r.Meta, Spec: spec})
}

// withoutServers returns a copy of gw without the servers at the indexes
// in leftOut.
func withoutServers(gw *networking.Gateway, leftOut []int) *networking.Gateway {
	out := proto.Clone(gw).(*networking.Gateway)
	if len(leftOut) == 0 {
		return out
	}
	out.Servers = nil
	for i, s := range gw.GetServers() {
		if !slices.Contains(leftOut, i) {
			out.Servers = append(out.Servers, proto.Clone(s).(*networking.Server))
		}
	}
	return out
}

// checkServerTLS checks the tls of an HTTPS or TLS server (protocol):
// PASSTHROUGH, or on HTTPS SIMPLE or MUTUAL with a certificate and key
// (and for MUTUAL a CA) that load and have not expired. A file that does
// not load or has expired is reported with rep.leaveOutf, and it returns
// false: the server is left out, not the Gateway.
func checkServerTLS(rep *reporter, f, protocol string, t *networking.ServerTLSSettings) (filesOK bool) {
	filesOK = true
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
		{t.GetCaCrl() != "", "caCrl", "remove it"},
	}
	for _, u := range unsupported {
		if u.set {
			rep.errorf(f+"."+u.field, "%s is not supported by Weft yet; %s", u.field, u.hint)
		}
	}
	if unsupported[0].set {
		return // the files are what it asks for
	}
	old := func(v networking.ServerTLSSettings_TLSProtocol) bool {
		return v == networking.ServerTLSSettings_TLSV1_0 || v == networking.ServerTLSSettings_TLSV1_1
	}
	if old(t.GetMinProtocolVersion()) {
		rep.errorf(f+".minProtocolVersion", "%s is below what Weft serves; use TLSV1_2 (the default) or TLSV1_3", t.GetMinProtocolVersion())
	}
	if old(t.GetMaxProtocolVersion()) {
		rep.errorf(f+".maxProtocolVersion", "%s is below what Weft serves; use TLSV1_3 (the default) or TLSV1_2", t.GetMaxProtocolVersion())
	}
	if t.GetMinProtocolVersion() == networking.ServerTLSSettings_TLSV1_3 && t.GetMaxProtocolVersion() == networking.ServerTLSSettings_TLSV1_2 {
		rep.errorf(f+".maxProtocolVersion", "maxProtocolVersion TLSV1_2 is below minProtocolVersion TLSV1_3")
	}
	if _, err := tlsnames.CipherSuites(t.GetCipherSuites()); err != nil {
		rep.errorf(f+".cipherSuites", "%v", err)
	}
	if t.GetHttpsRedirect() {
		rep.errorf(f+".httpsRedirect", "httpsRedirect applies to HTTP servers (a redirect to https); remove it here")
	}
	cert, key := t.GetServerCertificate(), t.GetPrivateKey()
	switch {
	case cert == "" || key == "":
		if cert == "" {
			rep.errorf(f+".serverCertificate", "serverCertificate is required: the path of the server's PEM certificate chain")
		}
		if key == "" {
			rep.errorf(f+".privateKey", "privateKey is required: the path of the server's PEM private key")
		}
	case !absPath(rep, f+".serverCertificate", cert) || !absPath(rep, f+".privateKey", key):
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			rep.leaveOutf(f+".serverCertificate", "cannot load the certificate %s with the key %s: %v; %s", cert, key, err, serverLeftOut("fix the files"))
			filesOK = false
			break
		}
		if leaf := pair.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
			rep.leaveOutf(f+".serverCertificate", "the certificate in %s expired on %s; %s", cert, leaf.NotAfter.UTC().Format(time.RFC3339), serverLeftOut("renew it"))
			filesOK = false
		}
	}
	ca := t.GetCaCertificates()
	switch {
	case t.GetMode() == networking.ServerTLSSettings_MUTUAL && ca == "":
		rep.errorf(f+".caCertificates", "MUTUAL needs caCertificates: the path of the PEM CA certificates that client certificates must chain to")
	case ca == "":
	case t.GetMode() != networking.ServerTLSSettings_MUTUAL:
		rep.warnf(f+".caCertificates", "caCertificates is not used in SIMPLE mode (clients are not asked for certificates); set mode MUTUAL or remove it")
	case !absPath(rep, f+".caCertificates", ca):
	default:
		if err := checkCAFile(ca); err != nil {
			rep.leaveOutf(f+".caCertificates", "%v; %s", err, serverLeftOut("fix the file"))
			filesOK = false
		}
	}
	return filesOK
}

// serverLeftOut ends the message about a server's certificate file that
// does not load.
func serverLeftOut(fix string) string {
	return fix + ": until then this server is left out and the Gateway's other servers keep serving"
}

// absPath reports whether p is absolute, and says why not: the gateway
// proxy reads the file, from wherever it runs.
func absPath(rep *reporter, field, p string) bool {
	if filepath.IsAbs(p) {
		return true
	}
	rep.errorf(field, "%q is not an absolute path; the gateway proxy reads the file, so give its full path", p)
	return false
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

// checkGatewayConflicts warns of the servers of a Gateway (ns/name) that
// clash with those of other Gateways in force whose selectors can pick
// the same gateway proxy: a port HTTP in one and HTTPS or TLS in the
// other, or a host on HTTPS or TLS servers of the same port in both. The
// translator serves the Gateway that sorts first by namespace and name
// and leaves the other's clashing servers out (never serving a TLS
// server's hosts in plaintext); the warning says which. A warning, not an
// error: a newcomer must not take a running Gateway's other servers out
// of force, nor be refused whole for one server.
func checkGatewayConflicts(rep *reporter, ns, name string, gw *networking.Gateway, others []*config.Resource) {
	for _, o := range others {
		og := o.Spec.(*networking.Gateway)
		if !selectorsOverlap(gw.GetSelector(), og.GetSelector()) {
			continue
		}
		first := ns+"/"+name < o.Namespace+"/"+o.Name
		outcome := fmt.Sprintf("this server is left out while Gateway %s/%s keeps it (the first by namespace and name is served)", o.Namespace, o.Name)
		if first {
			outcome = fmt.Sprintf("Gateway %s/%s's server is left out (the first by namespace and name, this one, is served)", o.Namespace, o.Name)
		}
		for i, s := range gw.GetServers() {
			f := fmt.Sprintf("spec.servers[%d]", i)
			for _, os := range og.GetServers() {
				if os.GetPort().GetNumber() != s.GetPort().GetNumber() {
					continue
				}
				mine, theirs := tlsBased(s.GetPort().GetProtocol()), tlsBased(os.GetPort().GetProtocol())
				if mine != theirs {
					rep.warnf(f+".port", "port %d is %s here and %s in Gateway %s/%s, which selects the same gateway proxies, and a port serves one protocol: %s; move one to another port",
						s.GetPort().GetNumber(), s.GetPort().GetProtocol(), os.GetPort().GetProtocol(), o.Namespace, o.Name, outcome)
					break
				}
				if !mine {
					continue
				}
				for _, h := range s.GetHosts() {
					if slices.ContainsFunc(os.GetHosts(), func(oh string) bool { return strings.EqualFold(bareHost(oh), bareHost(h)) }) {
						rep.warnf(f+".hosts", "host %q is also served on port %d by Gateway %s/%s, which selects the same gateway proxies, and a TLS server name picks one server: %s; keep the host on one",
							h, s.GetPort().GetNumber(), o.Namespace, o.Name, outcome)
					}
				}
			}
		}
	}
}

// tlsBased says whether a Gateway server protocol is TLS on the wire.
func tlsBased(protocol string) bool {
	return strings.EqualFold(protocol, "HTTPS") || strings.EqualFold(protocol, "TLS")
}

// bareHost drops a "namespace/" prefix.
func bareHost(h string) string {
	if _, host, ok := strings.Cut(h, "/"); ok {
		return host
	}
	return h
}

// selectorsOverlap says whether two selectors pick the same gateway
// proxies, as far as labels tell: one selects every proxy, or they ask
// for a label with the same value and for none with two values.
func selectorsOverlap(a, b map[string]string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	shared := false
	for k, v := range a {
		if w, ok := b[k]; ok {
			if w != v {
				return false
			}
			shared = true
		}
	}
	return shared
}
