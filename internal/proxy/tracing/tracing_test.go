package tracing

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestExtract(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	const sid = "00f067aa0ba902b7"
	type want struct {
		trace            string
		decided, sampled bool
	}
	tests := []struct {
		name string
		h    http.Header
		want want
	}{
		{"none", hdr(), want{}},
		{"traceparent sampled", hdr("traceparent", "00-"+tid+"-"+sid+"-01"), want{tid, true, true}},
		{"traceparent not sampled", hdr("traceparent", "00-"+tid+"-"+sid+"-00"), want{tid, true, false}},
		{"traceparent upper case hex", hdr("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-"+sid+"-01"), want{tid, true, true}},
		{"traceparent zero trace id", hdr("traceparent", "00-00000000000000000000000000000000-"+sid+"-01"), want{}},
		{"traceparent version ff", hdr("traceparent", "ff-"+tid+"-"+sid+"-01"), want{}},
		{"traceparent version 00 too long", hdr("traceparent", "00-"+tid+"-"+sid+"-01-x"), want{}},
		{"traceparent future version with fields", hdr("traceparent", "01-"+tid+"-"+sid+"-01-x"), want{tid, true, true}},
		{"traceparent garbage falls back to b3", hdr("traceparent", "nonsense", "x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-sampled", "1"), want{tid, true, true}},
		{"b3 single", hdr("b3", tid+"-"+sid+"-1"), want{tid, true, true}},
		{"b3 single with parent", hdr("b3", tid+"-"+sid+"-0-0000000000000001"), want{tid, true, false}},
		{"b3 single deferred", hdr("b3", tid+"-"+sid), want{tid, false, false}},
		{"b3 single debug", hdr("b3", tid+"-"+sid+"-d"), want{tid, true, true}},
		{"b3 single 64-bit", hdr("b3", "a3ce929d0e0e4736-"+sid+"-1"), want{"0000000000000000a3ce929d0e0e4736", true, true}},
		{"b3 deny only", hdr("b3", "0"), want{"", true, false}},
		{"b3 multi", hdr("x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-sampled", "1"), want{tid, true, true}},
		{"b3 multi true", hdr("x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-sampled", "true"), want{tid, true, true}},
		{"b3 multi debug flag", hdr("x-b3-traceid", tid, "x-b3-spanid", sid, "x-b3-flags", "1"), want{tid, true, true}},
		{"b3 sampled 0 alone", hdr("x-b3-sampled", "0"), want{"", true, false}},
		{"b3 multi bad span id", hdr("x-b3-traceid", tid, "x-b3-spanid", "xyz", "x-b3-sampled", "1"), want{"", true, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Extract(tc.h)
			got := want{c.TraceIDString(), c.Decided, c.Sampled}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("Extract (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	if !Decide(Context{Decided: true, Sampled: true}, 0) {
		t.Error("an incoming sampled decision must win over 0 %")
	}
	if Decide(Context{Decided: true}, 100) {
		t.Error("an incoming not-sampled decision must win over 100 %")
	}
	if !Decide(Context{}, 100) || Decide(Context{}, 0) {
		t.Error("100 % must sample and 0 % must not")
	}
	n := 0
	for range 10000 {
		if Decide(Context{}, 10) {
			n++
		}
	}
	if n < 800 || n > 1200 {
		t.Errorf("10 %% sampled %d of 10000", n)
	}
}

func TestInject(t *testing.T) {
	parent := Extract(hdr("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"))
	h := hdr("b3", "x", "tracestate", "vendor=1")
	tid, sid := parent.TraceID, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	inject(h, tid, sid, parent)
	want := http.Header{
		"Traceparent":       {"00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"},
		"Tracestate":        {"vendor=1"},
		"X-B3-Traceid":      {"4bf92f3577b34da6a3ce929d0e0e4736"},
		"X-B3-Spanid":       {"0102030405060708"},
		"X-B3-Parentspanid": {"00f067aa0ba902b7"},
		"X-B3-Sampled":      {"1"},
		"B3":                {"4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-1-00f067aa0ba902b7"},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	// What was injected reads back as the span's context.
	c := Extract(h)
	if c.TraceID != tid || c.SpanID != sid || !c.Sampled {
		t.Errorf("re-extracted %+v", c)
	}
}

// TestSpansParentAndExport: a server span continues the caller's trace,
// a client span started from the headers the server span injected is its
// child, and both reach the exporter with the service name.
func TestSpansParentAndExport(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	exp := tracetest.NewInMemoryExporter()
	tr := New(Options{BatchTimeout: 10 * time.Millisecond, NewExporter: func(string) (sdktrace.SpanExporter, error) { return keep{exp}, nil }})
	in := hdr("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	parent := Extract(in)
	server := tr.Start("collector:4317", "reviews-v3", parent, "reviews:9080/*", Server, time.Now())
	server.Inject(in, parent)
	next := Extract(in) // as the app forwards it
	client := tr.Start("collector:4317", "reviews-v3", next, "ratings:9080/*", Client, time.Now())
	client.End(200, time.Now())
	server.End(503, time.Now())
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("exported %d spans, want 2", len(spans))
	}
	c, s := spans[0], spans[1]
	if s.Parent.SpanID().String() != "00f067aa0ba902b7" || s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("server span parent %s trace %s", s.Parent.SpanID(), s.SpanContext.TraceID())
	}
	if c.Parent.SpanID() != s.SpanContext.SpanID() || c.SpanContext.TraceID() != s.SpanContext.TraceID() {
		t.Errorf("client span's parent %s, want the server span %s", c.Parent.SpanID(), s.SpanContext.SpanID())
	}
	if s.SpanKind.String() != "server" || c.SpanKind.String() != "client" {
		t.Errorf("kinds %s, %s", s.SpanKind, c.SpanKind)
	}
	if s.Status.Code.String() != "Error" {
		t.Errorf("503 span status %s, want Error", s.Status.Code)
	}
	if v, _ := s.Resource.Set().Value("service.name"); v.AsString() != "reviews-v3" {
		t.Errorf("service.name = %q", v.AsString())
	}
}

// keep keeps an in-memory exporter's spans at shutdown.
type keep struct{ *tracetest.InMemoryExporter }

func (keep) Shutdown(context.Context) error { return nil }

// blockingExporter holds every export until released.
type blockingExporter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingExporter) ExportSpans(ctx context.Context, s []sdktrace.ReadOnlySpan) error {
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	b.mu.Lock()
	b.n += len(s)
	b.mu.Unlock()
	return nil
}
func (b *blockingExporter) Shutdown(context.Context) error { return nil }

// TestQueueDropsWhenFull: with the exporter stuck, ending spans never
// blocks; what does not fit the queue is dropped and counted.
func TestQueueDropsWhenFull(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg := prometheus.NewRegistry()
	exp := &blockingExporter{release: make(chan struct{})}
	tr := New(Options{Registerer: reg, QueueSize: 4, BatchSize: 2, BatchTimeout: time.Millisecond,
		NewExporter: func(string) (sdktrace.SpanExporter, error) { return exp, nil }})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			tr.Start("c:4317", "svc", Context{}, "x", Client, time.Now()).End(200, time.Now())
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ending spans blocked on a stuck exporter")
	}
	dropped := testutil.ToFloat64(tr.metrics.dropped)
	if dropped < 100-4-2-2 {
		t.Errorf("dropped %v of 100 spans with a queue of 4, want nearly all", dropped)
	}
	close(exp.release)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(tr.metrics.exported) + dropped; got != 100 {
		t.Errorf("exported + dropped = %v, want 100", got)
	}
	if n, err := testutil.GatherAndCount(reg, "weft_proxy_tracing_spans_dropped_total"); err != nil || n != 1 {
		t.Errorf("dropped counter on the registry: %d, %v", n, err)
	}
}
