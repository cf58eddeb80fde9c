package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/ca"
)

// TestDemoIdentities runs the demo with `weft up`: every sidecar (and the
// ingress gateway) gets a certificate for its SPIFFE ID from the built-in
// CA, shows it on its admin /certs, and `weft ca status` lists it.
func TestDemoIdentities(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress, "--no-traffic", "--ca-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	waitFor(t, 60*time.Second, "every instance ready", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if len(st.Instances) == 0 {
			return fmt.Errorf("no instances yet")
		}
		for _, in := range st.Instances {
			if !in.Ready {
				return fmt.Errorf("%s not ready (%s)", in.Instance, in.State)
			}
		}
		return nil
	})

	fi, err := os.Stat(filepath.Join(m.stateDir, "ca", ca.RootKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("root key: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}

	out, err := m.weft("", "ca", "status", "-o", "json")
	if err != nil {
		t.Fatalf("weft ca status: %v\n%s", err, out)
	}
	var cas ca.Status
	if err := json.Unmarshal([]byte(out), &cas); err != nil {
		t.Fatalf("weft ca status -o json: %v\n%s", err, out)
	}
	issued := map[string]string{} // serial -> SPIFFE ID
	for _, l := range cas.Leaves {
		issued[l.Serial] = l.SPIFFEID
	}
	for _, in := range m.status(t).Instances {
		if in.Sidecar == "" {
			continue
		}
		sa := in.Service
		if sa == "ingress" {
			sa = "ingressgateway"
		}
		want := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", in.Namespace, sa)
		resp, err := http.Get("http://" + in.Sidecar + "/certs")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var certs struct {
			SPIFFEID string    `json:"spiffe_id"`
			Serial   string    `json:"serial"`
			NotAfter time.Time `json:"not_after"`
		}
		if err := json.Unmarshal(body, &certs); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s /certs: %d %s", in.Instance, resp.StatusCode, body)
			continue
		}
		if certs.SPIFFEID != want {
			t.Errorf("%s /certs spiffe_id %q, want %q", in.Instance, certs.SPIFFEID, want)
		}
		if issued[certs.Serial] != want {
			t.Errorf("%s: serial %s not listed by weft ca status for %s:\n%s", in.Instance, certs.Serial, want, out)
		}
		if d := time.Until(certs.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("%s: certificate expires in %s, want about 24h", in.Instance, d)
		}
	}
	table, err := m.weft("", "ca", "status")
	if err != nil || !strings.Contains(table, "root") || !strings.Contains(table, "spiffe://cluster.local/ns/default/sa/productpage") {
		t.Errorf("weft ca status: %v\n%s", err, table)
	}
}
