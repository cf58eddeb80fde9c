package tracing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is the span processor between the request path and the
// exporter: ended spans go into a bounded queue, never blocking (a full
// queue drops the span and counts it), and one goroutine sends them in
// batches of at most BatchSize, at least every BatchTimeout.
type batcher struct {
	exp     sdktrace.SpanExporter
	queue   chan sdktrace.ReadOnlySpan
	size    int
	timeout time.Duration
	m       *metrics
	log     *slog.Logger

	stopped  atomic.Bool
	stop     chan struct{}
	flush    chan chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newBatcher(exp sdktrace.SpanExporter, opts Options, m *metrics, log *slog.Logger) *batcher {
	b := &batcher{
		exp: exp, queue: make(chan sdktrace.ReadOnlySpan, opts.QueueSize), size: opts.BatchSize, timeout: opts.BatchTimeout,
		m: m, log: log, stop: make(chan struct{}), flush: make(chan chan struct{}), done: make(chan struct{}),
	}
	go b.run()
	return b
}

func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s; it never blocks.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if b.stopped.Load() {
		b.m.dropped.Inc()
		return
	}
	select {
	case b.queue <- s:
	default:
		b.m.dropped.Inc()
	}
}

func (b *batcher) run() {
	defer close(b.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, b.size)
	timer := time.NewTimer(b.timeout)
	defer timer.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			b.m.failed.Add(float64(len(batch)))
			b.log.Warn("tracing: exporting spans failed", "spans", len(batch), "error", err)
		} else {
			b.m.exported.Add(float64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case s := <-b.queue:
				batch = append(batch, s)
				if len(batch) == b.size {
					send()
				}
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case s := <-b.queue:
			batch = append(batch, s)
			if len(batch) == b.size {
				send()
			}
		case <-timer.C:
			send()
			timer.Reset(b.timeout)
		case ack := <-b.flush:
			drain()
			close(ack)
		case <-b.stop:
			drain()
			return
		}
	}
}

// ForceFlush exports what is queued now.
func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued and stops the exporter.
func (b *batcher) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() {
		b.stopped.Store(true)
		close(b.stop)
	})
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.exp.Shutdown(ctx)
}
