package app_test

// Interop tests: the real curl and h2load binaries (Debian packages curl
// and nghttp2-client) in front of Weft sidecars and a gateway. They fail
// when a tool is missing, except under -short, where they skip.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/mccutchen/go-httpbin/v2/httpbin"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// toolTimeout bounds every run of an external tool.
const toolTimeout = 60 * time.Second

// needTool returns the path of an interop tool, failing the test (or
// skipping it under -short) when it is not installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if testing.Short() {
		t.Skipf("%s not installed (apt-get install -y curl nghttp2-client); skipped under -short", name)
	}
	t.Fatalf("%s not installed: run apt-get install -y curl nghttp2-client", name)
	return ""
}

// runTool runs an external tool with a clean environment (no proxy
// variables, no user config) and returns its stdout and stderr.
func runTool(t *testing.T, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := needTool(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// curlResult is what one curl run received.
type curlResult struct {
	code       int         // final response's status
	connect    int         // the CONNECT response's status, 0 without a tunnel
	version    string      // HTTP version of the final response: "1.1", "2"
	header     http.Header // final response's headers
	rawHeaders string      // every header block, 1xx and CONNECT included
	body       string
	verbose    string // stderr (the -v trace when asked for)
}

// curl runs curl with args and parses what it received.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	dir := t.TempDir()
	hdrFile, bodyFile := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	full := append([]string{"-q", "-sS", "--max-time", "30", "-o", bodyFile, "-D", hdrFile,
		"-w", "%{http_code} %{http_connect} %{http_version}"}, args...)
	stdout, stderr := runTool(t, "curl", full...)
	var res curlResult
	res.verbose = stderr
	f := strings.Fields(stdout)
	if len(f) != 3 {
		t.Fatalf("curl -w output %q", stdout)
	}
	res.code, _ = strconv.Atoi(f[0])
	res.connect, _ = strconv.Atoi(f[1])
	res.version = f[2]
	hb, err := os.ReadFile(hdrFile)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(bodyFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	res.rawHeaders, res.body = string(hb), string(bb)
	blocks := strings.Split(strings.TrimRight(res.rawHeaders, "\r\n"), "\r\n\r\n")
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(blocks[len(blocks)-1] + "\r\n\r\n")))
	if _, err := tp.ReadLine(); err != nil {
		t.Fatalf("status line in %q: %v", res.rawHeaders, err)
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("headers in %q: %v", res.rawHeaders, err)
	}
	res.header = http.Header(mh)
	return res
}

// httpbinReply is the part of go-httpbin's JSON reply the tests read.
type httpbinReply struct {
	URL     string              `json:"url"`
	Data    string              `json:"data"`
	Headers map[string][]string `json:"headers"`
}

func parseHTTPBin(t *testing.T, body string) httpbinReply {
	t.Helper()
	var r httpbinReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("httpbin reply %.200q: %v", body, err)
	}
	return r
}

// writeFile writes n bytes of text to a file in a temporary folder.
func writeFile(t *testing.T, n int) (path, content string) {
	t.Helper()
	line := "weft interop payload 0123456789 abcdefghijklmnopqrstuvwxyz\n"
	content = strings.Repeat(line, n/len(line)+1)[:n]
	path = filepath.Join(t.TempDir(), "payload.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, content
}

// TestInteropCurlThroughSidecars sends the real curl through an outbound
// sidecar (HTTP proxy mode and CONNECT) and an inbound sidecar to
// go-httpbin.
func TestInteropCurlThroughSidecars(t *testing.T) {
	needTool(t, "curl")
	bin := httpbin.New(httpbin.WithMaxBodySize(16 << 20)).Handler()
	// The app tells how the request body reached it after both hops.
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) > 0 {
			w.Header().Set("X-App-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		}
		bin.ServeHTTP(w, r)
	})
	m := startMesh(t, app)
	outbound := m.client.ListenerAddr(t, xdsmeta.ListenerOutbound)

	// A second service on the same port whose only endpoint refuses
	// connections.
	broken := "outbound|8000||broken.default.svc.cluster.local"
	m.cp.Set(t, m.client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: svcPort, Filter: proxytest.HCMRDS("8000")}),
		proxytest.RouteConfig("8000",
			proxytest.VirtualHost(svcFQDN+":8000", domains("httpbin", svcPort), proxytest.PrefixRoute("/", svcCluster)),
			proxytest.VirtualHost("broken.default.svc.cluster.local:8000", domains("broken", svcPort), proxytest.PrefixRoute("/", broken))),
		proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN),
		proxytest.CLA(svcCluster, m.inbound),
		proxytest.StaticCluster(broken, "127.0.0.1:1"),
	)
	c := m.client.HTTPClient(t)
	proxytest.Eventually(t, 10*time.Second, "route to broken applied", func() bool {
		resp, err := c.Get("http://broken:8000/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	url := "http://" + svcFQDN + ":8000"

	t.Run("proxy mode absolute form", func(t *testing.T) {
		r := curl(t, "-x", "http://"+outbound, url+"/get?q=curl")
		if r.code != 200 || r.version != "1.1" {
			t.Fatalf("got %d over HTTP/%s: %s", r.code, r.version, r.body)
		}
		got := parseHTTPBin(t, r.body)
		if got.URL != url+"/get?q=curl" {
			t.Errorf("app saw url %q", got.URL)
		}
		if len(got.Headers["X-Request-Id"]) != 1 {
			t.Errorf("app got no x-request-id: %v", got.Headers)
		}
		if _, ok := got.Headers["Proxy-Connection"]; ok {
			t.Errorf("curl's Proxy-Connection reached the app")
		}
	})

	t.Run("connect tunnel", func(t *testing.T) {
		r := curl(t, "-p", "-x", "http://"+outbound, url+"/get")
		if r.connect != 200 || r.code != 200 {
			t.Fatalf("CONNECT %d, then %d: %s\nheaders:\n%s", r.connect, r.code, r.body, r.rawHeaders)
		}
		if got := parseHTTPBin(t, r.body); len(got.Headers["X-Request-Id"]) != 1 {
			t.Errorf("request in the tunnel did not go through the proxy's HTTP path: %v", got.Headers)
		}
	})

	t.Run("h2c inside a connect tunnel", func(t *testing.T) {
		r := curl(t, "-p", "-x", "http://"+outbound, "--http2-prior-knowledge", url+"/get")
		if r.connect != 200 || r.code != 200 || r.version != "2" {
			t.Fatalf("CONNECT %d, then %d over HTTP/%s, want 200 over HTTP/2: %s", r.connect, r.code, r.version, r.body)
		}
	})

	t.Run("h2c upgrade offer stays on the client's hop", func(t *testing.T) {
		// curl --http2 on http:// sends Upgrade: h2c and HTTP2-Settings.
		r := curl(t, "--http2", "-x", "http://"+outbound, url+"/get")
		if r.code != 200 || r.version != "1.1" {
			t.Fatalf("got %d over HTTP/%s, want 200 over HTTP/1.1: %s", r.code, r.version, r.body)
		}
		got := parseHTTPBin(t, r.body)
		for _, h := range []string{"Upgrade", "Http2-Settings"} {
			if v, ok := got.Headers[h]; ok {
				t.Errorf("app got %s: %v", h, v)
			}
		}
	})

	t.Run("keep-alive reuse in proxy mode and in a tunnel", func(t *testing.T) {
		for _, mode := range [][]string{{"-x", "http://" + outbound}, {"-p", "-x", "http://" + outbound}} {
			// Two URLs in one run: curl reuses its connection for the second.
			args := append([]string{"-q", "-sS", "-v", "--max-time", "30", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}\n"}, mode...)
			out, verbose := runTool(t, "curl", append(args, url+"/get", url+"/status/204")...)
			if got := strings.Fields(out); len(got) != 2 || got[0] != "200" || got[1] != "204" {
				t.Errorf("%v: codes %q, want 200 then 204", mode, out)
			}
			if !strings.Contains(verbose, "Re-using existing connection") {
				t.Errorf("%v: curl did not reuse its connection:\n%s", mode, verbose)
			}
		}
	})

	t.Run("chunked upload", func(t *testing.T) {
		path, content := writeFile(t, 300<<10)
		r := curl(t, "-x", "http://"+outbound, "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: text/plain",
			"--data-binary", "@"+path, url+"/post")
		if r.code != 200 {
			t.Fatalf("got %d: %.300s", r.code, r.body)
		}
		if got := parseHTTPBin(t, r.body); got.Data != content {
			t.Errorf("app got %d bytes, want the file's %d", len(got.Data), len(content))
		}
		if te := r.header.Get("X-App-Transfer-Encoding"); te != "chunked" {
			t.Errorf("app saw transfer-encoding %q, want chunked", te)
		}
	})

	t.Run("expect 100-continue with a 1.5 MiB file", func(t *testing.T) {
		path, content := writeFile(t, 3<<19)
		start := time.Now()
		// A long expect timeout: without a 100 from the proxy, curl would
		// wait it out, and the check on the elapsed time catches that.
		r := curl(t, "-v", "--expect100-timeout", "20", "-x", "http://"+outbound, "-H", "Expect: 100-continue",
			"-H", "Content-Type: text/plain", "--data-binary", "@"+path, url+"/post")
		if r.code != 200 {
			t.Fatalf("got %d: %.300s", r.code, r.body)
		}
		if !strings.Contains(r.rawHeaders, " 100 Continue") {
			t.Errorf("curl got no 100 Continue; headers:\n%s", r.rawHeaders)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("upload took %v: curl waited for its expect timeout", d)
		}
		if got := parseHTTPBin(t, r.body); got.Data != content {
			t.Errorf("app got %d bytes, want the file's %d", len(got.Data), len(content))
		}
	})

	t.Run("h2c prior knowledge to the inbound listener", func(t *testing.T) {
		r := curl(t, "--http2-prior-knowledge", "http://"+m.inbound+"/get")
		if r.code != 200 || r.version != "2" {
			t.Fatalf("got %d over HTTP/%s, want 200 over HTTP/2: %s", r.code, r.version, r.body)
		}
		if got := parseHTTPBin(t, r.body); len(got.Headers["X-Request-Id"]) != 1 {
			t.Errorf("app got no x-request-id: %v", got.Headers)
		}
	})

	t.Run("failing upstream", func(t *testing.T) {
		r := curl(t, "-x", "http://"+outbound, "http://broken.default.svc.cluster.local:8000/get")
		if r.code != 503 {
			t.Fatalf("got %d, want 503: %s", r.code, r.body)
		}
		if f := r.header.Get("X-Weft-Response-Flags"); f != "UF" {
			t.Errorf("x-weft-response-flags %q, want UF", f)
		}
		if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(r.body, "127.0.0.1:1") {
			t.Errorf("body %q (%s), want readable text naming the endpoint", r.body, r.header.Get("Content-Type"))
		}
	})
}

var (
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadCodes    = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2loadProto    = regexp.MustCompile(`Application protocol: (\S+)`)
)

// checkH2load checks that h2load's summary reports n requests, all
// succeeded with a 2xx, over the protocol proto.
func checkH2load(t *testing.T, out string, n int, proto string) {
	t.Helper()
	rq, codes, pr := h2loadRequests.FindStringSubmatch(out), h2loadCodes.FindStringSubmatch(out), h2loadProto.FindStringSubmatch(out)
	if rq == nil || codes == nil || pr == nil {
		t.Fatalf("h2load summary not found in:\n%s", out)
	}
	want := strconv.Itoa(n)
	if rq[1] != want || rq[4] != want || rq[5] != "0" || rq[6] != "0" || rq[7] != "0" {
		t.Errorf("h2load %s; want %s succeeded, 0 failed, 0 errored, 0 timeout\n%s", rq[0], want, out)
	}
	if codes[1] != want {
		t.Errorf("h2load %s; want %s 2xx\n%s", codes[0], want, out)
	}
	if pr[1] != proto {
		t.Errorf("h2load spoke %s, want %s", pr[1], proto)
	}
}

// TestInteropH2load runs h2load (h2c prior knowledge, and HTTP/1.1)
// against a sidecar's inbound listener and a gateway listener. h2load has
// no HTTP proxy support, so the outbound listener is exercised by curl and
// the Go clients instead; the gateway routes plain requests by Host.
func TestInteropH2load(t *testing.T) {
	needTool(t, "h2load")
	m := startMesh(t, nil)

	gw := proxytest.StartProxy(t, m.cp, "ingress", proxytest.ProxyOptions{Type: xdsmeta.ProxyTypeGateway})
	vh := proxytest.VirtualHost("shop", []string{"shop.example.com", "shop.example.com:*"}, proxytest.PrefixRoute("/", svcCluster))
	m.cp.Set(t, gw.NodeID(), []proto.Message{
		proxytest.Listener("0.0.0.0_8080", "127.0.0.1:0", proxytest.Chain{Filter: proxytest.HCMRDS(xdsmeta.GatewayRouteName(8080))}),
		proxytest.RouteConfig(xdsmeta.GatewayRouteName(8080), vh),
		proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN),
		proxytest.CLA(svcCluster, m.inbound),
	}...)
	gw.WaitReady(t)
	gateway := gw.ListenerAddr(t, "0.0.0.0_8080")

	// h2load's -H host adds a second Host header (HTTP/1.1) or a host
	// that differs from :authority (HTTP/2), both malformed requests;
	// -H :authority sets the one authority in either protocol.
	const n = 2000
	nArgs := []string{"-n", strconv.Itoa(n), "-c", "4", "-m", "8", "-T", "40"}
	t.Run("h2c to the inbound listener", func(t *testing.T) {
		out, _ := runTool(t, "h2load", append(nArgs, "http://"+m.inbound+"/get")...)
		checkH2load(t, out, n, "h2c")
	})
	t.Run("h2c to the gateway by host", func(t *testing.T) {
		out, _ := runTool(t, "h2load", append(nArgs, "-H", ":authority: shop.example.com", "http://"+gateway+"/get")...)
		checkH2load(t, out, n, "h2c")
	})
	t.Run("http/1.1 to the gateway by host", func(t *testing.T) {
		out, _ := runTool(t, "h2load", "--h1", "-n", strconv.Itoa(n), "-c", "4", "-T", "40", "-H", ":authority: shop.example.com", "http://"+gateway+"/get")
		checkH2load(t, out, n, "http/1.1")
	})
	t.Run("gateway unknown host is a 404", func(t *testing.T) {
		out, _ := runTool(t, "h2load", "-n", "10", "-c", "1", "-T", "40", "-H", ":authority: other.example.com", "http://"+gateway+"/get")
		if c := h2loadCodes.FindStringSubmatch(out); c == nil || c[3] != "10" {
			t.Errorf("want 10 4xx:\n%s", out)
		}
	})
}
