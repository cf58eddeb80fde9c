package httpproxy

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":        "reviews-shadow",
		"reviews:9080":   "reviews-shadow:9080",
		"[::1]:8080":     "[::1]-shadow:8080",
		"[::1]":          "[::1]-shadow",
		"reviews:":       "reviews-shadow:",
		"10.0.0.1:80":    "10.0.0.1-shadow:80",
		"shop.example.c": "shop.example.c-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDrawMirrors(t *testing.T) {
	a := &proxyconfig.RouteAction{Mirrors: []proxyconfig.Mirror{{Cluster: "all", PerMillion: 1_000_000}, {Cluster: "none", PerMillion: 0}}}
	for range 100 {
		ms := drawMirrors(a)
		if len(ms) != 1 || ms[0].Cluster != "all" {
			t.Fatalf("drew %v; want the 100 %% policy only", ms)
		}
	}
	if ms := drawMirrors(&proxyconfig.RouteAction{}); ms != nil {
		t.Errorf("a route without mirrors drew %v", ms)
	}
}

// TestReplayWhole: the body is handed to mirrors only when an attempt
// read all of it and it was kept.
func TestReplayWhole(t *testing.T) {
	read := func(rb *replayBody, n int) {
		t.Helper()
		body, ok := rb.attempt()
		if !ok {
			t.Fatal("no attempt")
		}
		if n < 0 {
			io.Copy(io.Discard, body)
			return
		}
		io.CopyN(io.Discard, body, int64(n))
	}
	newBody := func(s string, limit int) *replayBody {
		return &replayBody{src: io.NopCloser(strings.NewReader(s)), limit: int32(limit)}
	}
	rb := newBody("hello", RetryBufferLimit)
	if _, ok := rb.whole(5); ok {
		t.Error("whole before any attempt read the body")
	}
	read(rb, 5)
	if b, ok := rb.whole(5); !ok || string(b) != "hello" {
		t.Errorf("whole(5) after reading 5 = %q, %v", b, ok)
	}
	if _, ok := rb.whole(-1); ok {
		t.Error("whole(-1) before the end of the body was seen")
	}
	rb = newBody("hello", RetryBufferLimit)
	read(rb, -1)
	if b, ok := rb.whole(-1); !ok || string(b) != "hello" {
		t.Errorf("whole(-1) after reading to EOF = %q, %v", b, ok)
	}
	rb = newBody("hello", RetryBufferLimit)
	read(rb, 3)
	if _, ok := rb.whole(5); ok {
		t.Error("whole(5) after reading 3 bytes")
	}
	rb = newBody(strings.Repeat("x", 10), 4)
	read(rb, -1)
	if _, ok := rb.whole(10); ok {
		t.Error("whole after the body outgrew the limit")
	}
	rb = newBody("hello", -1)
	read(rb, -1)
	if _, ok := rb.whole(5); ok {
		t.Error("whole of a body that was not kept")
	}
	// The copy is the mirror's own.
	rb = newBody("hello", RetryBufferLimit)
	read(rb, -1)
	b, _ := rb.whole(5)
	b[0] = 'j'
	if c, _ := rb.whole(5); !bytes.Equal(c, []byte("hello")) {
		t.Errorf("changing a copy changed the kept body: %q", c)
	}
}
