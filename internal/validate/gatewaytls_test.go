package validate

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/testcerts"
)

// TestGatewayTLSChecks: HTTPS servers are accepted with certificate files
// that load (relative paths resolved against the Gateway's file, the
// snapshot getting absolute ones), and refused, each finding naming its
// field, for missing or broken files, an expired certificate, MUTUAL
// without a CA, modes and fields Weft does not support, a host served
// twice on one HTTPS port and a port that is both HTTP and HTTPS.
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
    tls: {mode: SIMPLE, serverCertificate: shop.pem, privateKey: shop-key.pem, minProtocolVersion: TLSV1_2}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: MUTUAL, serverCertificate: `+cert+`, privateKey: `+key+`, caCertificates: ca.pem}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
`) + gw("files", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: missing.pem, privateKey: shop-key.pem}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+old+`, privateKey: `+oldKey+`}
  - port: {number: 443, name: https-3, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: MUTUAL, serverCertificate: shop.pem, privateKey: shop-key.pem}
  - port: {number: 443, name: https-4, protocol: HTTPS}
    hosts: [d.example.com]
    tls: {mode: MUTUAL, serverCertificate: shop.pem, privateKey: shop-key.pem, caCertificates: shop-key.pem}
  - port: {number: 443, name: https-5, protocol: HTTPS}
    hosts: [e.example.com]
    tls: {mode: SIMPLE, serverCertificate: shop.pem}
`) + gw("modes", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {serverCertificate: shop.pem, privateKey: shop-key.pem}
  - port: {number: 443, name: https-3, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: https-4, protocol: HTTPS}
    hosts: [d.example.com]
    tls: {mode: SIMPLE, credentialName: d-cert}
  - port: {number: 443, name: https-5, protocol: HTTPS}
    hosts: [e.example.com]
    tls: {mode: SIMPLE, serverCertificate: shop.pem, privateKey: shop-key.pem, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256], minProtocolVersion: TLSV1_3}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true, mode: SIMPLE}
`) + gw("conflicts", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: shop.pem, privateKey: shop-key.pem}
  - port: {number: 443, name: https-2, protocol: HTTPS}
    hosts: [b.example.com, A.example.com]
    tls: {mode: SIMPLE, serverCertificate: shop.pem, privateKey: shop-key.pem}
  - port: {number: 443, name: http, protocol: HTTP}
    hosts: [c.example.com]
`)
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
		"error modes spec.servers[4].tls.cipherSuites: cipherSuites is not supported by Weft yet",
		"error modes spec.servers[4].tls.minProtocolVersion: minProtocolVersion is not supported by Weft yet",
		"error modes spec.servers[5].tls: on an HTTP server tls only takes httpsRedirect",
		`error conflicts spec.servers[1].hosts: host "A.example.com" is already served on port 443 by spec.servers[0]`,
		"error conflicts spec.servers[2].port: port 443 is HTTPS on another server of this Gateway and HTTP here",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, " good ") {
		t.Errorf("findings about a good Gateway:\n%s", all)
	}
	if len(snap.Gateways) != 1 || snap.Gateways[0].Name != "good" {
		t.Fatalf("Gateways in force: %v; want good only", snap.Gateways)
	}
	tls := snap.Gateways[0].Spec.GetServers()[0].GetTls()
	if tls.GetServerCertificate() != cert || tls.GetPrivateKey() != key {
		t.Errorf("the snapshot's paths: %q %q; want %q %q", tls.GetServerCertificate(), tls.GetPrivateKey(), cert, key)
	}
	if got := snap.Gateways[0].Spec.GetServers()[1].GetTls().GetCaCertificates(); got != ca.File {
		t.Errorf("caCertificates in the snapshot: %q; want %q", got, ca.File)
	}
	if set.Resources[0].Spec.(*networking.Gateway).GetServers()[0].GetTls().GetServerCertificate() != "shop.pem" {
		t.Error("the parsed resource was changed")
	}
}
