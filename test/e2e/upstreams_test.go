package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Explicit local upstream ports: the client Workload does not use
// HTTP_PROXY; it reaches httpbin (HTTP, routed by a VirtualService) and
// rawbin (declared TCP, so bytes are proxied) through local ports of its
// own sidecar, which weft status reports.
const upstreamsMesh = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: default}
spec:
  service: httpbin
  labels: {version: v1}
  ports: [{name: http, number: 8000}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: rawbin, namespace: default}
spec:
  serviceAccount: rawbin
  ports: [{name: tcp, number: 9000}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: default}
spec:
  serviceAccount: client
  ports: [{name: http, number: 8001}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
  # go-httpbin's /env shows the variables named HTTPBIN_ENV_*: the
  # upstream addresses, one set by name and one by its default name.
  env:
    HTTPBIN_ENV_URL: "http://${HTTPBIN_ENV_ADDR}/get"
    HTTPBIN_ENV_RAW: "${RAWBIN_DEFAULT_SVC_CLUSTER_LOCAL_9000_ADDR}"
  upstreams:
  - {service: httpbin, port: 8000, env: HTTPBIN_ENV_ADDR}
  - {service: rawbin.default.svc.cluster.local, port: 9000}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin]
  http:
  - headers:
      response:
        set: {x-weft-upstream: routed}
    route:
    - destination: {host: httpbin}
---
# Access logs on for the namespace: HTTP requests and TCP connections.
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]
`

func TestUpstreamPorts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(upstreamsMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir, 0)

	const httpbinKey, rawbinKey = "httpbin.default.svc.cluster.local:8000", "rawbin.default.svc.cluster.local:9000"
	var upstreams map[string]string
	var clientApp string
	admins := map[string]string{}
	waitFor(t, 60*time.Second, "httpbin, rawbin and client to be ready", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if len(st.Problems) > 0 {
			return fmt.Errorf("problems: %v", st.Problems)
		}
		ready := 0
		for _, in := range st.Instances {
			if in.Ready {
				ready++
			}
			admins[in.Instance] = in.Sidecar
			if in.Instance == "client-0" {
				upstreams, clientApp = in.Upstreams, in.App
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 instances ready: %+v", ready, st.Instances)
		}
		return nil
	})
	if upstreams[httpbinKey] == "" || upstreams[rawbinKey] == "" || len(upstreams) != 2 {
		t.Fatalf("client-0 upstreams = %v, want %s and %s", upstreams, httpbinKey, rawbinKey)
	}

	// A client that never uses a proxy, as an app that ignores HTTP_PROXY.
	direct := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	fetch := func(addr string) (*http.Response, string, error) {
		resp, err := direct.Get("http://" + addr + "/get")
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body := readAll(resp)
		if resp.StatusCode != http.StatusOK {
			return resp, body, fmt.Errorf("status %d: %.300s", resp.StatusCode, body)
		}
		return resp, body, nil
	}

	t.Run("HTTP upstream applies the VirtualService", func(t *testing.T) {
		waitFor(t, 20*time.Second, "httpbin through the client's local port", func() error {
			resp, body, err := fetch(upstreams[httpbinKey])
			if err != nil {
				return err
			}
			if got := resp.Header.Get("X-Weft-Upstream"); got != "routed" {
				return fmt.Errorf("x-weft-upstream = %q, want %q (the VirtualService's headers.response.set)", got, "routed")
			}
			// The client's sidecar stamps a request ID on what it routes.
			if !strings.Contains(body, "X-Request-Id") {
				return fmt.Errorf("httpbin did not see the sidecar's X-Request-Id: %.500s", body)
			}
			return nil
		})
		// Both sidecars handled it: the client's outbound cluster and
		// httpbin's inbound cluster counted a 200.
		for inst, cluster := range map[string]string{
			"client-0":  "outbound|8000||httpbin.default.svc.cluster.local",
			"httpbin-0": "inbound|8000||",
		} {
			want := fmt.Sprintf(`weft_proxy_requests_total{cluster=%q,code="200"}`, cluster)
			_, metrics, err := get("http://" + admins[inst] + "/stats/prometheus")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(metrics, want) {
				t.Errorf("%s's sidecar metrics lack %s", inst, want)
			}
		}
	})

	t.Run("TCP upstream proxies bytes", func(t *testing.T) {
		waitFor(t, 20*time.Second, "rawbin through the client's local port", func() error {
			_, body, err := fetch(upstreams[rawbinKey])
			if err != nil {
				return err
			}
			// Opaque bytes both ways: no sidecar parsed the request, so
			// none stamped a request ID on it.
			if !strings.Contains(body, `"url"`) || strings.Contains(body, "X-Request-Id") {
				return fmt.Errorf("want httpbin's answer to a request no proxy touched: %.500s", body)
			}
			return nil
		})
	})

	t.Run("TCP connections are access-logged", func(t *testing.T) {
		const clientID, rawbinID = "spiffe://cluster.local/ns/default/sa/client", "spiffe://cluster.local/ns/default/sa/rawbin"
		// The connection of the subtest above (closed now: it idled in
		// the client's pool), logged by both sidecars when it closed, with
		// the principals of the mTLS hop.
		direct.CloseIdleConnections()
		for _, c := range []struct {
			workload string
			want     map[string]any
		}{
			{"client", map[string]any{"upstream_cluster": "outbound|9000||rawbin.default.svc.cluster.local",
				"source_workload": "client", "source_principal": clientID, "destination_principal": rawbinID}},
			{"rawbin", map[string]any{"upstream_cluster": "inbound|9000||",
				"source_principal": clientID, "destination_workload": "rawbin", "destination_principal": rawbinID}},
		} {
			waitFor(t, 20*time.Second, "a TCP access log line from "+c.workload+"'s sidecar", func() error {
				out, err := m.weft("", "logs", "--workload", c.workload, "-o", "json")
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					var l struct {
						Access map[string]any `json:"access"`
					}
					if json.Unmarshal([]byte(line), &l) != nil || l.Access["protocol"] != "TCP" {
						continue
					}
					got := map[string]any{}
					for k := range c.want {
						got[k] = l.Access[k]
					}
					if diff := cmp.Diff(c.want, got); diff != "" {
						return fmt.Errorf("TCP line (-want +got):\n%s\n%s", diff, line)
					}
					if n, _ := l.Access["bytes_sent"].(float64); n == 0 {
						return fmt.Errorf("TCP line with no bytes sent: %s", line)
					}
					return nil
				}
				return fmt.Errorf("no TCP line in weft logs --workload %s -o json:\n%.3000s", c.workload, out)
			})
		}
		out, err := m.weft("", "logs", "--workload", "client")
		if err != nil || !strings.Contains(out, "access TCP ") {
			t.Errorf("weft logs --workload client shows no TCP line (%v):\n%.3000s", err, out)
		}
		// A status filter keeps HTTP lines only.
		out, err = m.weft("", "logs", "--workload", "client", "--status", "2xx")
		if err != nil || strings.Contains(out, "access TCP") || !strings.Contains(out, "access GET ") {
			t.Errorf("weft logs --status 2xx: want HTTP lines and no TCP line (%v):\n%.3000s", err, out)
		}
	})

	t.Run("env vars and expansion", func(t *testing.T) {
		code, body, err := get("http://" + clientApp + "/env")
		if err != nil || code != http.StatusOK {
			t.Fatalf("client's /env: %d %v %.300s", code, err, body)
		}
		var got struct{ Env map[string]string }
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("client's /env: %v: %.300s", err, body)
		}
		want := map[string]string{
			"HTTPBIN_ENV_ADDR": upstreams[httpbinKey],
			"HTTPBIN_ENV_URL":  "http://" + upstreams[httpbinKey] + "/get",
			"HTTPBIN_ENV_RAW":  upstreams[rawbinKey],
		}
		if diff := cmp.Diff(want, got.Env); diff != "" {
			t.Errorf("client's environment (-want +got):\n%s", diff)
		}
	})
}
