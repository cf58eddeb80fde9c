package app_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// Transparent capture is tested with real iptables in a network namespace
// of its own. The test re-runs its own binary three ways:
//
//	go test            TestTransparentCapture: makes the namespace, runs
//	                   the scenario inside it, removes it
//	  ip netns exec    the scenario (root): backends, fake control plane,
//	                   iptables rules, plain clients
//	    uid 1337       TestTransparentCaptureProxyHelper: the proxy, whose
//	                   uid the OUTPUT rule exempts so it is not captured
const (
	captureHelperEnv = "WEFT_CAPTURE_HELPER" // "scenario" or "proxy"
	captureBinEnv    = "WEFT_CAPTURE_BIN"    // the test binary, readable by the proxy's uid
	captureArgsEnv   = "WEFT_CAPTURE_ARGS"   // the proxy's flags
	captureProxyUID  = 1337                  // as Istio's sidecar
	captureOutbound  = 15001
	captureNodeID    = "sidecar~127.0.0.1~capture-0.default~default.svc.cluster.local"
)

func TestTransparentCapture(t *testing.T) {
	if os.Getenv(captureHelperEnv) == "scenario" {
		captureScenario(t)
		return
	}
	runInNamespace(t, "TestTransparentCapture", "scenario")
}

// runInNamespace re-runs the test binary's test named test as root in a
// network namespace of its own, with captureHelperEnv set to scenario,
// and removes the namespace afterwards.
func runInNamespace(t *testing.T, test, scenario string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, ip and iptables; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("transparent capture needs root (network namespaces and iptables); run the tests as root or with -short")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install it (apt-get install -y iproute2 iptables) or run with -short", bin)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ns := "weft-test-" + randomHex(4)
	runCmd(t, ctx, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if out, err := exec.CommandContext(cctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("removing namespace %s: %v: %s", ns, err, out)
		}
	})
	runCmd(t, ctx, "ip", "-n", ns, "link", "set", "lo", "up")

	// The test binary's own folder is private to root: copy it where the
	// proxy's uid can run it.
	dir, err := os.MkdirTemp("", "weft-capture-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "capture.test")
	copyFile(t, self, bin, 0o755)

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin,
		"-test.run=^"+test+"$", "-test.v", "-test.timeout=100s")
	cmd.Env = append(os.Environ(), captureHelperEnv+"="+scenario, captureBinEnv+"="+bin)
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scenario in namespace %s failed: %v\n%s", ns, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("scenario did not pass:\n%s", out)
	}
	t.Logf("scenario output:\n%s", out)
}

// TestTransparentCaptureProxyHelper is the proxy of TestTransparentCapture,
// run as another uid; it does nothing on its own.
func TestTransparentCaptureProxyHelper(t *testing.T) {
	if os.Getenv(captureHelperEnv) != "proxy" {
		t.Skip("helper process of TestTransparentCapture")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if code := app.Main(ctx, strings.Fields(os.Getenv(captureArgsEnv)), os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("proxy exited with %d", code)
	}
}

// captureScenario runs inside the namespace, as root.
func captureScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// Backends. 127.0.0.2:8080 is a decoy: the route for port 8080 sends
	// its requests to the "web" cluster on 127.0.0.3:8080 instead.
	startHTTPBackend(t, "127.0.0.2:8080", "decoy")
	startHTTPBackend(t, "127.0.0.3:8080", "web")
	startHTTPBackend(t, "127.0.0.7:8080", "unrouted-host")
	startHTTPBackend(t, "127.0.0.6:8081", "unknown-http")
	startEcho(t, "127.0.0.4:9000", "")
	startEcho(t, "127.0.0.8:9100", "")
	startEcho(t, "127.0.0.5:2525", "220 weft-test ESMTP\r\n") // server speaks first

	cp := proxytest.StartControlPlane(t)
	outbound := proxytest.Listener(xdsmeta.ListenerOutbound, fmt.Sprintf("127.0.0.1:%d", captureOutbound),
		proxytest.Chain{Port: 8080, Filter: proxytest.HCMRDS("8080")},
		proxytest.Chain{Port: 9000, ServerNames: []string{"echo"}, Prefixes: []string{"127.0.0.4/32"}, Filter: proxytest.TCPProxy("echo")},
	)
	outbound.UseOriginalDst = wrapperspb.Bool(true)
	outbound.DefaultFilterChain = &listenerv3.FilterChain{Name: xdsmeta.ClusterPassthrough, Filters: []*listenerv3.Filter{proxytest.TCPProxy(xdsmeta.ClusterPassthrough)}}
	webRoute := proxytest.PrefixRoute("/", "web")
	webRoute.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-weft-route", Value: "web"}}}
	cp.Set(t, captureNodeID,
		outbound,
		proxytest.RouteConfig("8080", proxytest.VirtualHost("web:8080", []string{"web", "web:8080", "127.0.0.2", "127.0.0.2:8080"}, webRoute)),
		proxytest.StaticCluster("web", "127.0.0.3:8080"),
		proxytest.StaticCluster("echo", "127.0.0.4:9000"),
		&clusterv3.Cluster{
			Name:                 xdsmeta.ClusterPassthrough,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			ConnectTimeout:       durationpb.New(time.Second),
		},
	)

	logs := startCaptureProxy(t, ctx, cp.Addr)

	// Capture everything but the proxy's own traffic and loopback's
	// 127.0.0.1 (the control plane and the admin API).
	runCmd(t, ctx, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.1/32",
		"-m", "owner", "!", "--uid-owner", fmt.Sprint(captureProxyUID),
		"-j", "REDIRECT", "--to-ports", fmt.Sprint(captureOutbound))

	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	get := func(t *testing.T, url string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v\nproxy logs:\n%s", url, err, logs.String())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	t.Run("http routed by the route config", func(t *testing.T) {
		resp, body := get(t, "http://127.0.0.2:8080/hello")
		if body != "web" || resp.Header.Get("X-Seen-Route") != "web" {
			t.Fatalf("got %d %q (x-seen-route %q), want the web cluster with the route's header: the request was not captured and routed\nproxy logs:\n%s",
				resp.StatusCode, body, resp.Header.Get("X-Seen-Route"), logs.String())
		}
	})
	t.Run("http host without a virtual host passes through", func(t *testing.T) {
		if _, body := get(t, "http://127.0.0.7:8080/"); body != "unrouted-host" {
			t.Fatalf("got %q, want unrouted-host", body)
		}
	})
	t.Run("http to an undeclared port is detected and passes through", func(t *testing.T) {
		if _, body := get(t, "http://127.0.0.6:8081/"); body != "unknown-http" {
			t.Fatalf("got %q, want unknown-http", body)
		}
	})
	t.Run("tcp chain", func(t *testing.T) { echoRoundTrip(t, "127.0.0.4:9000", "") })
	t.Run("tcp to an undeclared port passes through", func(t *testing.T) { echoRoundTrip(t, "127.0.0.8:9100", "") })
	t.Run("server speaks first", func(t *testing.T) { echoRoundTrip(t, "127.0.0.5:2525", "220 weft-test ESMTP\r\n") })
	t.Run("CONNECT through HTTP_PROXY to an undeclared destination passes through", func(t *testing.T) {
		status, c := connectThrough(t, fmt.Sprintf("127.0.0.1:%d", captureOutbound), "127.0.0.8:9100")
		if !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Fatalf("CONNECT answered %q; want 200", status)
		}
		if _, err := io.WriteString(c, "tunnel\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "tunnel\n" {
			t.Fatalf("echo through the tunnel = %q, %v", got, err)
		}
	})

	// Every connection went through the proxy: its access log names the
	// cluster of each.
	for _, want := range []string{
		`"upstream_host":"127.0.0.3:8080","upstream_cluster":"web"`,
		`"upstream_host":"127.0.0.7:8080","upstream_cluster":"PassthroughCluster"`,
		`"upstream_host":"127.0.0.6:8081","upstream_cluster":"PassthroughCluster"`,
		`"upstream_host":"127.0.0.4:9000","upstream_cluster":"echo"`,
		`"upstream_host":"127.0.0.8:9100","upstream_cluster":"PassthroughCluster"`,
		`"upstream_host":"127.0.0.5:2525","upstream_cluster":"PassthroughCluster"`,
	} {
		proxytest.Eventually(t, 5*time.Second, "access log entry "+want, func() bool { return strings.Contains(logs.String(), want) })
	}
}

// startCaptureProxy runs the proxy as captureProxyUID and waits until it
// is ready; it returns its output (logs and access log).
func startCaptureProxy(t *testing.T, ctx context.Context, xdsAddr string) *proxytest.SyncBuffer {
	t.Helper()
	return startCaptureProxyArgs(t, ctx, fmt.Sprintf("--xds-addr=%s --node-id=%s --name=capture-0 --admin-addr=127.0.0.1:15000 --access-log=- --drain-timeout=1s --interception-mode=REDIRECT", xdsAddr, captureNodeID))
}

// startCaptureProxyArgs is startCaptureProxy with the proxy's flags.
func startCaptureProxyArgs(t *testing.T, ctx context.Context, args string) *proxytest.SyncBuffer {
	t.Helper()
	bin := os.Getenv(captureBinEnv)
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestTransparentCaptureProxyHelper$", "-test.v")
	cmd.Env = append(os.Environ(), captureHelperEnv+"=proxy", captureArgsEnv+"="+args)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: captureProxyUID, Gid: captureProxyUID},
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	logs := &proxytest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the proxy as uid %d: %v", captureProxyUID, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:15000/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return logs
			}
		}
		select {
		case err := <-done:
			t.Fatalf("proxy exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not ready\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startHTTPBackend answers every request with name as the body and the
// request's x-weft-route header as X-Seen-Route.
func startHTTPBackend(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Route", r.Header.Get("X-Weft-Route"))
		_, _ = io.WriteString(w, name)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// startEcho echoes lines back, after writing banner (if any) on accept.
func startEcho(t *testing.T, addr, banner string) {
	t.Helper()
	serveTCP(t, addr, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if banner != "" {
			if _, err := io.WriteString(c, banner); err != nil {
				return
			}
		}
		_, _ = io.Copy(c, c)
	})
}

// echoRoundTrip dials addr, expects banner first when one is given, then
// checks a line comes back.
func echoRoundTrip(t *testing.T, addr, banner string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if banner != "" {
		got, err := br.ReadString('\n')
		if err != nil || got != banner {
			t.Fatalf("banner = %q, %v; want %q", got, err, banner)
		}
	}
	if _, err := io.WriteString(c, "ping weft\n"); err != nil {
		t.Fatal(err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != "ping weft\n" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

func runCmd(t *testing.T, ctx context.Context, name string, args ...string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(errors.Join(err, dst.Close()))
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
