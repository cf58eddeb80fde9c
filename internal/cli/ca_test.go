package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/ca"
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
	printCAStatus(&buf, st, now)
	want := `trust domain cluster.local, plug-in CA, workload certificates live 24h0m0s
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
	printCAStatus(&buf, ca.Status{Mode: "self-signed"}, now)
	if !bytes.Contains(buf.Bytes(), []byte("no workload certificate issued yet")) {
		t.Errorf("no leaves: %s", buf.String())
	}
}
