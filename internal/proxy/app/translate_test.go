package app_test

import (
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// sidecarInbound translates snap for inst's sidecar, as the control plane
// does, and returns its inbound listeners and clusters.
func sidecarInbound(t testing.TB, snap *model.Snapshot, inst *model.Instance) []proto.Message {
	t.Helper()
	res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{Type: xdstranslate.Sidecar, Namespace: "default", Name: inst.Name,
		Workload: inst.Workload, Labels: inst.Labels, ServiceAccount: inst.ServiceAccount, Instance: inst})
	if err != nil {
		t.Fatal(err)
	}
	var inbound []proto.Message
	for _, l := range res.Listeners {
		if strings.HasPrefix(l.GetName(), "inbound|") {
			inbound = append(inbound, l)
		}
	}
	for _, c := range res.Clusters {
		if strings.HasPrefix(c.GetName(), "inbound|") {
			inbound = append(inbound, c)
		}
	}
	return inbound
}

// meshModel parses a config folder's worth of YAML and builds the model
// the control plane would, with the mesh's default telemetry; findings and
// invalid resources fail the test.
func meshModel(t testing.TB, file, yaml string, insts ...*model.Instance) *model.Snapshot {
	t.Helper()
	set, findings := config.Parse(file, []byte(yaml))
	if len(findings) > 0 {
		t.Fatalf("parse: %v", findings)
	}
	snap := validate.NewBuilder().Build(set, insts)
	for _, st := range snap.Status {
		if st.State == model.StateInvalid {
			t.Fatalf("invalid config: %+v", st)
		}
	}
	snap.MeshTelemetry = model.DefaultMeshTelemetry()
	return snap
}

// startGateway runs an ingress gateway proxy (labels istio:
// ingressgateway) whose config is Weft's translation of snap, with its
// listeners on free ports, and waits until it is ready.
func startGateway(t *testing.T, snap *model.Snapshot) *proxytest.Proxy {
	t.Helper()
	gw, _ := startGatewayCP(t, snap)
	return gw
}

// startGatewayCP is startGateway, also returning a function that pushes
// the translation of another snapshot to the gateway.
func startGatewayCP(t *testing.T, snap *model.Snapshot) (*proxytest.Proxy, func(*model.Snapshot)) {
	t.Helper()
	cp := proxytest.StartControlPlane(t)
	gw := proxytest.StartProxy(t, cp, "ingressgateway", proxytest.ProxyOptions{Type: xdsmeta.ProxyTypeGateway})
	cp.Set(t, gw.NodeID(), gatewayConfig(t, snap)...)
	gw.WaitReady(t)
	return gw, func(s *model.Snapshot) { cp.Set(t, gw.NodeID(), gatewayConfig(t, s)...) }
}

// startEnforcingGateway is startGateway for config the gateway must apply
// whole: a field it lists as not enforced fails the test.
func startEnforcingGateway(t *testing.T, snap *model.Snapshot) *proxytest.Proxy {
	t.Helper()
	gw := startGateway(t, snap)
	if logs := gw.Logs.String(); strings.Contains(logs, "not enforced") {
		t.Errorf("the gateway lists config it does not enforce:\n%s", logs)
	}
	return gw
}

// shopVirtualService is the head of a VirtualService "shop" bound to the
// Gateway "gw" (gatewayYAML) for any host; its http routes follow.
const shopVirtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
`

// gatewayConfig is Weft's translation of snap for the ingress gateway,
// with its listeners on port 0 (a Gateway's port may be taken on this
// machine: bind any).
func gatewayConfig(t *testing.T, snap *model.Snapshot) []proto.Message {
	t.Helper()
	return gatewayConfigAt(t, snap, "")
}

// gatewayConfigAt is gatewayConfig for a gateway at a locality.
func gatewayConfigAt(t *testing.T, snap *model.Snapshot, locality string) []proto.Message {
	t.Helper()
	res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{ID: "gw", Type: xdstranslate.Gateway, Namespace: "default",
		Labels: map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}, Locality: locality})
	if err != nil {
		t.Fatal(err)
	}
	return resourceMessages(res, true)
}

// resourceMessages are the translated resources as the test control
// plane takes them, with every listener on port 0 when anyPort (its port
// may be taken on this machine).
func resourceMessages(res *xdstranslate.Resources, anyPort bool) []proto.Message {
	var msgs []proto.Message
	for _, l := range res.Listeners {
		if anyPort {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
		}
		msgs = append(msgs, l)
	}
	for _, r := range res.Routes {
		msgs = append(msgs, r)
	}
	for _, c := range res.Clusters {
		msgs = append(msgs, c)
	}
	for _, e := range res.Endpoints {
		msgs = append(msgs, e)
	}
	return msgs
}

// gatewayYAML is a Gateway "gw" that serves HTTP on port 8080 of the
// ingress gateway (startGateway) for any host.
const gatewayYAML = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
`

// serviceEntryYAML declares service <name>.default.svc.cluster.local,
// HTTP on port 80, with an endpoint on 127.0.0.1 at each of ports.
func serviceEntryYAML(name string, ports ...string) string {
	eps := make([]string, len(ports))
	for i, p := range ports {
		eps[i] = "ports: {http: " + p + "}"
	}
	return serviceEntryWith(name, eps...)
}

// serviceEntryWith is serviceEntryYAML with each endpoint's fields
// besides its address given whole ("ports: {http: 8080}, locality: a/b").
func serviceEntryWith(name string, endpoints ...string) string {
	var eps strings.Builder
	for _, e := range endpoints {
		fmt.Fprintf(&eps, "  - {address: 127.0.0.1, %s}\n", e)
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: default}
spec:
  hosts: [%[1]s.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: STATIC
  endpoints:
%[2]s---
`, name, eps.String())
}

// serverPort is a test server's port.
func serverPort(s *httptest.Server) string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}
