package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Goal is one of the sidecar's performance goals (docs/performance.md,
// "Goals"), checked against the peers measured in the same run. Where it
// compares two paths, each round is compared with the same round of the
// other path (the rounds rotate the order of the paths, so a round's
// windows are close in time) and Value is the median of those per-round
// figures, which a disturbed round moves less than a ratio of medians.
type Goal struct {
	Name string `json:"name"`
	// Target is the goal as text ("<= 0.10", ">= 0.70").
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	// Rounds holds the per-round figures when the goal compares paths;
	// Values the per-proxy ones when it bounds each of a path's proxies.
	Rounds []float64 `json:"rounds,omitempty"`
	Values []float64 `json:"values,omitempty"`
	Met    bool      `json:"met"`
}

// Istio's published added p99 of two sidecars (Istio 1.20's benchmark),
// and the sidecar budgets of the goals.
const (
	istioAddedP99Ms = 0.298
	maxCPUPer1k     = 0.10
	minHAProxyRatio = 0.70
)

// maxRSSMB is the peak RSS goal for a mesh of services other services:
// 20 MB with 100, 40 MB with 1000; none for other sizes.
func maxRSSMB(services int) float64 {
	switch services {
	case 100:
		return 20
	case 1000:
		return 40
	}
	return 0
}

// goals checks the goals whose paths the run measured. Called by finish,
// after the per-path figures.
func (r *Report) goals(services int) []*Goal {
	var out []*Goal
	get := func(sc, name string) *Result {
		for _, x := range r.Paths {
			if x.Scenario == sc && x.Name == name && x.Available && len(x.Rounds) > 0 {
				return x
			}
		}
		return nil
	}
	// Throughput per core: one Weft hop's requests per CPU-second against
	// one HAProxy (Caddy) hop's, two hops each, round by round.
	weft := get("throughput", "weft-2hop")
	if h := get("throughput", "haproxy-2hop"); weft != nil && h != nil {
		if g := ratioGoal("throughput per core, Weft / HAProxy", fmt.Sprintf(">= %.2f", minHAProxyRatio), weft, h); g != nil {
			g.Met = g.Value >= minHAProxyRatio
			out = append(out, g)
		}
	}
	if c := get("throughput", "caddy-2hop"); weft != nil && c != nil {
		if g := ratioGoal("throughput per core, Weft / Caddy", "> 1", weft, c); g != nil {
			g.Met = g.Value > 1
			out = append(out, g)
		}
	}
	// Latency: the added p99 of two Weft hops with mTLS against two nginx
	// hops with TLS (the baseline cancels out within a round), and against
	// Istio's published figure.
	mtls := get("latency", "weft-2hop-mtls")
	if n := get("latency", "nginx-2hop-tls"); mtls != nil && n != nil {
		if d := pairRounds(mtls, n, func(a, b *Round) float64 { return a.P99 - b.P99 }); len(d) > 0 {
			g := &Goal{Name: "added p99 ms, Weft mTLS - nginx TLS", Target: "<= 0", Value: round3(median(d)), Rounds: roundAll(d)}
			g.Met = g.Value <= 0
			out = append(out, g)
		}
	}
	if mtls != nil && mtls.AddedP99 != nil {
		g := &Goal{Name: "added p99 ms, Weft mTLS", Target: fmt.Sprintf("< %.3f (Istio)", istioAddedP99Ms), Value: *mtls.AddedP99}
		g.Met = g.Value < istioAddedP99Ms
		out = append(out, g)
	}
	// Each sidecar's CPU per 1000 requests and peak RSS, at the run's
	// fixed rate (--qps, 1000 by default, as the goals are stated).
	if mtls != nil && len(mtls.Proxies) > 0 {
		g := &Goal{Name: "CPU-s per 1000 requests, each Weft sidecar", Target: fmt.Sprintf("<= %.2f", maxCPUPer1k), Met: true}
		for _, p := range mtls.Proxies {
			g.Values = append(g.Values, p.CPUPer1k)
			g.Met = g.Met && p.CPUPer1k <= maxCPUPer1k
		}
		g.Value = slices.Max(g.Values)
		out = append(out, g)
		if limit := maxRSSMB(services); limit > 0 {
			g := &Goal{Name: fmt.Sprintf("peak RSS MB, each Weft sidecar, %d services", services), Target: fmt.Sprintf("<= %.0f", limit), Met: true}
			for _, p := range mtls.Proxies {
				g.Values = append(g.Values, p.RSSMB)
				g.Met = g.Met && p.RSSMB > 0 && p.RSSMB <= limit
			}
			g.Value = slices.Max(g.Values)
			out = append(out, g)
		}
	}
	return out
}

// ratioGoal is the median over rounds of a's requests per CPU-second of
// one proxy (the mean over its proxies) divided by b's in the same round.
func ratioGoal(name, target string, a, b *Result) *Goal {
	d := pairRounds(a, b, func(x, y *Round) float64 {
		rx, ry := perCPU(x), perCPU(y)
		if rx == 0 || ry == 0 {
			return math.NaN()
		}
		return rx / ry
	})
	d = slices.DeleteFunc(d, math.IsNaN)
	if len(d) == 0 {
		return nil
	}
	return &Goal{Name: name, Target: target, Value: round3(median(d)), Rounds: roundAll(d)}
}

// perCPU is a round's requests per CPU-second of one proxy, the mean over
// the path's proxies; 0 when no CPU was measured.
func perCPU(rd *Round) float64 {
	var sum float64
	n := 0
	for _, cpu := range rd.CPU {
		if cpu > 0 {
			sum += float64(rd.Requests) / cpu
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// pairRounds applies f to the rounds of a and b with the same number, in
// a's order.
func pairRounds(a, b *Result, f func(x, y *Round) float64) []float64 {
	var out []float64
	for _, x := range a.Rounds {
		for _, y := range b.Rounds {
			if x.Round == y.Round {
				out = append(out, f(x, y))
			}
		}
	}
	return out
}

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = round3(x)
	}
	return out
}

// goalTable writes the goals as a table.
func goalTable(w io.Writer, goals []*Goal) {
	if len(goals) == 0 {
		return
	}
	fmt.Fprintln(w, "\ngoals (comparisons: each round's figure in round order, the value their median; per-sidecar bounds: each sidecar's figure, the value the largest)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\ttarget\tvalue\tper round or proxy\tmet\t")
	for _, g := range goals {
		detail := g.Rounds
		if len(detail) == 0 {
			detail = g.Values
		}
		var s []string
		for _, v := range detail {
			s = append(s, fmt.Sprintf("%.3f", v))
		}
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t%s\t\n", g.Name, g.Target, g.Value, strings.Join(s, " "), met)
	}
	tw.Flush()
}
