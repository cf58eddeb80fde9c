package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDemoStrictMTLS runs the demo, whose examples/demo/security.yaml
// makes mTLS STRICT mesh-wide: the product page works through the
// ingress, and the reviews sidecars report requests from productpage's
// verified SPIFFE ID over mutual TLS.
func TestDemoStrictMTLS(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress, "--no-traffic")
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 60*time.Second, "the product page through the ingress", func() error {
		code, body, err := get(page)
		if err != nil {
			return err
		}
		if code != 200 || !reviewsVersion.MatchString(body) {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		if code, _, err := get(page); err != nil || code != 200 {
			t.Fatalf("product page: %d %v", code, err)
		}
	}
	want := []string{`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/default/sa/productpage"`,
		`destination_principal="spiffe://cluster.local/ns/default/sa/reviews"`, `connection_security_policy="mutual_tls"`}
	found := false
	for _, in := range m.status(t).Instances {
		if in.Service != "reviews" || in.Sidecar == "" {
			continue
		}
		_, body, err := get("http://" + in.Sidecar + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, "istio_requests_total{") {
				continue
			}
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if strings.Contains(line, `reporter="destination"`) && strings.Contains(line, `connection_security_policy="none"`) {
				t.Errorf("%s served a plaintext request under STRICT: %s", in.Instance, line)
			}
			found = found || ok
		}
	}
	if !found {
		t.Errorf("no reviews sidecar reports mTLS requests from productpage (%v)", want)
	}
}
