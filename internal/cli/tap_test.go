package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/proxy/tap"
)

func TestFormatTapEvent(t *testing.T) {
	at := time.Date(2025, 1, 2, 15, 4, 5, 123e6, time.Local)
	pp := &tap.Endpoint{Workload: "productpage-v1"}
	rv := &tap.Endpoint{Workload: "reviews-v2", Service: "reviews.default.svc.cluster.local"}
	tests := []struct {
		name string
		e    tap.Event
		want string
	}{
		{"http", tap.Event{Kind: tap.KindHTTP, Time: at, Source: pp, Destination: rv, Method: "GET", Path: "/reviews/0", Status: 200, DurationMs: 3.14, ResponseFlags: "-", RequestID: "abc"},
			"15:04:05.123 productpage-v1 -> reviews-v2 GET /reviews/0 200 3.1ms flags=- req=abc"},
		{"failed with trace", tap.Event{Kind: tap.KindHTTP, Time: at, Source: pp, Destination: &tap.Endpoint{Workload: "unknown"}, Method: "POST", Path: "/x", Status: 503, DurationMs: 1500, ResponseFlags: "UF,URX", TraceID: "4bf9"},
			"15:04:05.123 productpage-v1 -> unknown POST /x 503 1.50s flags=UF,URX trace=4bf9"},
		{"tcp", tap.Event{Kind: tap.KindTCP, Time: at, Source: pp, Authority: "db:5432", BytesSent: 10, BytesReceived: 4, DurationMs: 0.25},
			"15:04:05.123 productpage-v1 -> unknown TCP db:5432 sent=10B received=4B 0.2ms flags=-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, formatTapEvent(&tc.e)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestPrintTapStopsAtMaxAndSendsNotesToStderr(t *testing.T) {
	in := strings.Join([]string{
		`{"kind":"http","time":"2025-01-02T15:04:05Z","method":"GET","path":"/a","status":200,"duration_ms":1}`,
		`{"kind":"note","time":"2025-01-02T15:04:05Z","proxy":"reviews-v1-0","note":"sidecar tap ended","error":"boom"}`,
		`{"kind":"http","time":"2025-01-02T15:04:05Z","method":"GET","path":"/b","status":200,"duration_ms":1,"dropped":3,"proxy":"p"}`,
		`{"kind":"http","time":"2025-01-02T15:04:05Z","method":"GET","path":"/c","status":200,"duration_ms":1}`,
	}, "\n") + "\n"
	var out, errOut bytes.Buffer
	if err := printTap(strings.NewReader(in), &out, &errOut, false, 2); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 || strings.Contains(out.String(), "/c") {
		t.Errorf("stdout:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "reviews-v1-0: sidecar tap ended boom") || !strings.Contains(errOut.String(), "3 events dropped") {
		t.Errorf("stderr:\n%s", errOut.String())
	}
	out.Reset()
	if err := printTap(strings.NewReader(in), &out, &errOut, true, 0); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 4 {
		t.Errorf("json output has %d lines, want 4 (notes included):\n%s", got, out.String())
	}
}
