package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// authzMesh is a server sidecar (httpbin: HTTP on 8000, a TCP echo on
// 9000) whose inbound listeners come from Weft's real translation of the
// policies under test, two client sidecars with certificates from a real
// CA (service accounts sleep and other), and the server's inbound
// addresses for a client without a sidecar (PERMISSIVE mTLS).
type authzMesh struct {
	server              *proxytest.Proxy
	sleep, other        *http.Client
	sleepTCP, otherTCP  string
	plainHTTP, plainTCP string
}

const httpbinHost = "httpbin.default.svc.cluster.local"

// authzEnv is a CA and a control plane.
type authzEnv struct {
	*testCA
	cp *proxytest.ControlPlane
}

func startAuthzMesh(t *testing.T, c *authzEnv, policies string) *authzMesh {
	t.Helper()
	return startAuthzMeshWithApp(t, c, policies, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "httpbin ok") })
}

// startAuthzMeshWithApp is startAuthzMesh with the server's HTTP app.
func startAuthzMeshWithApp(t *testing.T, c *authzEnv, policies string, h http.HandlerFunc) *authzMesh {
	t.Helper()
	app := httptest.NewServer(h)
	t.Cleanup(app.Close)
	echo := serveTCP(t, "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(c, c) })
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())
	_, echoPort, _ := net.SplitHostPort(echo)
	inst := &model.Instance{
		Name: "httpbin-0", Namespace: "default", Workload: "httpbin", Service: "httpbin", ServiceAccount: "httpbin",
		Labels: map[string]string{"app": "httpbin"}, Address: "127.0.0.1",
		Ports: []model.InstancePort{
			{Name: "http", Number: 8000, Protocol: model.ProtocolHTTP, AppPort: atou(appPort)},
			{Name: "tcp", Number: 9000, Protocol: model.ProtocolTCP, AppPort: atou(echoPort)},
		},
	}
	snap := meshModel(t, "policies.yaml", policies, inst)
	msgs := sidecarInbound(t, snap, inst)
	server := proxytest.StartProxy(t, c.cp, "httpbin-0", c.proxyOptions(t, "httpbin-0", "httpbin"))
	c.cp.Set(t, server.NodeID(), msgs...)
	server.WaitReady(t)
	m := &authzMesh{server: server, plainHTTP: server.ListenerAddr(t, xdsmeta.InboundListenerName(8000)), plainTCP: server.ListenerAddr(t, xdsmeta.InboundListenerName(9000))}
	client := func(name, sa string) (*http.Client, string) {
		out8000 := "outbound|8000||" + httpbinHost
		out9000 := "outbound|9000||" + httpbinHost
		p := proxytest.StartProxy(t, c.cp, name, c.proxyOptions(t, name, sa))
		id := "spiffe://cluster.local/ns/default/sa/httpbin"
		c.cp.Set(t, p.NodeID(),
			proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 8000, Filter: proxytest.HCMRDS("8000")}),
			proxytest.Listener("tcp-out", "127.0.0.1:0", proxytest.Chain{Filter: proxytest.TCPProxy(out9000)}),
			proxytest.RouteConfig("8000", proxytest.VirtualHost(httpbinHost+":8000", []string{"httpbin", "httpbin:8000"}, proxytest.PrefixRoute("/", out8000))),
			withAutoMTLS(proxytest.EDSCluster(out8000, clusterv3.Cluster_ROUND_ROBIN), id),
			withAutoMTLS(proxytest.EDSCluster(out9000, clusterv3.Cluster_ROUND_ROBIN), id),
			sidecarCLA(out8000, m.plainHTTP),
			sidecarCLA(out9000, m.plainTCP),
		)
		p.WaitReady(t)
		return p.HTTPClient(t), p.ListenerAddr(t, "tcp-out")
	}
	m.sleep, m.sleepTCP = client("sleep-0", "sleep")
	m.other, m.otherTCP = client("other-0", "other")
	return m
}

func atou(s string) uint32 {
	n := uint32(0)
	for _, c := range s {
		n = n*10 + uint32(c-'0')
	}
	return n
}

// tcpEcho reports whether a connection through addr echoes a line back
// (false: the connection was closed).
func tcpEcho(t *testing.T, addr string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "ping\n"
}

// TestAuthzThroughSidecars runs Istio's documented AuthorizationPolicy
// semantics through real sidecars with real mTLS: the server sidecar gets
// the control plane's translation of the policies; the principals come
// from the clients' certificates. Denied HTTP requests get 403 "RBAC:
// access denied"; denied TCP connections are closed.
func TestAuthzThroughSidecars(t *testing.T) {
	type want struct {
		sleepGet, sleepPost, otherGet, plainGet int
		sleepTCP, otherTCP, plainTCP            bool
	}
	for _, tc := range []struct {
		name   string
		policy string
		want   want
	}{
		{name: "no policy", want: want{200, 200, 200, 200, true, true, true}},
		{name: "allow-nothing", policy: ap("allow-nothing", "{}"), want: want{403, 403, 403, 403, false, false, false}},
		{name: "allow GET from sleep; TCP rule with methods ignored", policy: ap("get-from-sleep", `
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"]}}]`), want: want{200, 403, 403, 403, false, false, false}},
		{name: "deny other, HTTP and TCP", policy: ap("deny-other", `
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/other"]}}]}]`), want: want{200, 200, 403, 200, true, false, true}},
		{name: "allow the namespace: plaintext has no principal", policy: ap("ns", `
  rules: [{from: [{source: {namespaces: ["default"]}}]}]`), want: want{200, 200, 200, 403, true, true, false}},
		{name: "deny POST, allow all", policy: ap("allow-all", "{rules: [{}]}") + "---\n" + ap("no-post", `
  action: DENY
  rules: [{to: [{operation: {methods: ["POST"]}}]}]`), want: want{200, 403, 200, 200, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &authzEnv{testCA: startCA(t, time.Hour), cp: proxytest.StartControlPlane(t)}
			m := startAuthzMesh(t, c, tc.policy)
			check := func(who string, cl *http.Client, method, u string, want int) {
				t.Helper()
				req, _ := http.NewRequest(method, u, nil)
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatalf("%s %s %s: %v", who, method, u, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("%s %s: %d %q, want %d", who, method, resp.StatusCode, body, want)
				}
				if want == 403 && strings.TrimSpace(string(body)) != "RBAC: access denied" {
					t.Errorf("%s %s: body %q, want RBAC: access denied", who, method, body)
				}
			}
			check("sleep", m.sleep, "GET", "http://httpbin:8000/ip", tc.want.sleepGet)
			check("sleep", m.sleep, "POST", "http://httpbin:8000/ip", tc.want.sleepPost)
			check("other", m.other, "GET", "http://httpbin:8000/ip", tc.want.otherGet)
			check("plaintext", http.DefaultClient, "GET", "http://"+m.plainHTTP+"/ip", tc.want.plainGet)
			if tc.want.otherGet == 403 {
				// A denial is the destination's request like any other: the
				// server sidecar counts it for its service, with the
				// client's verified principal.
				stats := adminGet(t, m.server, "/stats/prometheus")
				found := false
				for _, line := range strings.Split(stats, "\n") {
					if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `reporter="destination"`) &&
						strings.Contains(line, `response_code="403"`) && strings.Contains(line, `destination_service_name="httpbin"`) &&
						strings.Contains(line, `source_principal="spiffe://cluster.local/ns/default/sa/other"`) {
						found = true
					}
				}
				if !found {
					t.Errorf("no istio_requests_total series for the denied request from other:\n%s", stats)
				}
			}
			for _, c := range []struct {
				who, addr string
				want      bool
			}{{"sleep", m.sleepTCP, tc.want.sleepTCP}, {"other", m.otherTCP, tc.want.otherTCP}, {"plaintext", m.plainTCP, tc.want.plainTCP}} {
				if got := tcpEcho(t, c.addr); got != c.want {
					t.Errorf("%s TCP echo = %v, want %v", c.who, got, c.want)
				}
			}
		})
	}
}

func ap(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: default}\nspec: " + spec + "\n"
}
