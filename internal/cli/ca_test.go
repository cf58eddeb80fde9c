package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/controlplane"
)

func TestPrintCAStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := ca.Status{
		Mode: "plug-in", TrustDomain: "cluster.local", LeafLifetime: "24h0m0s", TrustBundleFile: "/etc/cacerts/root-cert.pem",
		Roots:         []ca.CertInfo{{Subject: "CN=corp root", Serial: "1", NotAfter: now.Add(3650 * 24 * time.Hour)}},
		Intermediates: []ca.CertInfo{{Subject: "CN=mesh intermediate", Serial: "2", NotAfter: now.Add(20 * 24 * time.Hour)}},
		Leaves: []ca.Leaf{
			{Instance: "details-0.default", SPIFFEID: "spiffe://cluster.local/ns/default/sa/details", Serial: "ab12", NotAfter: now.Add(23 * time.Hour)},
			{Instance: "ratings-0.default", SPIFFEID: "spiffe://cluster.local/ns/default/sa/ratings", Serial: "cd34", NotAfter: now.Add(-time.Second)},
		},
	}
	var buf bytes.Buffer
	printCAStatus(&buf, controlplane.CAStatus{Status: st, Identity: controlplane.IdentityStatus{Source: controlplane.IdentitySourceCA}}, now)
	want := `workload certificates: issued by the built-in CA
trust domain cluster.local, plug-in CA, workload certificates live 24h0m0s
trust bundle: /etc/cacerts/root-cert.pem

ROLE          SUBJECT               SERIAL  EXPIRES               LEFT
root          CN=corp root          1       2036-02-27T12:00:00Z  3650d
intermediate  CN=mesh intermediate  2       2026-03-21T12:00:00Z  20d

INSTANCE           SPIFFE ID                                     SERIAL  EXPIRES               LEFT
details-0.default  spiffe://cluster.local/ns/default/sa/details  ab12    2026-03-02T11:00:00Z  23h
ratings-0.default  spiffe://cluster.local/ns/default/sa/ratings  cd34    2026-03-01T11:59:59Z  expired
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("weft ca status (-want +got):\n%s", diff)
	}
	buf.Reset()
	printCAStatus(&buf, controlplane.CAStatus{Status: ca.Status{Mode: "self-signed"}}, now)
	if !bytes.Contains(buf.Bytes(), []byte("no workload certificate issued yet")) {
		t.Errorf("no leaves: %s", buf.String())
	}
}

// TestPrintCAStatusSPIFFE: with the SPIFFE Workload API, weft ca status
// says where certificates come from, the control plane's own ID, the
// bundle it reads there, and what the built-in CA still does.
func TestPrintCAStatusSPIFFE(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := controlplane.CAStatus{
		Status: ca.Status{Mode: "self-signed", TrustDomain: "example.org", LeafLifetime: "24h0m0s", TrustBundleFile: "/state/ca/trust-bundle.pem",
			Roots: []ca.CertInfo{{Subject: "CN=Weft root CA example.org", Serial: "1", NotAfter: now.Add(3650 * 24 * time.Hour)}}},
		Identity: controlplane.IdentityStatus{Source: controlplane.IdentitySourceSPIFFE, SPIFFESocket: "unix:///run/spire/agent.sock",
			ControlPlaneID: "spiffe://example.org/ns/istio-system/sa/weft-controlplane", Updated: now.Add(-time.Minute),
			Bundle: []ca.CertInfo{{Subject: "O=SPIFFE,C=US", Serial: "c0ffee", NotAfter: now.Add(20 * time.Hour)}}},
	}
	var buf bytes.Buffer
	printCAStatus(&buf, st, now)
	want := `workload certificates: issued by the SPIFFE Workload API at unix:///run/spire/agent.sock (SPIRE), trust domain example.org
control plane: spiffe://example.org/ns/istio-system/sa/weft-controlplane, trust bundle updated 2026-03-01T11:59:00Z

SPIFFE ROOT    SERIAL  EXPIRES               LEFT
O=SPIFFE,C=US  c0ffee  2026-03-02T08:00:00Z  20h

the built-in self-signed CA signs only the control plane's TLS certificate (sidecars verify it with /state/ca/trust-bundle.pem)

ROLE  SUBJECT                      SERIAL  EXPIRES               LEFT
root  CN=Weft root CA example.org  1       2036-02-27T12:00:00Z  3650d
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("weft ca status (-want +got):\n%s", diff)
	}
}
