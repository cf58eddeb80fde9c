package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad input: each mistake is reported with its file and field, and the
// rest of the mesh keeps running.
func TestBadInputKeepsTheRestRunning(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	files := map[string]string{
		"good.yaml": `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: httpbin}
spec:
  service: httpbin
  labels: {version: v1}
  ports: [{name: http, number: 8000}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
`,
		// A Workload without ports (a client or a job) is fine.
		"job.yaml": `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: job}
spec:
  command: ["sleep", "300"]
`,
		"ghost.yaml": `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ghost}
spec:
  service: ghost
  ports: [{name: http, number: 8000}]
  command: ["no-such-program-anywhere", "--port", "${PORT}"]
`,
		"broken.yaml": `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: broken}
spec:
  service: broken
  ports: [{name: http, numbr: 8000}]
  command: ["go-httpbin"]
`,
		"routes.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin, subset: v7}
`,
		"gateway.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: front}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: ["*"]
  gateways: [front]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
`, takenPort),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := startMesh(t, dir, 0)

	want := []string{
		// The malformed Workload: file, line and field.
		filepath.Join(dir, "broken.yaml") + ":6: Workload default/broken: spec.ports[0].numbr",
		// The command that does not exist.
		"Workload default/ghost: spec.command",
		"no-such-program-anywhere",
		// The unknown subset.
		filepath.Join(dir, "routes.yaml") + ":8: VirtualService default/httpbin: spec.http[0].route[0].destination.subset",
		// The gateway port already taken.
		fmt.Sprintf("127.0.0.1:%d", takenPort),
	}
	var problems string
	waitFor(t, 60*time.Second, "every problem to be reported by weft status", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		problems = strings.Join(st.Problems, "\n")
		for _, w := range want {
			if !strings.Contains(problems, w) {
				return fmt.Errorf("problems lack %q:\n%s", w, problems)
			}
		}
		return nil
	})
	t.Logf("weft status problems:\n%s", problems)

	// The good workload still serves through its sidecar.
	var outbound string
	for _, in := range m.status(t).Instances {
		if in.Instance == "httpbin-0" {
			outbound = in.Outbound
			if !in.Ready {
				t.Errorf("httpbin-0 not ready: %+v", in)
			}
		}
	}
	if outbound == "" {
		t.Fatal("httpbin-0 not running")
	}
	waitFor(t, 30*time.Second, "the Workload without ports to run", func() error {
		for _, in := range m.status(t).Instances {
			if in.Instance == "job-0" && in.State == "running" {
				return nil
			}
		}
		return fmt.Errorf("job-0 not running: %+v", m.status(t).Instances)
	})
	resp, err := viaProxy(outbound).Get("http://httpbin:8000/status/200")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("httpbin through the mesh: status %d", resp.StatusCode)
	}

	// A bad edit to the running Workload is reported, and its instance
	// keeps running on the last good version: same app address, still
	// serving.
	app := ""
	for _, in := range m.status(t).Instances {
		if in.Instance == "httpbin-0" {
			app = in.App
		}
	}
	bad := strings.Replace(files["good.yaml"], "number: 8000", "numbr: 8000", 1)
	if err := os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the bad edit to be reported", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if p := strings.Join(st.Problems, "\n"); !strings.Contains(p, filepath.Join(dir, "good.yaml")+":7: Workload default/httpbin: spec.ports[0].numbr") {
			return fmt.Errorf("problems lack the bad edit:\n%s", p)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a reconcile that would stop it has run by now
	kept := false
	for _, in := range m.status(t).Instances {
		if in.Instance == "httpbin-0" {
			kept = in.App == app && in.Ready
		}
	}
	if !kept {
		t.Errorf("httpbin-0 did not keep running (app %s) after a bad edit to its Workload: %+v", app, m.status(t).Instances)
	}
	if resp, err := viaProxy(outbound).Get("http://httpbin:8000/status/200"); err != nil || resp.StatusCode != 200 {
		t.Errorf("httpbin through the mesh after a bad edit to its Workload: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Mended, it is valid again (analyze below reads the folder).
	if err := os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(files["good.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the mended Workload to be valid again", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if p := strings.Join(st.Problems, "\n"); strings.Contains(p, "good.yaml") {
			return fmt.Errorf("problems still name good.yaml:\n%s", p)
		}
		return nil
	})

	// The same Workload defined again in another file: the copy is
	// rejected, and the one in force keeps running.
	if err := os.WriteFile(filepath.Join(dir, "dup.yaml"), []byte(files["good.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the duplicate Workload to be reported", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		if p := strings.Join(st.Problems, "\n"); !strings.Contains(p, filepath.Join(dir, "dup.yaml")) {
			return fmt.Errorf("problems do not name dup.yaml:\n%s", p)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	kept = false
	for _, in := range m.status(t).Instances {
		if in.Instance == "httpbin-0" {
			kept = in.App == app && in.Ready
		}
	}
	if !kept {
		t.Errorf("httpbin-0 did not keep running when another file defined its Workload again: %+v", m.status(t).Instances)
	}
	if err := os.Remove(filepath.Join(dir, "dup.yaml")); err != nil {
		t.Fatal(err)
	}

	// weft analyze reports the same config errors offline, exit code 1.
	out, err := m.weft("", "analyze", dir)
	if err == nil {
		t.Errorf("weft analyze exited 0 on broken config:\n%s", out)
	}
	for _, w := range []string{"spec.ports[0].numbr", "destination.subset"} {
		if !strings.Contains(out, w) {
			t.Errorf("weft analyze output lacks %q:\n%s", w, out)
		}
	}
}
