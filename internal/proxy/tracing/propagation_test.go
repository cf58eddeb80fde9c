package tracing

import (
	"net/http"
	"testing"
)

func TestUnsample(t *testing.T) {
	h := http.Header{
		"Traceparent":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"B3":           {"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90"},
		"X-B3-Sampled": {"1"},
		"X-B3-Flags":   {"1"},
	}
	Unsample(h)
	c := Extract(h)
	if !c.HasIDs || !c.Decided || c.Sampled {
		t.Errorf("after Unsample: %+v; want the IDs kept and a decision not to sample", c)
	}
	if got := h.Get("Traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" {
		t.Errorf("traceparent %q", got)
	}
	if got := h.Get("B3"); got != "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0-05e3ac9a4f6e3b90" {
		t.Errorf("b3 %q", got)
	}
	if h.Get("X-B3-Sampled") != "0" || h.Get("X-B3-Flags") != "" {
		t.Errorf("x-b3-sampled %q, x-b3-flags %q", h.Get("X-B3-Sampled"), h.Get("X-B3-Flags"))
	}
	for in, want := range map[string]string{"1": "0", "d": "0", "aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb": "aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-0"} {
		h := http.Header{"B3": {in}}
		Unsample(h)
		if got := h.Get("B3"); got != want {
			t.Errorf("b3 %q -> %q, want %q", in, got, want)
		}
	}
}
