package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeLines(t *testing.T, w *rotatingLog, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := w.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
}

func access(code int, flags, trace string) string {
	return fmt.Sprintf(`{"start_time":"2026-11-26T07:00:00Z","method":"GET","authority":"reviews:9080","path":"/reviews/0","protocol":"HTTP/1.1","response_code":%d,"response_flags":%q,"bytes_received":0,"bytes_sent":10,"duration_ms":3,"upstream_host":"127.0.0.1:1","upstream_cluster":"outbound|9080|v1|reviews.default.svc.cluster.local","request_id":"r1","trace_id":%q}`, code, flags, trace)
}

// tcpAccess is a TCP connection's access log line.
func tcpAccess(flags string) string {
	return fmt.Sprintf(`{"start_time":"2026-11-26T07:00:00Z","method":"","authority":"","path":"","protocol":"TCP","response_code":0,"response_flags":%q,"bytes_received":12,"bytes_sent":34,"duration_ms":5,"upstream_host":"127.0.0.1:2","upstream_cluster":"inbound|9000||","request_id":"","source_workload":"unknown","destination_workload":"reviews-v2"}`, flags)
}

func TestSearchLogs(t *testing.T) {
	state := t.TempDir()
	app, err := newRotatingLog(filepath.Join(logDir(state), "default", "reviews-v2-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := newRotatingLog(filepath.Join(logDir(state), "default", "reviews-v2-0.proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := newRotatingLog(filepath.Join(logDir(state), "default", "ratings-v1-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, app, "GET /reviews/0 200 trace=4bf92f35")
	writeLines(t, proxy, access(200, "-", "aaaa"), access(503, "UF", "4bf92f35"), "time=x level=INFO msg=ready", tcpAccess("-"), tcpAccess("UC"))
	writeLines(t, other, "GET /ratings/0 200")
	for _, w := range []*rotatingLog{app, proxy, other} {
		w.Close()
	}

	tests := []struct {
		name string
		q    LogQuery
		want []string // instance | start of text
	}{
		{name: "everything", q: LogQuery{}, want: []string{
			"reviews-v2-0 | GET /reviews/0 200", "reviews-v2-0.proxy | access GET reviews:9080/reviews/0 200",
			"reviews-v2-0.proxy | access GET reviews:9080/reviews/0 503 UF", "reviews-v2-0.proxy | time=x", "ratings-v1-0 | GET /ratings/0",
			"reviews-v2-0.proxy | access TCP - - 5ms received=12 sent=34 upstream_cluster=inbound|9000|| upstream_host=127.0.0.1:2",
			"reviews-v2-0.proxy | access TCP - UC 5ms received=12 sent=34"}},
		// TCP lines have no status: a status filter never shows them, not
		// even one for the 0 they carry.
		{name: "status 0", q: LogQuery{Status: "0"}, want: nil},
		{name: "5xx", q: LogQuery{Status: "5xx"}, want: []string{"reviews-v2-0.proxy | access GET reviews:9080/reviews/0 503 UF"}},
		{name: "exact code", q: LogQuery{Status: "200"}, want: []string{"reviews-v2-0.proxy | access GET reviews:9080/reviews/0 200"}},
		{name: "trace", q: LogQuery{Trace: "4bf92f35"}, want: []string{"reviews-v2-0 | GET /reviews/0 200", "reviews-v2-0.proxy | access GET reviews:9080/reviews/0 503 UF"}},
		{name: "instance", q: LogQuery{Instances: map[string]bool{"ratings-v1-0": true}}, want: []string{"ratings-v1-0 | GET /ratings/0"}},
		{name: "since the future", q: LogQuery{Since: time.Now().Add(time.Hour)}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.StateDir = state
			var out bytes.Buffer
			if err := SearchLogs(context.Background(), tc.q, &out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if l == "" {
					continue
				}
				_, rest, _ := strings.Cut(l, " ") // drop the time
				got = append(got, rest)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tc.want), out.String())
			}
			// Lines written in the same instant may come in either order.
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("no line starting %q in:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestRotatingLogKeepsSizeBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "default", "noisy.log")
	w, err := newRotatingLog(path)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 64<<10)
	for range 3 * logMaxSize / len(line) {
		writeLines(t, w, line)
	}
	w.Close()
	var names []string
	var total int64
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		fi, _ := e.Info()
		names = append(names, e.Name())
		total += fi.Size()
		if fi.Size() > logMaxSize {
			t.Errorf("%s is %d bytes, over the %d limit", e.Name(), fi.Size(), logMaxSize)
		}
	}
	if diff := cmp.Diff([]string{"noisy.log", "noisy.log.1", "noisy.log.2"}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if total > (logKeep+1)*logMaxSize {
		t.Errorf("%d bytes kept, over %d", total, (logKeep+1)*logMaxSize)
	}
}
