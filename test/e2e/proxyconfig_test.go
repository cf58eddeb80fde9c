package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/local"
)

// proxyConfigMesh is httpbin behind the ingress gateway and another
// workload, with a mesh-wide ProxyConfig (every CPU for every proxy) and
// httpbin's own (two threads, fixed by GOMAXPROCS in its sidecar's
// environment).
const proxyConfigMesh = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: default}
spec:
  ports: [{name: http, number: 8000}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: other, namespace: default}
spec:
  ports: [{name: http, number: 8001}]
  command: ["go-httpbin", "-host", "127.0.0.1", "-port", "${PORT}"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: front, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: ["*"]
  gateways: [front]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: mesh, namespace: istio-system}
spec:
  concurrency: 0
`

// httpbinProxyConfig is httpbin's own ProxyConfig with GOMAXPROCS set to
// threads in its sidecar's environment.
func httpbinProxyConfig(threads string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: httpbin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  environmentVariables: {GOMAXPROCS: %q, WEFT_E2E_MARK: "threads-%s"}
`, threads, threads)
}

// gatewayProxyConfig is the ingress gateway's ProxyConfig with
// concurrency and, unless env is empty, the environment variables env
// (YAML flow mapping entries).
func gatewayProxyConfig(concurrency int, env string) string {
	out := fmt.Sprintf(`apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: gateway, namespace: default}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  concurrency: %d
`, concurrency)
	if env != "" {
		out += "  environmentVariables: {" + env + "}\n"
	}
	return out
}

// TestProxyConfig: ProxyConfigs set how proxies run. weft up starts each
// sidecar and the ingress gateway with the concurrency (--concurrency)
// and environment the ProxyConfigs that apply to it merge to, weft status
// names them, and a change restarts the proxies it changes (not their
// apps, nor the proxies it does not change), which then serve again; a
// bad ProxyConfig is refused, its last good version stays in force and
// nothing restarts; settings a sidecar or the gateway does not start with
// are rolled back, reported, and not tried again until they change.
func TestProxyConfig(t *testing.T) {
	ingress := freePort(t)
	dir := t.TempDir()
	for name, data := range map[string]string{
		"mesh.yaml":    fmt.Sprintf(proxyConfigMesh, ingress),
		"httpbin.yaml": httpbinProxyConfig("2"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The proxy program: weft-proxy, unless WEFT_E2E_FAIL is in its
	// environment, as a setting a proxy cannot start with.
	wrapper := filepath.Join(t.TempDir(), "proxy.sh")
	script := "#!/bin/sh\nif [ -n \"$WEFT_E2E_FAIL\" ]; then echo 'WEFT_E2E_FAIL: not starting' >&2; exit 3; fi\nexec " + filepath.Join(binDir, "weft-proxy") + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	m := startMesh(t, dir, ingress, "--proxy-binary", wrapper)

	// proxies are the proxy processes of httpbin-0 and the gateway.
	type proxy struct {
		pid, appPID int
		from        []string
		admin       string
	}
	same := func(a, b proxy) bool {
		return a.pid == b.pid && a.appPID == b.appPID && a.admin == b.admin && slices.Equal(a.from, b.from)
	}
	var version uint64 // the config version proxies saw
	proxies := func(problemsOK bool) (map[string]proxy, error) {
		st, err := m.statusErr()
		if err != nil {
			return nil, err
		}
		if len(st.Problems) > 0 && !problemsOK {
			return nil, fmt.Errorf("problems: %v", st.Problems)
		}
		version = st.Version
		out := map[string]proxy{}
		for _, in := range st.Instances {
			if !in.Ready {
				return nil, fmt.Errorf("%s not ready", in.Instance)
			}
			p := proxy{from: in.ProxyConfigs, admin: in.Sidecar, pid: in.SidecarPID, appPID: in.PID}
			if in.Service == "ingress" {
				p.pid = in.PID
			}
			out[in.Instance] = p
		}
		if out["httpbin-0"].pid == 0 || out["other-0"].pid == 0 || out["ingressgateway"].pid == 0 {
			return nil, fmt.Errorf("the sidecars of httpbin-0 and other-0 and the gateway not all running: %+v", st.Instances)
		}
		return out, nil
	}
	// check compares a proxy's command line, environment and threads
	// with what its ProxyConfigs ask.
	check := func(t *testing.T, name string, p proxy, from []string, concurrency, env string, threads int) {
		t.Helper()
		if diff := cmp.Diff(from, p.from); diff != "" {
			t.Errorf("%s: ProxyConfigs in weft status (-want +got):\n%s", name, diff)
		}
		args := procStrings(t, p.pid, "cmdline")
		if i := slices.Index(args, "--concurrency"); i < 0 || i+1 >= len(args) || args[i+1] != concurrency {
			t.Errorf("%s: proxy command line %q, want --concurrency %s", name, args, concurrency)
		}
		if env != "" && !slices.Contains(procStrings(t, p.pid, "environ"), env) {
			t.Errorf("%s: proxy environment lacks %s", name, env)
		}
		waitFor(t, 10*time.Second, name+"'s threads", func() error {
			_, metrics, err := get("http://" + p.admin + "/stats/prometheus")
			if err != nil {
				return err
			}
			want := fmt.Sprintf("go_sched_gomaxprocs_threads %d", threads)
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(metrics) {
				return fmt.Errorf("metrics lack %q", want)
			}
			return nil
		})
	}
	// unchanged checks, for a few seconds (reconcile runs after status
	// shows a new config), that a proxy stays as it was.
	unchanged := func(t *testing.T, name string, was proxy) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			now, err := proxies(true)
			if err != nil {
				t.Fatal(err)
			}
			if !same(now[name], was) {
				t.Fatalf("%s changed (%+v, was %+v)", name, now[name], was)
			}
		}
	}
	// hasProblem reports whether weft status has a problem holding every
	// one of parts.
	hasProblem := func(st local.MeshStatus, parts ...string) bool {
		return slices.ContainsFunc(st.Problems, func(p string) bool {
			return !slices.ContainsFunc(parts, func(part string) bool { return !strings.Contains(p, part) })
		})
	}
	// rolledBack waits until weft status reports a failed restart (a
	// problem holding every one of problem) and the proxy of instance
	// name runs again, in a process other than was's.
	rolledBack := func(t *testing.T, name string, was proxy, problem ...string) map[string]proxy {
		t.Helper()
		var rolled map[string]proxy
		waitFor(t, 90*time.Second, name+"'s failed restart rolled back", func() (err error) {
			st, err := m.statusErr()
			if err != nil {
				return err
			}
			if !hasProblem(st, problem...) {
				return fmt.Errorf("problems %v", st.Problems)
			}
			if rolled, err = proxies(true); err != nil {
				return err
			}
			if rolled[name].pid == was.pid {
				return fmt.Errorf("%s's proxy not restarted", name)
			}
			return nil
		})
		return rolled
	}
	// restarted waits until every proxy is ready, with no problem
	// reported, and the proxy of instance name runs in a process other
	// than was's.
	restarted := func(t *testing.T, name string, was proxy) map[string]proxy {
		t.Helper()
		var now map[string]proxy
		waitFor(t, 60*time.Second, name+"'s proxy with the new settings", func() (err error) {
			now, err = proxies(false)
			if err == nil && now[name].pid == was.pid {
				err = fmt.Errorf("not restarted")
			}
			return err
		})
		return now
	}
	serves := func(t *testing.T) {
		t.Helper()
		waitFor(t, 30*time.Second, "httpbin through the ingress gateway", func() error {
			code, body, err := get(fmt.Sprintf("http://127.0.0.1:%d/get", ingress))
			if err != nil || code != 200 {
				return fmt.Errorf("status %d, err %v: %.200s", code, err, body)
			}
			return nil
		})
	}

	var before map[string]proxy
	waitFor(t, 60*time.Second, "httpbin, other and the gateway to be ready", func() (err error) {
		before, err = proxies(false)
		return err
	})
	t.Run("proxies start as their ProxyConfigs say", func(t *testing.T) {
		// httpbin's sidecar: the mesh's concurrency, and its own
		// GOMAXPROCS, which fixes its threads at 2 (it would run on one
		// while idle otherwise).
		check(t, "httpbin-0", before["httpbin-0"], []string{"istio-system/mesh", "default/httpbin"}, "0", "GOMAXPROCS=2", 2)
		// other's: the mesh's; one thread while idle.
		check(t, "other-0", before["other-0"], []string{"istio-system/mesh"}, "0", "", 1)
		// The gateway: the mesh's concurrency, every CPU it may use (as
		// this process, in the same cgroup and environment).
		check(t, "ingressgateway", before["ingressgateway"], []string{"istio-system/mesh"}, "0", "", runtime.GOMAXPROCS(0))
		serves(t)
		out, err := m.weft("", "status")
		if err != nil || !strings.Contains(out, "default/httpbin-0 follows ProxyConfig istio-system/mesh, default/httpbin") {
			t.Errorf("weft status does not name httpbin-0's ProxyConfigs: %v\n%s", err, out)
		}
	})

	t.Run("a change restarts the proxies it changes, not the apps", func(t *testing.T) {
		m.apply(t, httpbinProxyConfig("1")+"---\n"+gatewayProxyConfig(1, ""), "")
		var after map[string]proxy
		waitFor(t, 60*time.Second, "both proxies restarted", func() (err error) {
			if after, err = proxies(false); err != nil {
				return err
			}
			if after["httpbin-0"].pid == before["httpbin-0"].pid || after["ingressgateway"].pid == before["ingressgateway"].pid {
				return fmt.Errorf("pids %d and %d, were %d and %d", after["httpbin-0"].pid, after["ingressgateway"].pid, before["httpbin-0"].pid, before["ingressgateway"].pid)
			}
			return nil
		})
		if after["httpbin-0"].appPID != before["httpbin-0"].appPID {
			t.Errorf("httpbin-0's app restarted (pid %d, was %d); only its sidecar should", after["httpbin-0"].appPID, before["httpbin-0"].appPID)
		}
		if !same(after["other-0"], before["other-0"]) {
			t.Errorf("other-0 changed (%+v, was %+v); no ProxyConfig of it changed", after["other-0"], before["other-0"])
		}
		check(t, "httpbin-0", after["httpbin-0"], []string{"istio-system/mesh", "default/httpbin"}, "0", "WEFT_E2E_MARK=threads-1", 1)
		check(t, "ingressgateway", after["ingressgateway"], []string{"istio-system/mesh", "default/gateway"}, "1", "", 1)
		serves(t)
		before = after
	})

	t.Run("a bad ProxyConfig is refused and restarts nothing", func(t *testing.T) {
		bad := strings.Replace(httpbinProxyConfig("1"), `GOMAXPROCS: "1"`, `GOMAXPROCS: "1", GOMEMLIMIT: "64M"`, 1)
		out, err := m.weft(bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "ProxyConfig default/httpbin") || !strings.Contains(out, `spec.environmentVariables.GOMEMLIMIT: "64M" is not a memory limit the Go runtime reads`) {
			t.Fatalf("weft apply of a bad GOMEMLIMIT: %v\n%s; want it refused at its field", err, out)
		}
		// Written to the folder, where weft apply cannot refuse it: the
		// last good version stays in force.
		seen := version
		if err := os.WriteFile(filepath.Join(dir, "httpbin.yaml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the bad ProxyConfig read", func() (err error) {
			st, err := m.statusErr()
			if err != nil {
				return err
			}
			if st.Version == seen || !slices.ContainsFunc(st.Problems, func(p string) bool { return strings.Contains(p, "GOMEMLIMIT") }) {
				return fmt.Errorf("config version %d (was %d), problems %v", st.Version, seen, st.Problems)
			}
			return nil
		})
		unchanged(t, "httpbin-0", before["httpbin-0"])
		serves(t)
	})

	t.Run("settings a sidecar does not start with are rolled back", func(t *testing.T) {
		failing := strings.Replace(httpbinProxyConfig("1"), `GOMAXPROCS: "1"`, `GOMAXPROCS: "1", WEFT_E2E_FAIL: "1"`, 1)
		m.apply(t, failing, "")
		problem := []string{"Workload default/httpbin", "keep their previous settings"}
		rolled := rolledBack(t, "httpbin-0", before["httpbin-0"], problem...)
		check(t, "httpbin-0", rolled["httpbin-0"], []string{"istio-system/mesh", "default/httpbin"}, "0", "WEFT_E2E_MARK=threads-1", 1)
		if slices.Contains(procStrings(t, rolled["httpbin-0"].pid, "environ"), "WEFT_E2E_FAIL=1") {
			t.Errorf("httpbin-0's sidecar runs with the settings that failed")
		}
		serves(t)

		// Another change (the gateway's) does not try the failed
		// settings again, and the problem stays.
		m.apply(t, gatewayProxyConfig(2, ""), "")
		waitFor(t, 60*time.Second, "the gateway restarted", func() error {
			now, err := proxies(true)
			if err != nil {
				return err
			}
			if now["ingressgateway"].pid == rolled["ingressgateway"].pid {
				return fmt.Errorf("gateway pid %d unchanged", now["ingressgateway"].pid)
			}
			return nil
		})
		unchanged(t, "httpbin-0", rolled["httpbin-0"])
		if !hasProblem(m.status(t), problem...) {
			t.Errorf("the failed restart is no longer reported: %v", m.status(t).Problems)
		}

		// Settings that start clear it.
		m.apply(t, httpbinProxyConfig("2"), "")
		fixed := restarted(t, "httpbin-0", rolled["httpbin-0"])
		check(t, "httpbin-0", fixed["httpbin-0"], []string{"istio-system/mesh", "default/httpbin"}, "0", "WEFT_E2E_MARK=threads-2", 2)
		serves(t)
	})

	t.Run("settings the gateway does not start with are rolled back", func(t *testing.T) {
		was, err := proxies(false)
		if err != nil {
			t.Fatal(err)
		}
		m.apply(t, gatewayProxyConfig(1, `WEFT_E2E_FAIL: "1"`), "")
		problem := []string{"ingress gateway", "keeps its previous settings"}
		rolled := rolledBack(t, "ingressgateway", was["ingressgateway"], problem...)
		// Back on its previous settings (concurrency 2: two threads where
		// the runtime would pick two), serving.
		check(t, "ingressgateway", rolled["ingressgateway"], []string{"istio-system/mesh", "default/gateway"}, "2", "", min(2, runtime.GOMAXPROCS(0)))
		if slices.Contains(procStrings(t, rolled["ingressgateway"].pid, "environ"), "WEFT_E2E_FAIL=1") {
			t.Errorf("the gateway runs with the settings that failed")
		}
		serves(t)
		// Not tried again while the settings stay, through another change
		// of the mesh (a reconcile).
		seen := version
		m.apply(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: unrelated, namespace: default}
spec:
  hosts: [unrelated.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
`, "")
		waitFor(t, 30*time.Second, "the unrelated change in force", func() error {
			st, err := m.statusErr()
			if err != nil {
				return err
			}
			if st.Version == seen {
				return fmt.Errorf("config version %d unchanged", st.Version)
			}
			return nil
		})
		unchanged(t, "ingressgateway", rolled["ingressgateway"])
		if !hasProblem(m.status(t), problem...) {
			t.Errorf("the gateway's failed restart is no longer reported: %v", m.status(t).Problems)
		}

		// Settings that start clear it.
		m.apply(t, gatewayProxyConfig(1, `WEFT_E2E_MARK: "gateway-1"`), "")
		fixed := restarted(t, "ingressgateway", rolled["ingressgateway"])
		check(t, "ingressgateway", fixed["ingressgateway"], []string{"istio-system/mesh", "default/gateway"}, "1", "WEFT_E2E_MARK=gateway-1", 1)
		serves(t)
	})
}

// procStrings reads /proc/<pid>/<file>, a list of NUL-terminated strings
// (cmdline, environ).
func procStrings(t *testing.T, pid int, file string) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(bytes.TrimSuffix(data, []byte{0})), "\x00")
}
