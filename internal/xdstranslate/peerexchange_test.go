package xdstranslate

import (
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// alpnOf returns the ALPN list of a TLS transport socket, and whether it
// is one.
func alpnOf(t *testing.T, ts *core.TransportSocket, downstream bool) ([]string, bool) {
	t.Helper()
	if ts.GetName() != tlsSocketName {
		return nil, false
	}
	if downstream {
		m := &tlsv3.DownstreamTlsContext{}
		if err := ts.GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		return m.GetCommonTlsContext().GetAlpnProtocols(), true
	}
	m := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCommonTlsContext().GetAlpnProtocols(), true
}

// TestPeerExchangeALPN: mesh mTLS to and from TCP ports offers and
// accepts the peer exchange protocol; HTTP ports, TLS that is not the
// mesh's and proxyless clients do not.
func TestPeerExchangeALPN(t *testing.T) {
	snap := meshMTLSSnapshot()
	for _, e := range snap.Services["mysql.db.svc.cluster.local"].Endpoints {
		e.Sidecar, e.ServiceAccount = true, "mysql"
	}
	mongo := &model.Service{Hostname: model.FQDN("mongo", "db"), Namespace: "db",
		Ports:     []model.Port{{Name: "tcp", Number: 27017, Protocol: model.ProtocolTCP}},
		Endpoints: []*model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"tcp": 20040}, Namespace: "db", Sidecar: true}}}
	snap.Services[mongo.Hostname] = mongo
	redis := &model.Service{Hostname: model.FQDN("redis", "db"), Namespace: "db",
		Ports:     []model.Port{{Name: "tcp", Number: 6379, Protocol: model.ProtocolTCP}},
		Endpoints: []*model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"tcp": 20050}, Namespace: "db", Sidecar: true}}}
	snap.Services[redis.Hostname] = redis
	snap.DestinationRules = append(snap.DestinationRules,
		dr("mongo", "db", &networking.DestinationRule{Host: "mongo", TrafficPolicy: &networking.TrafficPolicy{
			Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}}}),
		dr("redis", "db", &networking.DestinationRule{Host: "redis", TrafficPolicy: &networking.TrafficPolicy{
			Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_SIMPLE, Sni: "redis.example.com"}}}),
	)
	// productpage's 9091 is DISABLE in meshMTLSSnapshot: make it PERMISSIVE.
	snap.PeerAuthentications = snap.PeerAuthentications[:1]
	snap.PeerAuthentications[0].Spec.Mtls = mtlsMode(permissive)

	res, err := Translate(snap, sidecarProxy().WithSnapshot(snap))
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string]*cluster.Cluster{}
	for _, c := range res.Clusters {
		clusters[c.GetName()] = c
	}
	pe := []string{xdsmeta.PeerExchangeALPN}
	for _, tc := range []struct {
		name, cluster string
		match         string // "" for the cluster's transport_socket
		want          []string
	}{
		{name: "auto mTLS to a TCP port", cluster: "outbound|3306||mysql.db.svc.cluster.local", match: "tlsMode-istio", want: pe},
		{name: "ISTIO_MUTUAL to a TCP port", cluster: "outbound|27017||mongo.db.svc.cluster.local", want: pe},
		{name: "SIMPLE TLS to a TCP port: not the mesh's", cluster: "outbound|6379||redis.db.svc.cluster.local", want: nil},
		{name: "auto mTLS to an HTTP port", cluster: "outbound|9080||reviews.default.svc.cluster.local", match: "tlsMode-istio", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clusters[tc.cluster]
			if c == nil {
				t.Fatalf("no cluster %s", tc.cluster)
			}
			ts := c.GetTransportSocket()
			for _, m := range c.GetTransportSocketMatches() {
				if m.GetName() == tc.match {
					ts = m.GetTransportSocket()
				}
				if m.GetName() == "tlsMode-disabled" && m.GetTransportSocket().GetName() != rawSocketName {
					t.Errorf("tlsMode-disabled socket is %s, want raw_buffer", m.GetTransportSocket().GetName())
				}
			}
			got, ok := alpnOf(t, ts, false)
			if !ok {
				t.Fatalf("cluster %s: no TLS socket (%s)", tc.cluster, ts.GetName())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ALPN (-want +got):\n%s", diff)
			}
		})
	}

	for _, tc := range []struct {
		listener string
		want     []string
	}{
		{xdsmeta.InboundListenerName(9091), pe},
		{xdsmeta.InboundListenerName(9080), []string{"h2", "http/1.1"}},
	} {
		var found bool
		for _, l := range res.Listeners {
			if l.GetName() != tc.listener {
				continue
			}
			found = true
			if len(l.GetFilterChains()) != 2 {
				t.Fatalf("%s: %d filter chains, want mtls and plaintext", tc.listener, len(l.GetFilterChains()))
			}
			for _, fc := range l.GetFilterChains() {
				got, ok := alpnOf(t, fc.GetTransportSocket(), true)
				if fc.GetName() == "plaintext" {
					if ok {
						t.Errorf("%s: plaintext chain has TLS", tc.listener)
					}
					continue
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s chain %s: ALPN (-want +got):\n%s", tc.listener, fc.GetName(), diff)
				}
			}
		}
		if !found {
			t.Errorf("no listener %s", tc.listener)
		}
	}

	// Proxyless clients get no mesh mTLS, so no exchange.
	res, err = Translate(snap, proxylessProxy("default"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range res.Clusters {
		if c.GetName() != "outbound|3306||mysql.db.svc.cluster.local" {
			continue
		}
		found = true
		if c.GetTransportSocket() != nil || len(c.GetTransportSocketMatches()) > 0 {
			t.Errorf("proxyless cluster %s has TLS: %v", c.GetName(), c)
		}
	}
	if !found {
		t.Error("proxyless clusters lack outbound|3306||mysql.db.svc.cluster.local")
	}
}
