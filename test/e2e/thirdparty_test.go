package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Third-party apps, unchanged, as Workloads: podinfo calls go-httpbin by
// its mesh name through podinfo's sidecar, and go-httpbin's sidecar reaches
// podinfo.
const thirdParty = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: default}
spec:
  service: httpbin
  labels: {version: v1}
  ports: [{name: http, number: 8000}]
  replicas: 2
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: podinfo, namespace: default}
spec:
  service: podinfo
  labels: {version: v6}
  ports: [{name: http, number: 9898}]
  command: ["podinfo", "--host", "127.0.0.1", "--port", "${PORT}", "--backend-url", "http://httpbin:8000/anything", "--ui-path", "/nonexistent"]
  metrics: {port: http}   # podinfo's own /metrics, merged into its sidecar's
`

func TestThirdPartyApps(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "apps.yaml"), []byte(thirdParty), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir, 0)

	var podinfoOut, httpbinOut, podinfoStats string
	waitFor(t, 60*time.Second, "podinfo and httpbin to be ready", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		ready := 0
		for _, in := range st.Instances {
			if in.Ready {
				ready++
			}
			switch in.Instance {
			case "podinfo-0":
				podinfoOut, podinfoStats = in.Outbound, in.Stats
			case "httpbin-0":
				httpbinOut = in.Outbound
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 instances ready: %+v", ready, st.Instances)
		}
		return nil
	})

	t.Run("podinfo calls httpbin through its sidecar", func(t *testing.T) {
		// podinfo's /api/echo forwards the body to its backend,
		// http://httpbin:8000/anything, which only the mesh can resolve.
		c := viaProxy(podinfoOut)
		waitFor(t, 20*time.Second, "podinfo's echo through the mesh", func() error {
			resp, err := c.Post("http://podinfo:9898/api/echo", "text/plain", strings.NewReader("hello from the test"))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body := readAll(resp)
			if resp.StatusCode != 202 && resp.StatusCode != 200 {
				return fmt.Errorf("status %d: %.300s", resp.StatusCode, body)
			}
			// httpbin's /anything answer (its Host and URL) inside podinfo's.
			if !strings.Contains(body, "httpbin:8000") || !strings.Contains(body, "/anything") {
				return fmt.Errorf("echo did not come back from httpbin: %.500s", body)
			}
			return nil
		})
	})

	t.Run("podinfo's metrics merged into its sidecar's", func(t *testing.T) {
		code, page, err := get("http://" + podinfoStats + "/stats/prometheus")
		if err != nil || code != 200 {
			t.Fatalf("stats page: %d %v", code, err)
		}
		// podinfo's own histogram and the sidecar's Istio metrics, one page.
		for _, want := range []string{"http_request_duration_seconds_bucket", "istio_requests_total{"} {
			if !strings.Contains(page, want) {
				t.Errorf("merged page lacks %s", want)
			}
		}
	})

	t.Run("httpbin's sidecar reaches podinfo", func(t *testing.T) {
		c := viaProxy(httpbinOut)
		resp, err := c.Get("http://podinfo:9898/api/info")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body := readAll(resp)
		if resp.StatusCode != 200 || !strings.Contains(body, "podinfo") {
			t.Fatalf("status %d: %.300s", resp.StatusCode, body)
		}
	})
}

func viaProxy(addr string) *http.Client {
	u := &url.URL{Scheme: "http", Host: addr}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func readAll(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// Killing weft up outright (no chance to clean up) still leaves no process
// behind: every child dies with it.
func TestKilledUpLeavesNoProcess(t *testing.T) {
	dir := t.TempDir()
	one := strings.Replace(thirdParty[:strings.Index(thirdParty, "---")], "replicas: 2", "replicas: 1", 1)
	if err := os.WriteFile(filepath.Join(dir, "apps.yaml"), []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir, 0)
	waitFor(t, 60*time.Second, "httpbin to be ready", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if len(st.Instances) != 1 || !st.Instances[0].Ready {
			return fmt.Errorf("instances: %+v", st.Instances)
		}
		return nil
	})
	if n := len(processesOf(binDir)); n < 3 {
		t.Fatalf("expected weft up, a sidecar and go-httpbin running, found %d: %v", n, processesOf(binDir))
	}
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-m.done
	m.done <- nil
	waitFor(t, 10*time.Second, "every child of the killed weft up to exit", func() error {
		if left := processesOf(binDir); len(left) > 0 {
			return fmt.Errorf("still running: %v", left)
		}
		return nil
	})
}
