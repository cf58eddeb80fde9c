package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestGoals checks the goals against a made-up run whose figures are
// known: ratios taken round by round, medians of them, and per-proxy
// bounds.
func TestGoals(t *testing.T) {
	rd := func(n, reqs int, p99 float64, cpu ...float64) *Round {
		m := map[string]float64{}
		for i, c := range cpu {
			m[string(rune('a'+i))] = c
		}
		return &Round{Round: n, Requests: reqs, P99: p99, CPU: m}
	}
	r := &Report{Settings: map[string]any{"services": 100}, Paths: []*Result{
		// Weft: 40,000 requests per CPU-s per proxy in rounds 1 and 3,
		// 30,000 in round 2 (a disturbed round).
		{Name: "weft-2hop", Scenario: "throughput", Available: true, Rounds: []*Round{
			rd(1, 400000, 0, 10, 10), rd(2, 300000, 0, 10, 10), rd(3, 400000, 0, 10, 10)}},
		// HAProxy: 60,000, 50,000 (one proxy 40,000, the other 60,000), 55,000.
		{Name: "haproxy-2hop", Scenario: "throughput", Available: true, Rounds: []*Round{
			rd(1, 600000, 0, 10, 10), rd(2, 500000, 0, 12.5, 500000.0/60000), rd(3, 550000, 0, 10, 10)}},
		{Name: "caddy-2hop", Scenario: "throughput", Available: true, Rounds: []*Round{
			rd(1, 100000, 0, 10, 10), rd(3, 100000, 0, 10, 10)}},
		{Name: "baseline", Scenario: "latency", Available: true, Rounds: []*Round{
			rd(1, 1000, 1.0), rd(2, 1000, 1.0), rd(3, 1000, 1.0)}},
		{Name: "weft-2hop-mtls", Scenario: "latency", Available: true,
			Proxies: []*Proxy{{Name: "a", CPUSeconds: 0.18, RSSMB: 19.5}, {Name: "b", CPUSeconds: 0.15, RSSMB: 21}},
			Rounds:  []*Round{rd(1, 1000, 1.25), rd(2, 1000, 1.5), rd(3, 1000, 1.2)}},
		{Name: "nginx-2hop-tls", Scenario: "latency", Available: true, Rounds: []*Round{
			rd(1, 1000, 1.15), rd(2, 1000, 1.2), rd(3, 1000, 1.25)}},
	}}
	r.finish()
	want := map[string]struct {
		value  float64
		detail []float64
		met    bool
	}{
		// 40/60, 30/50, 40/55: median 0.667.
		"throughput per core, Weft / HAProxy": {0.667, []float64{0.667, 0.6, 0.727}, false},
		// Only rounds 1 and 3 have Caddy: 4 and 4.
		"throughput per core, Weft / Caddy": {4, []float64{4, 4}, true},
		// 0.10, 0.30, -0.05: median 0.10.
		"added p99 ms, Weft mTLS - nginx TLS": {0.1, []float64{0.1, 0.3, -0.05}, false},
		// Added p99 0.25, 0.5, 0.2: median 0.25.
		"added p99 ms, Weft mTLS": {0.25, nil, true},
		// 0.18 and 0.15 CPU-s over 3,000 requests.
		"CPU-s per 1000 requests, each Weft sidecar":   {0.06, []float64{0.06, 0.05}, true},
		"peak RSS MB, each Weft sidecar, 100 services": {21, []float64{19.5, 21}, false},
	}
	if len(r.Goals) != len(want) {
		t.Errorf("%d goals, want %d", len(r.Goals), len(want))
	}
	for _, g := range r.Goals {
		w, ok := want[g.Name]
		if !ok {
			t.Errorf("unexpected goal %q", g.Name)
			continue
		}
		detail := g.Rounds
		if detail == nil {
			detail = g.Values
		}
		if g.Value != w.value || !slices.Equal(detail, w.detail) || g.Met != w.met {
			t.Errorf("%s: value %v, detail %v, met %v; want %v, %v, %v", g.Name, g.Value, detail, g.Met, w.value, w.detail, w.met)
		}
	}
	var b bytes.Buffer
	r.Table(&b)
	if !strings.Contains(b.String(), "throughput per core, Weft / HAProxy") || !strings.Contains(b.String(), "0.667 0.600 0.727") {
		t.Errorf("table lacks the throughput goal:\n%s", b.String())
	}
}

// TestGoalsSkipMissingPaths: a run without the peers checks no
// comparison, and a mesh size without an RSS goal checks none.
func TestGoalsSkipMissingPaths(t *testing.T) {
	r := &Report{Settings: map[string]any{"services": 10}, Paths: []*Result{
		{Name: "weft-2hop", Scenario: "throughput", Available: true, Rounds: []*Round{{Round: 1, Requests: 10, CPU: map[string]float64{"a": 1}}}},
		{Name: "haproxy-2hop", Scenario: "throughput", Available: false, Note: "not installed"},
	}}
	r.finish()
	if len(r.Goals) != 0 {
		t.Errorf("goals %+v, want none", r.Goals)
	}
}
