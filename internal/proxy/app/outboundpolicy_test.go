package app_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// TestOutboundTrafficPolicyProxyMode: a sidecar in HTTP proxy mode (as
// under `weft up`, apps with HTTP_PROXY and HTTPS_PROXY), configured by
// Weft's translation. Under ALLOW_ANY, Istio's default, requests and
// CONNECT tunnels to hosts outside the registry go where the client
// names, also on a port a mesh HTTP service uses, and are logged as the
// Telemetry says; under REGISTRY_ONLY they are refused (404 for a port no
// service has, 502 saying why for an unknown host on a port some have),
// and the outside servers see nothing. Hosts of the registry are routed
// either way, and nothing is passed through to the sidecar's own listener
// (it would come back, over and over).
func TestOutboundTrafficPolicyProxyMode(t *testing.T) {
	web := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "web") }))
	var reached atomic.Int32
	outside := func(c net.Conn) {
		reached.Add(1)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "GET ") {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\noutside")
			return
		}
		_, _ = c.Write(buf[:n]) // a tunnel: echo
	}
	// meshPort: a port of the mesh's HTTP service web.example.com (its
	// endpoint listens on webPort), where an outside server listens on
	// 127.0.0.1 too; freePort: a port no service has.
	meshOutside := serveTCP(t, "127.0.0.1:0", outside)
	freeOutside := serveTCP(t, "127.0.0.1:0", outside)
	_, webPort, _ := net.SplitHostPort(web)
	_, meshPort, _ := net.SplitHostPort(meshOutside)
	registry := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  ports: [{number: %s, name: http, protocol: HTTP, targetPort: %s}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
`, meshPort, webPort)
	for _, tc := range []struct {
		name    string
		sidecar string
		blocked bool
	}{
		{name: "no Sidecar (ALLOW_ANY)"},
		{name: "REGISTRY_ONLY", sidecar: "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", blocked: true},
		{name: "REGISTRY_ONLY from the root namespace", sidecar: "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", blocked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached.Store(0)
			snap := meshModel(t, "egress.yaml", registry+tc.sidecar)
			cp := proxytest.StartControlPlane(t)
			p := proxytest.StartProxy(t, cp, "client", proxytest.ProxyOptions{ConfigAccessLogs: true})
			res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{ID: p.NodeID(), Type: xdstranslate.Sidecar, Namespace: "default", Name: "client"})
			if err != nil {
				t.Fatal(err)
			}
			msgs := resourceMessages(res, true)
			logPath := filepath.Join(t.TempDir(), "access.log")
			httpLogsToFile(t, msgs, logPath)
			cp.Set(t, p.NodeID(), msgs...)
			p.WaitReady(t)
			client := p.HTTPClient(t)
			self := p.ListenerAddr(t, xdsmeta.ListenerOutbound)

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
			if code, body := get("http://web.example.com:" + meshPort + "/"); code != 200 || body != "web" {
				t.Errorf("web.example.com: %d %q; want 200 web", code, body)
			}
			// The proxy's own listener: never passed through.
			if code, body := get("http://" + self + "/"); code != http.StatusNotFound || (!tc.blocked && !strings.Contains(body, "own listener")) {
				t.Errorf("GET the sidecar's own listener: %d %q; want 404 (its own listener)", code, body)
			}
			if status, _ := connectThrough(t, self, self); !strings.HasPrefix(status, "HTTP/1.1 404") {
				t.Errorf("CONNECT to the sidecar's own listener: %q; want 404", status)
			}
			codeFree, bodyFree := get("http://" + freeOutside + "/")
			codeMesh, bodyMesh := get("http://" + meshOutside + "/")
			status, tunnel := connectThrough(t, self, meshOutside)
			if tc.blocked {
				// A port no service has: no route. A host no service has
				// on a port some have: block_all says why.
				if codeFree != http.StatusNotFound || !strings.Contains(bodyFree, "no filter chain") {
					t.Errorf("GET on a free port: %d %q; want 404 no filter chain", codeFree, bodyFree)
				}
				if codeMesh != http.StatusBadGateway || !strings.Contains(bodyMesh, "has outboundTrafficPolicy REGISTRY_ONLY") {
					t.Errorf("GET an unknown host on the mesh's port: %d %q; want 502 saying why", codeMesh, bodyMesh)
				}
				if strings.HasPrefix(status, "HTTP/1.1 200") {
					// The port's HTTP chain takes the tunnel: opaque
					// bytes for an unknown host are closed.
					_, _ = io.WriteString(tunnel, "\x16\x03\x01ping")
					if b, _ := io.ReadAll(tunnel); len(b) > 0 {
						t.Errorf("the tunnel to an unknown host carried %q back", b)
					}
				}
				if n := reached.Load(); n != 0 {
					t.Errorf("the outside servers accepted %d connections; want none", n)
				}
				return
			}
			if codeFree != 200 || bodyFree != "outside" {
				t.Errorf("GET on a free port: %d %q; want 200 outside", codeFree, bodyFree)
			}
			if codeMesh != 200 || bodyMesh != "outside" {
				t.Errorf("GET an unknown host on the mesh's port: %d %q; want 200 outside, passed through", codeMesh, bodyMesh)
			}
			// A tunnel to an unknown host on the mesh's HTTP port, with
			// bytes that are not HTTP (TLS, say): passed through.
			if !strings.HasPrefix(status, "HTTP/1.1 200") {
				t.Fatalf("CONNECT %s: %q; want 200", meshOutside, status)
			}
			if _, err := io.WriteString(tunnel, "\x16\x03\x01ping"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 7)
			if _, err := io.ReadFull(tunnel, buf); err != nil || string(buf) != "\x16\x03\x01ping" {
				t.Errorf("echo through the tunnel: %q, %v", buf, err)
			}
			// Passed-through requests are logged as the Telemetry says,
			// against PassthroughCluster.
			proxytest.Eventually(t, 5*time.Second, "both passed-through GETs in the access log", func() bool {
				b, _ := os.ReadFile(logPath)
				return strings.Count(string(b), `"upstream_cluster":"`+xdsmeta.ClusterPassthrough+`"`) >= 2
			})
		})
	}
}

// TestPassthroughNeverLoops: under ALLOW_ANY, a request or tunnel passed
// through to a name that resolves to the sidecar's own outbound listener
// (not only its address or localhost) is refused when it is dialled,
// instead of coming back to the sidecar until its circuit breaker opens.
func TestPassthroughNeverLoops(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	p := proxytest.StartProxy(t, cp, "client", proxytest.ProxyOptions{})
	res, err := xdstranslate.Translate(meshModel(t, "empty.yaml", ""), &xdstranslate.Proxy{ID: p.NodeID(), Type: xdstranslate.Sidecar, Namespace: "default", Name: "client"})
	if err != nil {
		t.Fatal(err)
	}
	cp.Set(t, p.NodeID(), resourceMessages(res, true)...)
	p.WaitReady(t)
	self := p.ListenerAddr(t, xdsmeta.ListenerOutbound)
	_, port, _ := net.SplitHostPort(self)
	// 0.0.0.0 connects to the machine, so to the listener on 127.0.0.1.
	for _, target := range []string{net.JoinHostPort("0.0.0.0", port), net.JoinHostPort("::", port)} {
		resp, err := p.HTTPClient(t).Get("http://" + target + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "own listener") {
			t.Errorf("GET through %s: %d %q; want 404, the sidecar's own listener", target, resp.StatusCode, body)
		}
	}
	// A name for 127.0.0.1 other than localhost (which is refused
	// before any dial), such as the machine's host name in /etc/hosts.
	names, _ := net.LookupAddr("127.0.0.1")
	name := ""
	for _, n := range names {
		if n = strings.TrimSuffix(n, "."); !strings.EqualFold(n, "localhost") {
			name = n
			break
		}
	}
	if name == "" {
		t.Skipf("no name for 127.0.0.1 on this machine but localhost (%v); the dial guard is tested in package upstream", names)
	}
	resp, err := p.HTTPClient(t).Get("http://" + net.JoinHostPort(name, port) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "own listener") {
		t.Errorf("GET through %s: %d %q; want 503 saying it is the sidecar's own listener", name, resp.StatusCode, body)
	}
	// The access log is written off the request's path.
	entry := `"authority":"` + net.JoinHostPort(name, port) + `"`
	proxytest.Eventually(t, 5*time.Second, "the request in the access log", func() bool { return strings.Contains(p.Access.String(), entry) })
	if n := strings.Count(p.Access.String(), entry); n != 1 {
		t.Errorf("%d access log lines for one request through %s: it looped\n%s", n, name, p.Access.String())
	}
}
