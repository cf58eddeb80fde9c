package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jaegerConfig runs Jaeger v2 all-in-one with in-memory storage, an OTLP
// gRPC receiver and the query API, every port on loopback (Jaeger's
// defaults bind its query ports on all interfaces), and without its own
// telemetry endpoints.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// startJaeger runs Jaeger and returns its OTLP/gRPC and query addresses.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	otlp = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	query = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	queryGRPC := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, query, queryGRPC, otlp)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "jaeger"), "--config", cfg)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("jaeger output:\n%s", out.String())
		}
	})
	waitFor(t, 30*time.Second, "Jaeger's query API", func() error {
		code, _, err := get("http://" + query + "/api/services")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	return otlp, query
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	service string
}

func (s *jaegerSpan) tag(k string) string {
	for _, t := range s.Tags {
		if t.Key == k {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

func (s *jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s *jaegerSpan) String() string {
	return fmt.Sprintf("%s %s %q (%s, parent %s)", s.service, s.tag("span.kind"), s.OperationName, s.SpanID, s.parent())
}

func jaegerTrace(query, id string) ([]*jaegerSpan, error) {
	resp, err := client.Get("http://" + query + "/api/traces/" + id)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var res struct {
		Data []struct {
			Spans     []*jaegerSpan `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, err
	}
	var out []*jaegerSpan
	for _, d := range res.Data {
		for _, s := range d.Spans {
			s.service = d.Processes[s.ProcessID].ServiceName
			out = append(out, s)
		}
	}
	return out, nil
}

// One product page request with "end-user: jason" and a known W3C
// traceparent, through `weft up --tracing-endpoint` with the demo (its
// Telemetry traces 100 %), is read back from a real Jaeger as one trace
// with the ID sent: gateway (client) -> productpage sidecar (server) ->
// productpage sidecar (client) -> reviews-v3 sidecar (server) -> its
// client span -> ratings sidecar (server), each the child of the one
// before, the gateway's the child of the caller's span.
func TestTracingToJaeger(t *testing.T) {
	if binDir == "" {
		t.Skip("end-to-end tests do not run with -short")
	}
	otlp, query := startJaeger(t)
	ingress := freePort(t)
	startMesh(t, copyDemo(t, ingress), ingress, "--tracing-endpoint", otlp, "--no-traffic")
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 60*time.Second, "the product page", func() error {
		code, _, err := get(page)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})

	var id [16]byte
	_, _ = rand.Read(id[:])
	traceID := hex.EncodeToString(id[:])
	const callerSpan = "00f067aa0ba902b7"
	code, body, err := get(page, "end-user", "jason", "traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	if err != nil || code != 200 {
		t.Fatalf("product page as jason: %d %v\n%s", code, err, body)
	}

	type hop struct{ service, kind, op string }
	chain := []hop{
		{"ingressgateway", "client", "productpage.default.svc.cluster.local:9080/*"},
		{"productpage-v1", "server", "productpage.default.svc.cluster.local:9080/*"},
		{"productpage-v1", "client", "reviews.default.svc.cluster.local:9080/*"},
		{"reviews-v3", "server", "reviews.default.svc.cluster.local:9080/*"},
		{"reviews-v3", "client", "ratings.default.svc.cluster.local:9080/*"},
		{"ratings-v1", "server", "ratings.default.svc.cluster.local:9080/*"},
	}
	var spans []*jaegerSpan
	var found []*jaegerSpan
	waitFor(t, 30*time.Second, "the trace in Jaeger", func() error {
		var err error
		if spans, err = jaegerTrace(query, traceID); err != nil {
			return err
		}
		found = found[:0]
		for _, h := range chain {
			var match *jaegerSpan
			for _, s := range spans {
				if s.service == h.service && s.tag("span.kind") == h.kind && s.OperationName == h.op {
					match = s
				}
			}
			if match == nil {
				return fmt.Errorf("no %s span of %s for %s among %d spans: %v", h.kind, h.service, h.op, len(spans), spans)
			}
			found = append(found, match)
		}
		return nil
	})
	want := callerSpan
	for i, s := range found {
		if s.TraceID != traceID {
			t.Errorf("%v: trace ID %s, want the one sent, %s", s, s.TraceID, traceID)
		}
		if s.parent() != want {
			t.Errorf("hop %d %v: parent %s, want %s", i, s, s.parent(), want)
		}
		want = s.SpanID
	}
	if g := found[0]; g.tag("http.method") != "GET" || g.tag("http.status_code") != "200" || !strings.HasPrefix(g.tag("upstream_cluster"), "outbound|9080||productpage") {
		t.Errorf("gateway span tags: %+v", g.Tags)
	}
	if t.Failed() {
		for _, s := range spans {
			t.Log(s)
		}
	}
}
