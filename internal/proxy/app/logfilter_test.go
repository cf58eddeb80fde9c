package app_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// httpLogsToFile points the access log of every HTTP connection manager
// in the listeners at path, keeping its filter, and returns how many of
// them carried the translation's filtered stdout logger.
func httpLogsToFile(t testing.TB, msgs []proto.Message, path string) int {
	t.Helper()
	n := 0
	rewriteFilters(msgs, func() *hcmv3.HttpConnectionManager { return &hcmv3.HttpConnectionManager{} }, func(l *listenerv3.Listener, h *hcmv3.HttpConnectionManager) {
		if len(h.GetAccessLog()) != 1 || h.GetAccessLog()[0].GetName() != xdstranslate.StdoutAccessLogName {
			t.Fatalf("listener %s: access logs %v, want the translation's %s", l.GetName(), h.GetAccessLog(), xdstranslate.StdoutAccessLogName)
		}
		filter := h.GetAccessLog()[0].GetFilter()
		if filter != nil {
			n++
		}
		h.AccessLog = fileLog(path)
		h.AccessLog[0].Filter = filter
	})
	return n
}

// TestAccessLogFilterThroughGateway: a Telemetry logs only what its CEL
// filter selects: failures that are not health checks, and slow
// requests. The gateway's config is the control plane's translation; its
// access log is a file. Requests of every kind go through the gateway,
// and the log holds exactly the selected ones, in order.
func TestAccessLogFilterThroughGateway(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code == 0 {
			code = 200
		}
		w.WriteHeader(code)
		io.WriteString(w, "done")
	}))
	t.Cleanup(backend.Close)
	snap := meshModel(t, "logfilter.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(backend))+
		shopVirtualService+`  - route: [{destination: {host: shop.default.svc.cluster.local}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter:
      expression: (response.code >= 500 && !request.url_path.startsWith('/healthz')) || request.duration >= duration('300ms') || request.headers['x-debug'] == 'on'
`)
	path := filepath.Join(t.TempDir(), "access.log")
	msgs := gatewayConfig(t, snap)
	if n := httpLogsToFile(t, msgs, path); n == 0 {
		t.Fatal("the translation's access log has no filter")
	}
	cp := proxytest.StartControlPlane(t)
	gw := proxytest.StartProxy(t, cp, "ingressgateway", proxytest.ProxyOptions{Type: xdsmeta.ProxyTypeGateway, ConfigAccessLogs: true})
	cp.Set(t, gw.NodeID(), msgs...)
	gw.WaitReady(t)
	if logs := gw.Logs.String(); strings.Contains(logs, "not enforced") {
		t.Fatalf("the gateway does not enforce all of its config:\n%s", logs)
	}

	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	requests := []struct {
		target string
		debug  bool
		logged bool
	}{
		{"/products", false, false},
		{"/products?code=503", false, true},
		{"/healthz?code=503", false, false},
		{"/products?code=404", false, false},
		{"/products?sleep=350ms", false, true},
		{"/products?code=500", false, true},
		{"/about", true, true},
		{"/healthz", false, false},
	}
	var want []string
	for _, r := range requests {
		req, _ := http.NewRequest("GET", base+r.target, nil)
		if r.debug {
			req.Header.Set("X-Debug", "on")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r.logged {
			want = append(want, r.target)
		}
	}
	// The last request is logged, so once it is there every earlier one
	// has been written or left out.
	sentinel := "/products?code=502&last=1"
	resp, err := http.Get(base + sentinel)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want = append(want, sentinel)
	var got []string
	proxytest.Eventually(t, 10*time.Second, "the last request in the access log", func() bool {
		got = logPaths(t, path)
		return slices.Contains(got, sentinel)
	})
	if !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// logPaths returns the path of every line of a JSON access log file.
func logPaths(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v: %s", path, err, sc.Text())
		}
		p, _ := e["path"].(string)
		out = append(out, p)
	}
	return out
}
