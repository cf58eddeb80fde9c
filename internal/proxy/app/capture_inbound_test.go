package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// TestTransparentCaptureInbound: a sidecar behind iptables REDIRECT
// receives its workload's inbound connections on virtualInbound (15006),
// as Weft's control plane translates it for a captured sidecar, with mTLS
// (PERMISSIVE on the HTTP port, STRICT on the TCP port) and an
// AuthorizationPolicy that lets only the service account sleep in. The
// clients are real Weft sidecars (sleep, other) that originate mTLS to
// the workload's address, and a client without a sidecar; iptables
// redirects all of them to the server sidecar, which must see each
// client's verified SPIFFE ID, decide on it, and record it in its
// metrics and access log. In one namespace every connection is local, so
// the OUTPUT chain stands in for PREROUTING: both REDIRECT the same way
// and the proxy reads the original destination back alike.
func TestTransparentCaptureInbound(t *testing.T) {
	if os.Getenv(captureHelperEnv) == "inbound" {
		captureInboundScenario(t)
		return
	}
	runInNamespace(t, "TestTransparentCaptureInbound", "inbound")
}

const (
	podIP         = "127.0.0.9" // the workload's address, whose traffic is captured
	inboundNodeID = "sidecar~" + podIP + "~httpbin-0.default~default.svc.cluster.local"
	sleepID       = "spiffe://cluster.local/ns/default/sa/sleep"
	otherID       = "spiffe://cluster.local/ns/default/sa/other"
	httpbinID     = "spiffe://cluster.local/ns/default/sa/httpbin"
)

func captureInboundScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	startHTTPBackend(t, podIP+":8080", "httpbin ok")
	startEcho(t, podIP+":9000", "")

	c := startCA(t, time.Hour)
	cp := proxytest.StartControlPlane(t)

	// The server sidecar's config, from Weft's translation.
	inst := &model.Instance{
		Name: "httpbin-0", Namespace: "default", Workload: "httpbin", Service: "httpbin", ServiceAccount: "httpbin",
		Labels: map[string]string{"app": "httpbin"}, Address: podIP,
		Ports: []model.InstancePort{
			{Name: "http", Number: 8080, Protocol: model.ProtocolHTTP, AppPort: 8080, InboundPort: 18080},
			{Name: "tcp", Number: 9000, Protocol: model.ProtocolTCP, AppPort: 9000, InboundPort: 19000},
		},
	}
	snap := meshModel(t, "policies.yaml", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    9000: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
`, inst)
	res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{ID: inboundNodeID, Type: xdstranslate.Sidecar, Namespace: "default", Name: inst.Name,
		Workload: inst.Workload, Labels: inst.Labels, ServiceAccount: inst.ServiceAccount, Instance: inst, Capture: true})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []proto.Message
	for _, l := range res.Listeners {
		if l.GetName() != xdsmeta.ListenerOutbound {
			msgs = append(msgs, l)
		}
	}
	for _, cl := range res.Clusters {
		if strings.HasPrefix(cl.GetName(), "inbound|") || cl.GetName() == xdsmeta.ClusterPassthrough {
			msgs = append(msgs, cl)
		}
	}
	cp.Set(t, inboundNodeID, msgs...)

	// Its credential, readable by the proxy's uid only.
	shared := filepath.Dir(os.Getenv(captureBinEnv))
	tok, err := c.tokens.Issue("httpbin-0.default", spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "httpbin"})
	if err != nil {
		t.Fatal(err)
	}
	tokFile, rootFile := filepath.Join(shared, "httpbin.token"), filepath.Join(shared, "roots.pem")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokFile, captureProxyUID, captureProxyUID); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootFile, c.a.TrustBundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := startCaptureProxyArgs(t, ctx, fmt.Sprintf("--xds-addr=%s --node-id=%s --name=httpbin-0 --workload=httpbin --service-account=httpbin --labels=app=httpbin "+
		"--ca-addr=%s --ca-root-file=%s --bootstrap-token-file=%s --admin-addr=127.0.0.1:15000 --access-log=- --drain-timeout=1s --interception-mode=REDIRECT",
		cp.Addr, inboundNodeID, c.addr, rootFile, tokFile))

	// Capture what is sent to the workload's address, except the
	// sidecar's own connections to its app.
	runCmd(t, ctx, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", podIP+"/32",
		"-m", "owner", "!", "--uid-owner", fmt.Sprint(captureProxyUID),
		"-j", "REDIRECT", "--to-ports", fmt.Sprint(xdstranslate.InboundCapturePort))

	// Client sidecars (in this process, so captured) that originate mTLS
	// to the workload's address.
	client := func(name, sa string) (*http.Client, string) {
		out8080, out9000 := "outbound|8080||httpbin.default.svc.cluster.local", "outbound|9000||httpbin.default.svc.cluster.local"
		p := proxytest.StartProxy(t, cp, name, c.proxyOptions(t, name, sa))
		cp.Set(t, p.NodeID(),
			proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 8080, Filter: proxytest.HCMRDS("8080")}),
			proxytest.Listener("tcp-out", "127.0.0.1:0", proxytest.Chain{Filter: proxytest.TCPProxy(out9000)}),
			proxytest.RouteConfig("8080", proxytest.VirtualHost("httpbin.default.svc.cluster.local:8080", []string{"httpbin", "httpbin:8080"}, proxytest.PrefixRoute("/", out8080))),
			withAutoMTLS(proxytest.EDSCluster(out8080, clusterv3.Cluster_ROUND_ROBIN), httpbinID),
			withAutoMTLS(proxytest.EDSCluster(out9000, clusterv3.Cluster_ROUND_ROBIN), httpbinID),
			sidecarCLA(out8080, podIP+":8080"),
			sidecarCLA(out9000, podIP+":9000"),
		)
		p.WaitReady(t)
		return p.HTTPClient(t), p.ListenerAddr(t, "tcp-out")
	}
	sleep, sleepTCP := client("sleep-0", "sleep")
	other, otherTCP := client("other-0", "other")
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		want   int
		body   string
	}{
		{"sleep, mTLS: allowed", sleep, "http://httpbin:8080/ip", 200, "httpbin ok"},
		{"other, mTLS: denied by its principal", other, "http://httpbin:8080/ip", 403, "RBAC: access denied"},
		{"no sidecar, plaintext (PERMISSIVE): no principal, denied", plain, "http://" + podIP + ":8080/ip", 403, "RBAC: access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Get(tc.url)
			if err != nil {
				t.Fatalf("GET %s: %v\nproxy logs:\n%s", tc.url, err, logs.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%d %q, want %d %q\nproxy logs:\n%s", resp.StatusCode, body, tc.want, tc.body, logs.String())
			}
		})
	}
	t.Run("tcp, sleep over mTLS: allowed", func(t *testing.T) {
		if !tcpEcho(t, sleepTCP) {
			t.Fatalf("sleep's connection was closed\nproxy logs:\n%s", logs.String())
		}
	})
	t.Run("tcp, other over mTLS: closed by its principal", func(t *testing.T) {
		if tcpEcho(t, otherTCP) {
			t.Fatal("other's connection was served")
		}
	})
	t.Run("tcp, plaintext under STRICT: closed", func(t *testing.T) {
		if tcpEcho(t, net.JoinHostPort(podIP, "9000")) {
			t.Fatal("a plaintext connection was served")
		}
	})

	// The server sidecar recorded the verified principal of the request
	// and the connection it served. (Requests denied before routing have
	// no inbound cluster, so they are not reported as the destination's.)
	stats := func() string {
		resp, err := http.Get("http://127.0.0.1:15000/stats/prometheus")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, want := range [][]string{
		{"istio_requests_total{", `reporter="destination"`, `source_principal="` + sleepID + `"`, `destination_principal="` + httpbinID + `"`, `connection_security_policy="mutual_tls"`, `response_code="200"`},
		{"istio_tcp_connections_opened_total{", `reporter="destination"`, `source_principal="` + sleepID + `"`, `connection_security_policy="mutual_tls"`},
	} {
		proxytest.Eventually(t, 5*time.Second, "a metric line with "+strings.Join(want, " "), func() bool {
			for _, line := range strings.Split(stats(), "\n") {
				ok := true
				for _, w := range want {
					ok = ok && strings.Contains(line, w)
				}
				if ok {
					return true
				}
			}
			return false
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"source_principal":"`+sleepID+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log entry with sleep's principal:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
