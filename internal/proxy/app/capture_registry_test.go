package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// TestTransparentCaptureRegistryOnly: a captured sidecar whose Sidecar
// resource sets outboundTrafficPolicy REGISTRY_ONLY, configured by Weft's
// own translation, reaches the services of the registry and nothing else.
// Captured HTTP for a host outside the registry is answered 502 by the
// sidecar, a captured connection to an address and port the registry
// does not know is closed, and so is HTTP detected on such a port; the
// backends listening there never see a connection. Apps using
// HTTP_PROXY are refused the same hosts.
func TestTransparentCaptureRegistryOnly(t *testing.T) {
	if os.Getenv(captureHelperEnv) == "registry-only" {
		captureRegistryOnlyScenario(t)
		return
	}
	runInNamespace(t, "TestTransparentCaptureRegistryOnly", "registry-only")
}

func captureRegistryOnlyScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// In the registry: web (VIP 127.0.0.2, endpoint 127.0.0.3) and echo
	// (127.0.0.4:9000). Outside it: every other address, each with a
	// backend that counts the connections it accepts.
	startHTTPBackend(t, "127.0.0.3:8080", "web")
	startEcho(t, "127.0.0.4:9000", "")
	var reached atomic.Int32
	for _, addr := range []string{"127.0.0.7:8080", "127.0.0.6:8081", "127.0.0.8:9100"} {
		serveTCP(t, addr, func(c net.Conn) {
			reached.Add(1)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\noutside")
		})
	}

	snap := meshModel(t, "egress.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  addresses: [127.0.0.2]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.example.com]
  addresses: [127.0.0.4]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.4}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`)
	res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{ID: captureNodeID, Type: xdstranslate.Sidecar, Namespace: "default", Name: "capture-0", Capture: true})
	if err != nil {
		t.Fatal(err)
	}
	cp := proxytest.StartControlPlane(t)
	cp.Set(t, captureNodeID, resourceMessages(res, false)...)
	logs := startCaptureProxy(t, ctx, cp.Addr)

	runCmd(t, ctx, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.1/32",
		"-m", "owner", "!", "--uid-owner", fmt.Sprint(captureProxyUID),
		"-j", "REDIRECT", "--to-ports", fmt.Sprint(captureOutbound))

	get := func(t *testing.T, proxy, target string) (int, string, error) {
		t.Helper()
		tr := &http.Transport{DisableKeepAlives: true}
		if proxy != "" {
			u, _ := url.Parse(proxy)
			tr.Proxy = http.ProxyURL(u)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(target)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	const blocked = "has outboundTrafficPolicy REGISTRY_ONLY"

	t.Run("http to a service of the registry", func(t *testing.T) {
		if code, body, err := get(t, "", "http://127.0.0.2:8080/"); err != nil || body != "web" {
			t.Fatalf("got %d %q, %v; want web\nproxy logs:\n%s", code, body, err, logs.String())
		}
	})
	t.Run("tcp to a service of the registry", func(t *testing.T) { echoRoundTrip(t, "127.0.0.4:9000", "") })
	t.Run("http for a host outside the registry is answered 502", func(t *testing.T) {
		code, body, err := get(t, "", "http://127.0.0.7:8080/")
		if err != nil || code != http.StatusBadGateway || !strings.Contains(body, blocked) {
			t.Fatalf("got %d %q, %v; want 502 saying why", code, body, err)
		}
	})
	t.Run("http to a port outside the registry is closed", func(t *testing.T) {
		if code, body, err := get(t, "", "http://127.0.0.6:8081/"); err == nil {
			t.Fatalf("got %d %q; want the connection closed", code, body)
		}
	})
	t.Run("tcp to a port outside the registry is closed", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", "127.0.0.8:9100", 5*time.Second)
		if err != nil {
			t.Fatal(err) // the proxy accepts, then closes
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "ping\n")
		if b, err := io.ReadAll(c); len(b) > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %q, %v; want the connection closed at once", b, err)
		}
	})
	t.Run("HTTP_PROXY: a host outside the registry is answered 502", func(t *testing.T) {
		proxy := fmt.Sprintf("http://127.0.0.1:%d", captureOutbound)
		if code, body, err := get(t, proxy, "http://web.example.com:8080/"); err != nil || body != "web" {
			t.Fatalf("web.example.com: got %d %q, %v; want web", code, body, err)
		}
		if code, body, err := get(t, proxy, "http://elsewhere.example.com:8080/"); err != nil || code != http.StatusBadGateway || !strings.Contains(body, blocked) {
			t.Fatalf("elsewhere.example.com: got %d %q, %v; want 502 saying why", code, body, err)
		}
		// A port no service has: no route (the default chain is for
		// captured connections only).
		if code, body, err := get(t, proxy, "http://elsewhere.example.com:8081/"); err != nil || code != http.StatusNotFound || !strings.Contains(body, "no filter chain") {
			t.Fatalf("elsewhere.example.com:8081: got %d %q, %v; want 404 no filter chain", code, body, err)
		}
	})
	t.Run("HTTP_PROXY: a CONNECT outside the registry is refused", func(t *testing.T) {
		if status, _ := connectThrough(t, fmt.Sprintf("127.0.0.1:%d", captureOutbound), "127.0.0.8:9100"); !strings.HasPrefix(status, "HTTP/1.1 404") {
			t.Fatalf("CONNECT answered %q; want 404", status)
		}
	})
	if n := reached.Load(); n != 0 {
		t.Errorf("backends outside the registry accepted %d connections, want none", n)
	}
	// The closed connections are logged against BlackHoleCluster, with
	// no upstream host.
	for _, want := range []string{
		`"upstream_host":"127.0.0.3:8080","upstream_cluster":"outbound|8080||web.example.com"`,
		`"authority":"127.0.0.8:9100"`,
		`"upstream_cluster":"` + xdsmeta.ClusterBlackHole + `"`,
	} {
		proxytest.Eventually(t, 5*time.Second, "access log entry "+want, func() bool { return strings.Contains(logs.String(), want) })
	}
}

// connectThrough sends CONNECT target to the HTTP proxy at proxyAddr and
// returns the status line and, after a 200, the tunnel.
func connectThrough(t *testing.T, proxyAddr, target string) (string, net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, c, err := connectTo(ctx, proxyAddr, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return resp.Proto + " " + resp.Status, c
}
