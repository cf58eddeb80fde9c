package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft.dev/weft/internal/controlplane"
)

// SPIRE v1.13.3 (server and agent) is built from tools/spire, a module of
// its own, into bin/tools with go install, which relinks nothing when the
// binaries are up to date. `make test` builds them before the tests (6 to
// 10 minutes cold, with cgo for SQLite), so that the build does not count
// against the test binary's timeout; the flags here must stay those of the
// Makefile's spire target, or each run relinks.
var (
	spireOnce sync.Once
	spireBin  string
	spireErr  error
)

func spireBinaries(t *testing.T) string {
	t.Helper()
	spireOnce.Do(func() {
		dir, err := filepath.Abs("../../bin/tools")
		if err != nil {
			spireErr = err
			return
		}
		cmd := exec.Command("go", "install", "-ldflags=-s -w", "github.com/spiffe/spire/cmd/spire-server", "github.com/spiffe/spire/cmd/spire-agent")
		cmd.Dir = "../../tools/spire"
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			spireErr = fmt.Errorf("building SPIRE (tools/spire): %v\n%s", err, out)
			return
		}
		spireBin = dir
	})
	if spireErr != nil {
		t.Fatal(spireErr)
	}
	return spireBin
}

// spire is a SPIRE server and agent on loopback: the agent attests with
// a join token and serves the Workload API on a unix socket; its unix
// workload attestor tells workloads apart by their binary's path.
type spire struct {
	bin         string
	dir         string
	trustDomain string
	serverSock  string
	agentSock   string
	agentID     string // the parent of the workload entries
}

// startSPIRE runs spire-server and spire-agent for trustDomain, each
// stopped at the end of the test.
func startSPIRE(t *testing.T, trustDomain string) *spire {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end tests do not run with -short")
	}
	s := &spire{bin: spireBinaries(t), dir: t.TempDir(), trustDomain: trustDomain, agentID: "spiffe://" + trustDomain + "/weft-e2e-agent"}
	s.serverSock, s.agentSock = filepath.Join(s.dir, "server.sock"), filepath.Join(s.dir, "agent.sock")
	port := freePort(t)
	serverConf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "INFO"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = %q
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`, port, s.serverSock, trustDomain, filepath.Join(s.dir, "server"), filepath.Join(s.dir, "server", "datastore.sqlite3"))
	s.run(t, "spire-server", serverConf)
	waitFor(t, 60*time.Second, "spire-server healthy", func() error {
		_, err := s.cli("spire-server", "healthcheck", "-socketPath", s.serverSock)
		return err
	})
	out, err := s.cli("spire-server", "token", "generate", "-socketPath", s.serverSock, "-spiffeID", s.agentID, "-ttl", "600")
	token := strings.TrimSpace(strings.TrimPrefix(out, "Token:"))
	if err != nil || token == "" || strings.Contains(token, " ") {
		t.Fatalf("spire-server token generate: %v\n%s", err, out)
	}
	agentConf := fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
  join_token = %q
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
`, filepath.Join(s.dir, "agent"), port, s.agentSock, trustDomain, token)
	s.run(t, "spire-agent", agentConf)
	waitFor(t, 60*time.Second, "spire-agent healthy", func() error {
		_, err := s.cli("spire-agent", "healthcheck", "-socketPath", s.agentSock)
		return err
	})
	return s
}

// run starts a SPIRE program with its config; the test's end stops it.
func (s *spire) run(t *testing.T, prog, conf string) {
	t.Helper()
	path := filepath.Join(s.dir, prog+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(s.bin, prog), "run", "-config", path)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", prog, out.String())
		}
	})
}

// cli runs a SPIRE command line (healthcheck, token, entry) to its end.
func (s *spire) cli(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...).CombinedOutput()
	return string(out), err
}

// register creates a workload entry: the process running the program at
// path gets id, with SVIDs that live ttl.
func (s *spire) register(t *testing.T, id, path string, ttl time.Duration) {
	t.Helper()
	out, err := s.cli("spire-server", "entry", "create", "-socketPath", s.serverSock, "-parentID", s.agentID,
		"-spiffeID", id, "-selector", "unix:path:"+path, "-x509SVIDTTL", fmt.Sprint(int(ttl.Seconds())))
	if err != nil {
		t.Fatalf("spire-server entry create %s: %v\n%s", id, err, out)
	}
}

// spireMesh: three workloads of one demo app; backend allows only
// frontend's SPIFFE ID, under STRICT mTLS, in SPIRE's trust domain.
const spireMesh = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: backend, namespace: default}
spec:
  service: backend
  labels: {app: backend}
  serviceAccount: backend
  ports: [{name: http, number: 9080}]
  command: ["weft", "demo-app", "details", "--listen", "127.0.0.1:${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: default}
spec:
  service: frontend
  labels: {app: frontend}
  serviceAccount: frontend
  ports: [{name: http, number: 9080}]
  command: ["weft", "demo-app", "details", "--listen", "127.0.0.1:${PORT}"]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: intruder, namespace: default}
spec:
  service: intruder
  labels: {app: intruder}
  serviceAccount: intruder
  ports: [{name: http, number: 9080}]
  command: ["weft", "demo-app", "details", "--listen", "127.0.0.1:${PORT}"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-callers, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["example.org/ns/default/sa/frontend"]}
`

// sidecarCerts is a sidecar's admin /certs.
type sidecarCerts struct {
	SPIFFEID    string `json:"spiffe_id"`
	Serial      string `json:"serial"`
	Issuer      string `json:"issuer"`
	Source      string `json:"source"`
	SourceAddr  string `json:"source_addr"`
	TrustBundle []struct {
		Serial string `json:"serial"`
	} `json:"trust_bundle"`
}

func getCerts(admin string) (sidecarCerts, error) {
	var c sidecarCerts
	code, body, err := get("http://" + admin + "/certs")
	if err != nil {
		return c, err
	}
	if code != 200 {
		return c, fmt.Errorf("/certs: %d %s", code, body)
	}
	return c, json.Unmarshal([]byte(body), &c)
}

// TestSPIREIdentities runs a mesh whose sidecars get their identities
// from a real SPIRE agent (weft up --spiffe-socket): three sidecars, told
// apart by the agent's unix attestor by their own binary paths, get
// SVIDs with their SPIFFE IDs from SPIRE; they get their config over
// mTLS on the control plane's CA port (which trusts SPIRE's bundle, read
// through the Workload API); a request flows between two of them over
// mTLS, the server side sees the client's SPIRE-issued ID (an ALLOW by
// principal passes it, the third identity gets 403); SPIRE's rotation of
// 30 s SVIDs under load fails no request; and `weft ca status` says where
// identities come from. A sidecar or control plane in another trust
// domain than SPIRE's stops with an error naming both.
func TestSPIREIdentities(t *testing.T) {
	const td = "example.org"
	const ttl = 30 * time.Second
	sp := startSPIRE(t, td)
	socket := "unix://" + sp.agentSock
	cpID := "spiffe://" + td + "/ns/istio-system/sa/weft-controlplane"
	sp.register(t, cpID, filepath.Join(binDir, "weft"), time.Hour)
	// weft up runs each identity's sidecars from its own path in the
	// state folder; register them before it starts them.
	state := t.TempDir()
	sas := []string{"backend", "frontend", "intruder"}
	for _, sa := range sas {
		sp.register(t, fmt.Sprintf("spiffe://%s/ns/default/sa/%s", td, sa), filepath.Join(state, "spiffe", "default", sa, "weft-proxy"), ttl)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(spireMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMeshIn(t, state, dir, 0, "--trust-domain", td, "--spiffe-socket", socket, "--ca-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	byService := map[string]struct{ admin, outbound, inbound string }{}
	waitFor(t, 90*time.Second, "three sidecars ready with SPIRE identities", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		ready := 0
		for _, in := range st.Instances {
			if in.Ready {
				ready++
			}
			byService[in.Service] = struct{ admin, outbound, inbound string }{in.Sidecar, in.Outbound, in.Address}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 instances ready: %+v", ready, st.Instances)
		}
		return nil
	})

	// Each sidecar holds an SVID from SPIRE for its own SPIFFE ID, from its
	// own path, verified against SPIRE's bundle.
	var cas controlplane.CAStatus
	waitFor(t, 30*time.Second, "weft ca status with SPIRE's bundle", func() error {
		out, err := m.weft("", "ca", "status", "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &cas); err != nil {
			return err
		}
		if cas.Identity.ControlPlaneID == "" || len(cas.Identity.Bundle) == 0 {
			return fmt.Errorf("no SPIFFE bundle yet: %s", out)
		}
		return nil
	})
	if cas.Identity.Source != "spiffe" || cas.Identity.SPIFFESocket != socket || cas.Identity.ControlPlaneID != cpID || len(cas.Leaves) != 0 {
		t.Errorf("weft ca status: %+v, want source spiffe, socket %s, control plane %s, no leaf from the built-in CA", cas.Identity, socket, cpID)
	}
	spireRoots := map[string]bool{}
	for _, r := range cas.Identity.Bundle {
		spireRoots[r.Serial] = true
	}
	initial := map[string]string{}
	for _, sa := range sas {
		c, err := getCerts(byService[sa].admin)
		if err != nil {
			t.Fatalf("%s: %v", sa, err)
		}
		want := fmt.Sprintf("spiffe://%s/ns/default/sa/%s", td, sa)
		if c.SPIFFEID != want || c.Source != "spiffe" || c.SourceAddr != socket || len(c.TrustBundle) == 0 || !spireRoots[c.TrustBundle[0].Serial] {
			t.Errorf("%s /certs = %+v, want %s from %s with SPIRE's bundle %v", sa, c, want, socket, spireRoots)
		}
		initial[sa] = c.Serial
		pids := processesOf(filepath.Join(state, "spiffe", "default", sa))
		if len(pids) != 1 {
			t.Errorf("%s: processes running from its own path: %q, want its sidecar", sa, pids)
		}
	}
	table, err := m.weft("", "ca", "status")
	if err != nil || !strings.Contains(table, "issued by the SPIFFE Workload API at "+socket) || !strings.Contains(table, cpID) {
		t.Errorf("weft ca status: %v\n%s", err, table)
	}

	// frontend -> backend over mTLS: allowed by principal; intruder: 403.
	front := viaProxy(byService["frontend"].outbound)
	waitFor(t, 30*time.Second, "frontend -> backend", func() error {
		resp, err := front.Get("http://backend:9080/details/0")
		if err != nil {
			return err
		}
		body := readAll(resp)
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
		}
		return nil
	})
	resp, err := viaProxy(byService["intruder"].outbound).Get("http://backend:9080/details/0")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(resp); resp.StatusCode != 403 || strings.TrimSpace(body) != "RBAC: access denied" {
		t.Errorf("intruder -> backend: %d %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	_, metrics, err := get("http://" + byService["backend"].admin + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	// The server side records the client's SPIRE-issued ID from the
	// verified certificate.
	want := []string{`reporter="destination"`, `source_principal="spiffe://example.org/ns/default/sa/frontend"`,
		`destination_principal="spiffe://example.org/ns/default/sa/backend"`, `connection_security_policy="mutual_tls"`, `response_code="200"`}
	if !metricLine(metrics, "istio_requests_total{", want) {
		t.Errorf("backend's metrics have no istio_requests_total line with %v:\n%s", want, metricLines(metrics, "istio_requests_total{"))
	}

	// Load through frontend -> backend while SPIRE rotates both SVIDs:
	// no request may fail. Bounded: 4 workers, at most 90 s and 200000
	// requests.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := viaProxy(byService["frontend"].outbound)
			for sent.Load() < 200000 {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := c.Get("http://backend:9080/details/0")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("x-weft-response-flags"))
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	rotated := map[string]string{}
	deadline := time.Now().Add(90 * time.Second)
	for len(rotated) < 2 && time.Now().Before(deadline) {
		for _, sa := range []string{"frontend", "backend"} {
			if c, err := getCerts(byService[sa].admin); err == nil && c.Serial != initial[sa] {
				rotated[sa] = c.Serial
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(rotated) < 2 {
		t.Fatalf("SPIRE did not rotate both SVIDs (TTL %s) within 90 s: %v", ttl, rotated)
	}
	t.Logf("SPIRE rotation under load: %d requests, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 || sent.Load() < 100 {
		t.Errorf("%d of %d requests failed during SPIRE's rotation (first: %v)", failed.Load(), sent.Load(), firstErr.Load())
	}
	// New connections get the rotated certificate: backend's inbound
	// listener presents the SVID /certs shows.
	waitFor(t, 30*time.Second, "backend presents its current SVID", func() error {
		c, err := getCerts(byService["backend"].admin)
		if err != nil {
			return err
		}
		var presented *big.Int
		conn, err := tls.Dial("tcp", byService["backend"].inbound, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"},
			VerifyConnection: func(cs tls.ConnectionState) error {
				presented = cs.PeerCertificates[0].SerialNumber
				return nil
			}})
		if conn != nil {
			conn.Close()
		}
		if presented == nil {
			return fmt.Errorf("no certificate presented: %v", err)
		}
		if presented.Text(16) != c.Serial {
			return fmt.Errorf("presented serial %s, /certs says %s", presented.Text(16), c.Serial)
		}
		if c.Serial == initial["backend"] {
			return errors.New("backend still holds its first SVID")
		}
		return nil
	})

	t.Run("sidecar in another trust domain", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "weft-proxy")
		copyFile(t, filepath.Join(binDir, "weft-proxy"), path)
		sp.register(t, "spiffe://"+td+"/ns/default/sa/elsewhere", path, ttl)
		out, err := runBounded(t, path, "--spiffe-socket", socket, "--trust-domain", "cluster.local", "--service-account", "elsewhere",
			"--name", "elsewhere", "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:1")
		if err == nil || !strings.Contains(out, "trust domain mismatch") || !strings.Contains(out, `\"example.org\"`) || !strings.Contains(out, `\"cluster.local\"`) {
			t.Errorf("weft-proxy in trust domain cluster.local: %v, want an error naming example.org and cluster.local:\n%s", err, out)
		}
	})
	t.Run("control plane in another trust domain", func(t *testing.T) {
		out, err := runBounded(t, filepath.Join(binDir, "weft"), "controlplane", "--config", t.TempDir(), "--ca-dir", t.TempDir(),
			"--ca-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--spiffe-socket", socket, "--trust-domain", "cluster.local")
		if err == nil || !strings.Contains(out, "trust domain mismatch") || !strings.Contains(out, `"example.org"`) || !strings.Contains(out, `"cluster.local"`) {
			t.Errorf("weft controlplane in trust domain cluster.local: %v, want an error naming example.org and cluster.local:\n%s", err, out)
		}
	})
}

// metricLine reports whether a Prometheus page has a line of the metric
// with every label given.
func metricLine(page, prefix string, labels []string) bool {
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			return true
		}
	}
	return false
}

// metricLines are a Prometheus page's lines of one metric.
func metricLines(page, prefix string) string {
	var out []string
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// runBounded runs a program to its end, at most a minute, and returns its
// output.
func runBounded(t *testing.T, prog string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not stop within a minute:\n%s", prog, b.String())
	}
	return b.String(), err
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}
