package validate

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/testcerts"
)

// The tests here build a config folder several times with one Builder, as
// the control plane does on each change, and check that what was in force
// stays in force when a change elsewhere is bad.

const lgBase = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]
`

// lgVS is a VirtualService "reviews" for host reviews routing to subset.
func lgVS(subset string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: ` + subset + `}
`
}

// lgLoad writes name/content pairs into dir (replacing the YAML files
// there) and loads the folder as the control plane does.
func lgLoad(t *testing.T, dir string, kv ...string) *config.Set {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, kv[i]), []byte(kv[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, _ := config.Load(dir)
	return set
}

var lgLineRE = regexp.MustCompile(`^([^:]*):\d+: `)

// lgErrors lists the error findings, the folder's path cut to "DIR" and
// the line each is on left out (the parser's to say, tested there).
func lgErrors(snap *model.Snapshot, dir string) []string {
	var out []string
	for _, f := range Findings(snap) {
		if f.Severity == model.SeverityError {
			out = append(out, lgLineRE.ReplaceAllString(strings.ReplaceAll(f.String(), dir, "DIR"), "$1: "))
		}
	}
	return out
}

// lgRoutes lists the VirtualServices in force as "name->subset" (the
// first route's destination), sorted.
func lgRoutes(snap *model.Snapshot) []string {
	var out []string
	for _, vs := range snap.VirtualServices {
		out = append(out, vs.Name+"->"+vs.Spec.GetHttp()[0].GetRoute()[0].GetDestination().GetSubset())
	}
	slices.Sort(out)
	return out
}

// lgState is a resource's state in a snapshot's status: "Valid",
// "Invalid", "Invalid (last good)" or "" when it has none.
func lgState(snap *model.Snapshot, kind, name string) string {
	for _, st := range snap.Status {
		if st.Kind == kind && st.Name == name {
			if st.ServingLastGood {
				return string(st.State) + " (last good)"
			}
			return string(st.State)
		}
	}
	return ""
}

// TestExpiredGatewayCertLeavesServerOut: a Gateway server whose
// certificate has expired, or whose files do not load, is left out of the
// Gateway in force with an error on its tls; the Gateway's other servers
// keep serving, and the VirtualServices naming the Gateway stay in force
// (with the routes they give the sidecars through "mesh"). A renewed
// certificate brings the server back.
func TestExpiredGatewayCertLeavesServerOut(t *testing.T) {
	certDir := t.TempDir()
	ca := testcerts.NewCA(t, certDir)
	cert, key := ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	gw := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: ` + cert + `, privateKey: ` + key + `}
`
	vs := strings.Replace(lgVS("v1"), "  hosts: [reviews]\n", "  hosts: [reviews]\n  gateways: [shop-gw, mesh]\n", 1)
	dir := t.TempDir()
	files := []string{"base.yaml", lgBase, "gw.yaml", gw, "vs.yaml", vs}
	steps := []struct {
		name       string
		certs      func()
		wantPorts  []uint32
		wantGW     string
		wantErrors []string
	}{
		{name: "valid", certs: func() {}, wantPorts: []uint32{8080, 8443}, wantGW: "Valid"},
		{name: "expired", certs: func() {
			ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}, NotAfter: time.Now().Add(-time.Minute)})
		}, wantPorts: []uint32{8080}, wantGW: "Invalid", wantErrors: []string{
			"DIR/gw.yaml: Gateway default/shop-gw: spec.servers[1].tls.serverCertificate: the certificate in " + cert + " expired on",
		}},
		{name: "renewed", certs: func() {
			ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
		}, wantPorts: []uint32{8080, 8443}, wantGW: "Valid"},
		{name: "key missing", certs: func() {
			if err := os.Remove(key); err != nil {
				t.Fatal(err)
			}
		}, wantPorts: []uint32{8080}, wantGW: "Invalid", wantErrors: []string{
			"DIR/gw.yaml: Gateway default/shop-gw: spec.servers[1].tls.serverCertificate: cannot load the certificate " + cert + " with the key " + key + ": open " + key + ": no such file or directory; fix the files: until then this server is left out and the Gateway's other servers keep serving",
		}},
	}
	b := NewBuilder()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.certs()
			snap := b.Build(lgLoad(t, dir, files...), nil)
			if diff := cmp.Diff([]string{"reviews->v1"}, lgRoutes(snap)); diff != "" {
				t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
			}
			if got := lgState(snap, "VirtualService", "reviews"); got != "Valid" {
				t.Errorf("VirtualService reviews is %q, want Valid", got)
			}
			if got := lgState(snap, "Gateway", "shop-gw"); got != st.wantGW {
				t.Errorf("Gateway shop-gw is %q, want %q", got, st.wantGW)
			}
			var ports []uint32
			for _, g := range snap.Gateways {
				for _, s := range g.Spec.GetServers() {
					ports = append(ports, s.GetPort().GetNumber())
				}
			}
			if diff := cmp.Diff(st.wantPorts, ports); diff != "" {
				t.Errorf("Gateway server ports in force (-want +got):\n%s", diff)
			}
			errs := lgErrors(snap, certDir)
			for i := range errs {
				errs[i] = strings.ReplaceAll(errs[i], dir, "DIR")
			}
			if len(errs) != len(st.wantErrors) {
				t.Fatalf("errors %q, want %d", errs, len(st.wantErrors))
			}
			for i, want := range st.wantErrors {
				want = strings.ReplaceAll(want, certDir, "DIR")
				if !strings.HasPrefix(errs[i], want) {
					t.Errorf("error %q, want it to start %q", errs[i], want)
				}
			}
			if st.name == "expired" && !strings.HasSuffix(errs[0], "; renew it: until then this server is left out and the Gateway's other servers keep serving") {
				t.Errorf("error %q does not say to renew the certificate and what is left out", errs[0])
			}
		})
	}
}
