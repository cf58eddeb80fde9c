package app_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// TestOutboundTrafficPolicyProxyMode: a sidecar in HTTP proxy mode (as
// under `weft up`, apps with HTTP_PROXY and HTTPS_PROXY), configured by
// Weft's translation. Under ALLOW_ANY, Istio's default, requests and
// CONNECT tunnels to hosts outside the registry go where the client
// names; under REGISTRY_ONLY they are refused (404 for a port no service
// has, 502 saying why for an unknown host on a port some service has),
// and the outside server sees nothing. Hosts of the registry
// are routed either way.
func TestOutboundTrafficPolicyProxyMode(t *testing.T) {
	web := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "web") }))
	var reached atomic.Int32
	outside := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		reached.Add(1)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "GET ") {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\noutside")
			return
		}
		_, _ = c.Write(buf[:n]) // a tunnel: echo
	})
	_, webPort, _ := net.SplitHostPort(web)
	registry := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  ports: [{number: %s, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
`, webPort)
	for _, tc := range []struct {
		name    string
		sidecar string
		blocked bool
	}{
		{name: "no Sidecar (ALLOW_ANY)"},
		{name: "REGISTRY_ONLY", sidecar: "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", blocked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached.Store(0)
			snap := meshModel(t, "egress.yaml", registry+tc.sidecar)
			cp := proxytest.StartControlPlane(t)
			p := proxytest.StartProxy(t, cp, "client", proxytest.ProxyOptions{})
			res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{ID: p.NodeID(), Type: xdstranslate.Sidecar, Namespace: "default", Name: "client"})
			if err != nil {
				t.Fatal(err)
			}
			var msgs []proto.Message
			for _, l := range res.Listeners {
				l = proto.Clone(l).(*listenerv3.Listener)
				l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
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
			cp.Set(t, p.NodeID(), msgs...)
			p.WaitReady(t)
			client := p.HTTPClient(t)

			get := func(url string) (int, string) {
				t.Helper()
				resp, err := client.Get(url)
				if err != nil {
					t.Fatalf("GET %s: %v", url, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get("http://web.example.com:" + webPort + "/"); code != 200 || body != "web" {
				t.Errorf("web.example.com: %d %q; want 200 web", code, body)
			}
			code, body := get("http://" + outside + "/")
			status, tunnel := connectThrough(t, p.ListenerAddr(t, xdsmeta.ListenerOutbound), outside)
			if tc.blocked {
				// A port no service has: no route. A host no service has
				// on a port some have: block_all says why.
				if code != http.StatusNotFound || !strings.Contains(body, "no filter chain") {
					t.Errorf("GET outside: %d %q; want 404 no filter chain", code, body)
				}
				if code, body := get("http://elsewhere.example.com:" + webPort + "/"); code != http.StatusBadGateway || !strings.Contains(body, "has outboundTrafficPolicy REGISTRY_ONLY") {
					t.Errorf("GET elsewhere.example.com: %d %q; want 502 saying why", code, body)
				}
				if !strings.HasPrefix(status, "HTTP/1.1 404") {
					t.Errorf("CONNECT outside: %q; want 404", status)
				}
				if n := reached.Load(); n != 0 {
					t.Errorf("the outside server accepted %d connections; want none", n)
				}
				return
			}
			if code != 200 || body != "outside" {
				t.Errorf("GET outside: %d %q; want 200 outside", code, body)
			}
			// An unknown host on a port some service has: passed
			// through too, not answered 404 by the port's routes.
			if code, body := get("http://127.0.0.1:" + webPort + "/"); code != 200 || body != "web" {
				t.Errorf("GET 127.0.0.1:%s: %d %q; want 200 web, passed through", webPort, code, body)
			}
			if !strings.HasPrefix(status, "HTTP/1.1 200") {
				t.Fatalf("CONNECT outside: %q; want 200", status)
			}
			if _, err := io.WriteString(tunnel, "ping"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(tunnel, buf); err != nil || string(buf) != "ping" {
				t.Errorf("echo through the tunnel: %q, %v", buf, err)
			}
			if _, body := get("http://" + outside + "/"); !strings.Contains(p.Access.String(), xdsmeta.ClusterPassthrough) || body != "outside" {
				t.Errorf("passed-through requests are not logged against %s:\n%s", xdsmeta.ClusterPassthrough, p.Access.String())
			}
		})
	}
}
