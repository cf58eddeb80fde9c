package validate

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/testcerts"
)

// TestGatewayTLSChecks: HTTPS servers are accepted with certificate files
// that load, and refused, each finding naming its field, for relative,
// missing or broken files, an expired certificate, MUTUAL without a CA,
// modes, versions, cipher suites and fields Weft does not support, a host
// served twice on one HTTPS port and a port that is both HTTP and HTTPS in
// one Gateway; the same clashes across Gateways that select the same
// proxies are warnings that name the server left out.
func TestGatewayTLSChecks(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir)
	cert, key := ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	old, oldKey := ca.Issue(t, dir, "old", testcerts.Leaf{DNSNames: []string{"old.example.com"}, NotAfter: time.Now().Add(-time.Hour)})
	gw := func(name, servers string) string {
		return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: %s, namespace: default}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n%s---\n", name, servers)
	}
	yaml := gw("good", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`, minProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: MUTUAL, serverCertificate: `+cert+`, privateKey: `+key+`, caCertificates: `+ca.File+`}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
`) + gw("files", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+filepath.Join(dir, "missing.pem")+`, privateKey: `+key+`}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+old+`, privateKey: `+oldKey+`}
  - port: {number: 443, name: https-3, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: MUTUAL, serverCertificate: `+cert+`, privateKey: `+key+`}
  - port: {number: 443, name: https-4, protocol: HTTPS}
    hosts: [d.example.com]
    tls: {mode: MUTUAL, serverCertificate: `+cert+`, privateKey: `+key+`, caCertificates: `+key+`}
  - port: {number: 443, name: https-5, protocol: HTTPS}
    hosts: [e.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`}
  - port: {number: 443, name: https-6, protocol: HTTPS}
    hosts: [f.example.com]
    tls: {mode: SIMPLE, serverCertificate: shop.pem, privateKey: shop-key.pem}
`) + gw("modes", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {serverCertificate: `+cert+`, privateKey: `+key+`}
  - port: {number: 443, name: https-3, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https-4, protocol: HTTPS}
    hosts: [d.example.com]
    tls: {mode: SIMPLE, credentialName: d-cert}
  - port: {number: 443, name: https-5, protocol: HTTPS}
    hosts: [e.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`, cipherSuites: ["[ECDHE-ECDSA-AES128-GCM-SHA256|DES-CBC3-SHA]"], minProtocolVersion: TLSV1_1}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true, mode: SIMPLE}
`) + gw("conflicts", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com, A.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`}
  - port: {number: 443, name: http, protocol: HTTP}
    hosts: [c.example.com]
`) + gw("zz-across", `  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: [y.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+`}
`) + gw("zz-plain", `  - port: {number: 443, name: http, protocol: HTTP}
    hosts: [x.example.com]
`) + strings.Replace(gw("zz-elsewhere", `  - port: {number: 443, name: http, protocol: HTTP}
    hosts: [x.example.com]
`), "istio: ingressgateway", "istio: eastwestgateway", 1)
	set, findings := config.Parse(filepath.Join(dir, "gateways.yaml"), []byte(yaml))
	if len(findings) > 0 {
		t.Fatalf("parse: %v", findings)
	}
	snap := NewBuilder().Build(set, nil)
	var msgs []string
	for _, st := range snap.Status {
		for _, f := range st.Findings {
			msgs = append(msgs, string(f.Severity)+" "+st.Meta.Name+" "+f.Field+": "+f.Message)
		}
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"error files spec.servers[0].tls.serverCertificate: cannot load the certificate " + filepath.Join(dir, "missing.pem"),
		"error files spec.servers[1].tls.serverCertificate: the certificate in " + old + " expired on",
		"error files spec.servers[2].tls.caCertificates: MUTUAL needs caCertificates",
		"error files spec.servers[3].tls.caCertificates: " + filepath.Join(dir, "shop-key.pem") + " holds no PEM certificate",
		"error files spec.servers[4].tls.privateKey: privateKey is required",
		"error modes spec.servers[0].tls: an HTTPS server needs tls",
		"warning modes spec.servers[1].tls: certificates are not used in mode PASSTHROUGH",
		"error modes spec.servers[2].tls.mode: mode ISTIO_MUTUAL is not supported by Weft yet",
		"error modes spec.servers[3].tls.credentialName: credentialName is not supported by Weft yet",
		`error modes spec.servers[4].tls.cipherSuites: cipher suite "DES-CBC3-SHA" is not one Weft supports (AES128-GCM-SHA256, `,
		"error modes spec.servers[4].tls.minProtocolVersion: TLSV1_1 is below what Weft serves",
		"error modes spec.servers[5].tls: on an HTTP server tls only takes httpsRedirect",
		`error conflicts spec.servers[1].hosts: host "A.example.com" is already served on port 443 by spec.servers[0]`,
		"error files spec.servers[5].tls.serverCertificate: \"shop.pem\" is not an absolute path",
		"warning zz-plain spec.servers[0].port: port 443 is HTTP here and HTTPS in Gateway default/good, which selects the same gateway proxies, and a port serves one protocol: this server is left out while Gateway default/good keeps it",
		"warning zz-across spec.servers[0].port: port 80 is HTTPS here and HTTP in Gateway default/good",
		`warning zz-across spec.servers[1].hosts: host "shop.example.com" is also served on port 443 by Gateway default/good`,
		"error conflicts spec.servers[2].port: port 443 is HTTPS on another server of this Gateway and HTTP here",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, " good ") || strings.Contains(all, " zz-elsewhere ") {
		t.Errorf("findings about a good Gateway:\n%s", all)
	}
	var inForce []string
	for _, g := range snap.Gateways {
		inForce = append(inForce, g.Name)
	}
	if strings.Join(inForce, ",") != "good,zz-across,zz-elsewhere,zz-plain" {
		t.Fatalf("Gateways in force: %v; want good, zz-across (its clashing servers left out by the translator) and zz-elsewhere", inForce)
	}
}
