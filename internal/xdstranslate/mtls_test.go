package xdstranslate

import (
	"os"
	"path/filepath"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"weft.dev/weft/internal/model"
)

func peerAuth(name, ns string, spec *security.PeerAuthentication) *model.PeerAuthentication {
	return &model.PeerAuthentication{Meta: model.Meta{Kind: "PeerAuthentication", Namespace: ns, Name: name}, Spec: spec}
}

func mtlsMode(m security.PeerAuthentication_MutualTLS_Mode) *security.PeerAuthentication_MutualTLS {
	return &security.PeerAuthentication_MutualTLS{Mode: m}
}

const (
	strict     = security.PeerAuthentication_MutualTLS_STRICT
	permissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
	disable    = security.PeerAuthentication_MutualTLS_DISABLE
	unset      = security.PeerAuthentication_MutualTLS_UNSET
)

// meshMTLSSnapshot: reviews and ratings have sidecars (service accounts
// bookinfo-reviews, bookinfo-ratings), ratings' DestinationRule says
// DISABLE, echo's ISTIO_MUTUAL; the mesh is STRICT, and productpage's
// port 9091 DISABLE.
func meshMTLSSnapshot() *model.Snapshot {
	s := testSnapshot()
	s.TrustDomain = "example.org"
	for _, e := range s.Services["reviews.default.svc.cluster.local"].Endpoints {
		e.Sidecar, e.ServiceAccount = true, "bookinfo-reviews"
	}
	for _, e := range s.Services["ratings.default.svc.cluster.local"].Endpoints {
		e.Sidecar, e.ServiceAccount = true, "bookinfo-ratings"
	}
	s.DestinationRules = append(s.DestinationRules,
		dr("ratings", "default", &networking.DestinationRule{Host: "ratings", TrafficPolicy: &networking.TrafficPolicy{
			Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}}}),
		dr("echo", "grpc", &networking.DestinationRule{Host: "echo", TrafficPolicy: &networking.TrafficPolicy{
			Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}}}),
	)
	s.PeerAuthentications = []*model.PeerAuthentication{
		peerAuth("default", "istio-system", &security.PeerAuthentication{Mtls: mtlsMode(strict)}),
		peerAuth("metrics", "default", &security.PeerAuthentication{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{9091: mtlsMode(disable)},
		}),
	}
	return s
}

func TestMTLSGolden(t *testing.T) {
	for _, tc := range []goldenCase{
		{name: "mtls_sidecar", proxy: withInstance(sidecarProxy())},
		{name: "mtls_proxyless", proxy: func(*model.Snapshot) *Proxy { return proxylessProxy("default") }},
		{name: "mtls_proxyless_cert_provider", proxy: func(*model.Snapshot) *Proxy {
			p := proxylessProxy("default")
			p.CertProvider = "weft"
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := meshMTLSSnapshot()
			res, err := Translate(snap, tc.proxy(snap))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := dumpJSON(t, res)
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/xdstranslate -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestPeerAuthPrecedence mirrors Istio's: workload over namespace over
// mesh, port level over workload, UNSET inherits, PERMISSIVE by default.
func TestPeerAuthPrecedence(t *testing.T) {
	sel := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}}
	other := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "reviews"}}
	for _, tc := range []struct {
		name     string
		pas      []*model.PeerAuthentication
		want9080 security.PeerAuthentication_MutualTLS_Mode
		want9091 security.PeerAuthentication_MutualTLS_Mode
	}{
		{name: "none is PERMISSIVE", want9080: permissive, want9091: permissive},
		{name: "mesh STRICT", pas: []*model.PeerAuthentication{peerAuth("d", "istio-system", &security.PeerAuthentication{Mtls: mtlsMode(strict)})},
			want9080: strict, want9091: strict},
		{name: "namespace over mesh", pas: []*model.PeerAuthentication{
			peerAuth("d", "istio-system", &security.PeerAuthentication{Mtls: mtlsMode(strict)}),
			peerAuth("d", "default", &security.PeerAuthentication{Mtls: mtlsMode(disable)}),
		}, want9080: disable, want9091: disable},
		{name: "workload over namespace, UNSET inherits", pas: []*model.PeerAuthentication{
			peerAuth("d", "default", &security.PeerAuthentication{Mtls: mtlsMode(strict)}),
			peerAuth("w", "default", &security.PeerAuthentication{Selector: sel, Mtls: mtlsMode(unset),
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{9091: mtlsMode(permissive)}}),
		}, want9080: strict, want9091: permissive},
		{name: "workload mode", pas: []*model.PeerAuthentication{
			peerAuth("w", "default", &security.PeerAuthentication{Selector: sel, Mtls: mtlsMode(disable)}),
		}, want9080: disable, want9091: disable},
		{name: "selector of another workload", pas: []*model.PeerAuthentication{
			peerAuth("w", "default", &security.PeerAuthentication{Selector: other, Mtls: mtlsMode(strict)}),
		}, want9080: permissive, want9091: permissive},
		{name: "other namespace", pas: []*model.PeerAuthentication{
			peerAuth("d", "prod", &security.PeerAuthentication{Mtls: mtlsMode(strict)}),
		}, want9080: permissive, want9091: permissive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := testSnapshot()
			snap.PeerAuthentications = tc.pas
			f := New(snap).peerAuthFor(snap.Instances["productpage-v1-0.default"])
			if got := f(9080); got != tc.want9080 {
				t.Errorf("port 9080: %v, want %v", got, tc.want9080)
			}
			if got := f(9091); got != tc.want9091 {
				t.Errorf("port 9091: %v, want %v", got, tc.want9091)
			}
		})
	}
}

// TestServiceEntrySubjectAltNames: a ServiceEntry's subjectAltNames are
// identities its endpoints may present under mesh mTLS: with ISTIO_MUTUAL
// a sidecar accepts them (SPIFFE IDs as URI SANs, other names as DNS
// SANs), and so does a proxyless gRPC client.
func TestServiceEntrySubjectAltNames(t *testing.T) {
	s := testSnapshot()
	h := "vm.example.com"
	s.Services[h] = &model.Service{Hostname: h, Namespace: "default", Ports: []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}},
		Endpoints:       []*model.Endpoint{{Address: "10.0.0.9"}},
		SubjectAltNames: []string{"spiffe://cluster.local/ns/vms/sa/billing", "billing.vms.example.com"}}
	s.DestinationRules = append(s.DestinationRules, dr("vm", "default", &networking.DestinationRule{Host: h, TrafficPolicy: &networking.TrafficPolicy{
		Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}}}))
	sans := func(p *Proxy) (typed []string, plain []string) {
		t.Helper()
		res, err := Translate(s, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Clusters {
			if c.GetName() != "outbound|80||"+h {
				continue
			}
			up := &tlsv3.UpstreamTlsContext{}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
				t.Fatal(err)
			}
			vc := up.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext()
			if vc == nil {
				vc = up.GetCommonTlsContext().GetValidationContext()
			}
			for _, m := range vc.GetMatchTypedSubjectAltNames() {
				typed = append(typed, m.GetSanType().String()+" "+m.GetMatcher().GetExact())
			}
			for _, m := range vc.GetMatchSubjectAltNames() {
				plain = append(plain, m.GetExact())
			}
			return typed, plain
		}
		t.Fatalf("no cluster outbound|80||%s", h)
		return nil, nil
	}
	typed, _ := sans(sidecarProxy())
	if want := []string{"DNS billing.vms.example.com", "URI spiffe://cluster.local/ns/vms/sa/billing"}; !cmp.Equal(typed, want) {
		t.Errorf("sidecar SAN matchers %v; want %v", typed, want)
	}
	p := proxylessProxy("default")
	p.CertProvider = "mesh"
	if _, plain := sans(p); !cmp.Equal(plain, []string{"billing.vms.example.com", "spiffe://cluster.local/ns/vms/sa/billing"}) {
		t.Errorf("proxyless SAN matchers %v; want both names", plain)
	}
	// A DestinationRule's SIMPLE TLS types its subjectAltNames alike.
	s.DestinationRules[len(s.DestinationRules)-1].Spec.TrafficPolicy.Tls = &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE,
		CaCertificates: "/etc/certs/ca.pem", SubjectAltNames: []string{"spiffe://example.org/billing", "billing.example.org"}}
	typed, _ = sans(sidecarProxy())
	if want := []string{"URI spiffe://example.org/billing", "DNS billing.example.org"}; !cmp.Equal(typed, want) {
		t.Errorf("SIMPLE SAN matchers %v; want %v", typed, want)
	}
}
