package tracing

import (
	"net/http"
	"testing"
)

// BenchmarkUnsampled is what a request that is not sampled costs on a
// traced listener: reading its context, deciding, marking the decision.
// It must not allocate.
func BenchmarkUnsampled(b *testing.B) {
	b.Run("no context", func(b *testing.B) {
		h := http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}, "X-Request-Id": {"r"}}
		b.ReportAllocs()
		for b.Loop() {
			c := Extract(h)
			if !Decide(c, 0) && !c.Decided {
				MarkNotSampled(h)
			}
		}
	})
	b.Run("traceparent not sampled", func(b *testing.B) {
		h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}
		b.ReportAllocs()
		for b.Loop() {
			c := Extract(h)
			if !Decide(c, 1) && !c.Decided {
				MarkNotSampled(h)
			}
		}
	})
	b.Run("b3 not sampled", func(b *testing.B) {
		h := http.Header{"X-B3-Traceid": {"4bf92f3577b34da6a3ce929d0e0e4736"}, "X-B3-Spanid": {"00f067aa0ba902b7"}, "X-B3-Sampled": {"0"}}
		b.ReportAllocs()
		for b.Loop() {
			_ = Decide(Extract(h), 1)
		}
	})
}

func TestUnsampledDoesNotAllocate(t *testing.T) {
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}
	empty := http.Header{"Accept": {"*/*"}}
	if n := testing.AllocsPerRun(100, func() {
		if c := Extract(h); !Decide(c, 1) && !c.Decided {
			MarkNotSampled(h)
		}
		if c := Extract(empty); !Decide(c, 0) && !c.Decided {
			MarkNotSampled(empty)
		}
	}); n != 0 {
		t.Errorf("an unsampled request allocates %v times, want 0", n)
	}
}
