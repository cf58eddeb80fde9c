package tracing

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Tracer.
type Options struct {
	// Registerer receives the tracing metrics (spans dropped, exported,
	// failed); nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives export errors (rate-limited by the batcher: one per
	// failed batch); nil discards them.
	Logger *slog.Logger
	// QueueSize bounds the spans waiting for export per collector; a span
	// ended while it is full is dropped and counted. Default 2048.
	QueueSize int
	// BatchSize is the most spans sent in one export. Default 512.
	BatchSize int
	// BatchTimeout is the longest a span waits for its batch to fill.
	// Default 1 s.
	BatchTimeout time.Duration
	// NewExporter makes the exporter for a collector address; default
	// OTLP/gRPC without TLS. Tests replace it.
	NewExporter func(addr string) (sdktrace.SpanExporter, error)
}

// Tracer records the proxy's spans. It keeps one OpenTelemetry tracer
// provider per collector address and service name, made on first use and
// kept until Shutdown. It is safe for concurrent use.
type Tracer struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu        sync.Mutex
	providers atomic.Pointer[map[providerKey]*provider] // copy on write
	closed    bool
}

type providerKey struct{ addr, service string }

type provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

type metrics struct {
	dropped, exported, failed prometheus.Counter
}

// New returns a Tracer; it starts nothing until a span is recorded.
func New(opts Options) *Tracer {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 2048
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = time.Second
	}
	if opts.NewExporter == nil {
		opts.NewExporter = func(addr string) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure())
		}
	}
	t := &Tracer{opts: opts, log: opts.Logger, metrics: &metrics{
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_proxy_tracing_spans_dropped_total",
			Help: "Spans dropped because the export queue was full (the collector is slow or down).",
		}),
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_proxy_tracing_spans_exported_total",
			Help: "Spans sent to the collector.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_proxy_tracing_spans_failed_total",
			Help: "Spans whose export to the collector failed.",
		}),
	}}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(t.metrics.dropped, t.metrics.exported, t.metrics.failed)
	}
	m := map[providerKey]*provider{}
	t.providers.Store(&m)
	return t
}

// tracerFor returns the tracer exporting to addr as service, or nil
// after Shutdown or when the exporter cannot be made.
func (t *Tracer) tracerFor(addr, service string) trace.Tracer {
	k := providerKey{addr, service}
	if p := (*t.providers.Load())[k]; p != nil {
		return p.tracer
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.providers.Load()
	if p := old[k]; p != nil {
		return p.tracer
	}
	if t.closed {
		return nil
	}
	exp, err := t.opts.NewExporter(addr)
	if err != nil {
		t.log.Error("tracing: cannot make the OTLP exporter; spans to this collector are dropped", "collector", addr, "error", err)
		return nil
	}
	b := newBatcher(exp, t.opts, t.metrics, t.log.With("collector", addr))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()), // the proxy decides (Decide)
		sdktrace.WithSpanProcessor(b),
		sdktrace.WithResource(sdkresource.NewSchemaless(attribute.String("service.name", service))),
	)
	p := &provider{tp: tp, tracer: tp.Tracer("weft.dev/weft/proxy")}
	m := make(map[providerKey]*provider, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = p
	t.providers.Store(&m)
	return p.tracer
}

// Shutdown exports what is queued (until ctx is done) and stops every
// exporter. Spans started afterwards are not recorded.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	t.closed = true
	ps := *t.providers.Load()
	t.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.tp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// SpanKind says which side of a call a span records.
type SpanKind int

// Span kinds: a server span for requests to the proxy's own app
// (inbound), a client span for requests to other services.
const (
	Client SpanKind = iota
	Server
)

// Span is one request's span. A nil *Span records nothing.
type Span struct {
	s       trace.Span
	traceID [16]byte
	spanID  [8]byte
}

// Start starts a sampled request's span at start, as a child of parent
// when it has IDs (else a new trace), exporting to the collector at addr
// as service. It returns nil after Shutdown.
func (t *Tracer) Start(addr, service string, parent Context, name string, kind SpanKind, start time.Time, attrs ...attribute.KeyValue) *Span {
	if t == nil {
		return nil
	}
	tr := t.tracerFor(addr, service)
	if tr == nil {
		return nil
	}
	ctx := context.Background()
	if parent.HasIDs {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: parent.TraceID, SpanID: parent.SpanID, TraceFlags: trace.FlagsSampled, Remote: true,
		}))
	}
	k := trace.SpanKindClient
	if kind == Server {
		k = trace.SpanKindServer
	}
	_, s := tr.Start(ctx, name, trace.WithSpanKind(k), trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	sc := s.SpanContext()
	return &Span{s: s, traceID: sc.TraceID(), spanID: sc.SpanID()}
}

// Inject writes the span's context into h (the request going on) for the
// next hop: traceparent and the x-b3-* headers (and b3 if the caller
// used it), with parent as the caller.
func (s *Span) Inject(h http.Header, parent Context) {
	if s == nil {
		return
	}
	inject(h, s.traceID, s.spanID, parent)
}

// TraceID returns the span's trace ID in hex, or "" for a nil span.
func (s *Span) TraceID() string {
	if s == nil {
		return ""
	}
	var b [32]byte
	hexTo(b[:], s.traceID[:])
	return string(b[:])
}

// End sets the final attributes, marks 5xx responses (and failures with
// no response) as errors, and ends the span at end.
func (s *Span) End(code int, end time.Time, attrs ...attribute.KeyValue) {
	if s == nil {
		return
	}
	s.s.SetAttributes(attrs...)
	if code >= 500 || code == 0 {
		s.s.SetStatus(codes.Error, "")
		s.s.SetAttributes(attribute.Bool("error", true))
	}
	s.s.End(trace.WithTimestamp(end))
}
