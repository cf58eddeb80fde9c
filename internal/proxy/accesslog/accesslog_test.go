package accesslog_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"weft.dev/weft/internal/proxy/accesslog"
)

func TestLoggerWritesJSONLines(t *testing.T) {
	defer goleak.VerifyNone(t)
	var buf bytes.Buffer
	l := accesslog.New(&buf, 16)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Log(&accesslog.Entry{Start: start, Method: "GET", Authority: "reviews:9080", Path: "/x?\"q\"", Protocol: "HTTP/1.1", Code: 503,
		Flags: "UF,URX", Duration: 12 * time.Millisecond, UpstreamCluster: "outbound|9080||reviews", RequestID: "id",
		Source:      accesslog.Peer{Workload: "productpage-v1", Namespace: "default", Principal: "spiffe://cluster.local/ns/default/sa/productpage"},
		Destination: accesslog.Peer{Workload: "unknown", Namespace: "unknown"}})
	l.Close()
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{
		"start_time": "2026-01-02T03:04:05Z", "method": "GET", "authority": "reviews:9080", "path": `/x?"q"`, "protocol": "HTTP/1.1",
		"response_code": 503.0, "response_flags": "UF,URX", "bytes_received": 0.0, "bytes_sent": 0.0, "duration_ms": 12.0,
		"upstream_host": "", "upstream_cluster": "outbound|9080||reviews", "request_id": "id",
		"source_workload": "productpage-v1", "source_namespace": "default", "source_principal": "spiffe://cluster.local/ns/default/sa/productpage",
		"destination_workload": "unknown", "destination_namespace": "unknown",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
}

func FuzzAppendIsJSON(f *testing.F) {
	f.Add("GET", "/a\x00b\"\\\xff", "h\u2028")
	f.Fuzz(func(t *testing.T, method, path, authority string) {
		b := accesslog.Append(nil, &accesslog.Entry{Method: method, Path: path, Authority: authority})
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if utf8.ValidString(path) && got["path"] != path {
			t.Errorf("path %q came back as %q", path, got["path"])
		}
		if !strings.HasSuffix(string(b), "}\n") {
			t.Errorf("no newline")
		}
	})
}
