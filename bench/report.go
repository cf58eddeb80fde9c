package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the content of results.json.
type Report struct {
	Date     string            `json:"date"`
	Machine  map[string]string `json:"machine"`
	Settings map[string]any    `json:"settings"`
	// Paths holds one object per path and scenario (latency at the fixed
	// rate, grpc ping at the fixed rate, throughput in a closed loop).
	Paths []*Result `json:"paths"`
	// Goals are the sidecar's goals the run could check (goals.go).
	Goals []*Goal `json:"goals"`
}

// Result is one path in one scenario. Latencies and rates are medians over
// the rounds; added_* are medians of the per-round differences to the
// baseline of the same scenario. Missing values are null.
type Result struct {
	Name      string   `json:"name"`
	Scenario  string   `json:"scenario"`
	Available bool     `json:"available"`
	Note      string   `json:"note,omitempty"`
	P50       *float64 `json:"p50_ms"`
	P90       *float64 `json:"p90_ms"`
	P99       *float64 `json:"p99_ms"`
	P999      *float64 `json:"p999_ms"`
	AddedP50  *float64 `json:"added_p50_ms"`
	AddedP90  *float64 `json:"added_p90_ms"`
	AddedP99  *float64 `json:"added_p99_ms"`
	AddedP999 *float64 `json:"added_p999_ms"`
	RPS       *float64 `json:"rps"`
	Errors    int      `json:"errors"`
	// CPUPer1k is the mean over the path's proxy processes of CPU seconds
	// per 1000 requests; RSSMB the largest peak RSS of them (MB).
	CPUPer1k *float64 `json:"cpu_s_per_1k"`
	RSSMB    *float64 `json:"rss_mb"`
	// ReqPerCPUS is requests per CPU-second of one proxy (the mean over
	// the path's proxies): throughput per core.
	ReqPerCPUS *float64 `json:"req_per_cpu_s"`
	Proxies    []*Proxy `json:"proxies"`
	Rounds     []*Round `json:"rounds"`
}

// Proxy is one proxy process of a path (with its worker children).
type Proxy struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_s"`
	// SysSeconds is the part of CPUSeconds spent in the kernel (system
	// time: the proxy's syscalls and the network stack's work in them).
	SysSeconds float64 `json:"cpu_sys_s"`
	CPUPer1k   float64 `json:"cpu_s_per_1k"`
	ReqPerCPUS float64 `json:"req_per_cpu_s"`
	RSSMB      float64 `json:"rss_mb"`
}

// Round is one measured window.
type Round struct {
	Round    int                `json:"round"`
	P50      float64            `json:"p50_ms"`
	P90      float64            `json:"p90_ms"`
	P99      float64            `json:"p99_ms"`
	P999     float64            `json:"p999_ms"`
	RPS      float64            `json:"rps"`
	Requests int                `json:"requests"`
	Errors   int                `json:"errors"`
	CPU      map[string]float64 `json:"cpu_s"`
	CPUSys   map[string]float64 `json:"cpu_sys_s"`
	// Threads are the Weft sidecars' Go processors as the window ended.
	Threads map[string]int `json:"threads,omitempty"`
	// ConfigChanges are the config versions the mesh's control plane
	// built during the window (Options.Churn).
	ConfigChanges int `json:"config_changes,omitempty"`
}

func newReport(o *Options) *Report {
	return &Report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Settings: map[string]any{
			"duration_s": o.Duration.Seconds(), "warmup_s": o.Warmup.Seconds(), "rounds": o.Rounds,
			"qps": o.QPS, "connections": o.Conns, "payload_bytes": o.Payload,
			"max_connections": o.MaxConns, "max_duration_s": o.MaxDuration.Seconds(),
			"smoke": o.Smoke, "services": o.Services, "threads": o.Threads, "churn_s": o.Churn.Seconds(), "churn_hidden": o.ChurnHidden,
		},
	}
}

func (r *Report) find(sc, name string) *Result {
	for _, x := range r.Paths {
		if x.Scenario == sc && x.Name == name {
			return x
		}
	}
	x := &Result{Name: name, Scenario: sc, Available: true, Proxies: []*Proxy{}, Rounds: []*Round{}}
	r.Paths = append(r.Paths, x)
	return x
}

func (r *Report) add(sc string, p *path, round int, res loadResult, cpu map[string]cpuTime, threads map[string]int, changes int) {
	x := r.find(sc, p.name)
	total, sys := map[string]float64{}, map[string]float64{}
	for name, t := range cpu {
		total[name], sys[name] = t.total, t.sys
	}
	x.Rounds = append(x.Rounds, &Round{Round: round, P50: res.P50, P90: res.P90, P99: res.P99, P999: res.P999,
		RPS: res.RPS, Requests: res.Requests, Errors: res.Errors, CPU: total, CPUSys: sys, Threads: threads, ConfigChanges: changes})
	for _, pr := range p.procs {
		var px *Proxy
		for _, y := range x.Proxies {
			if y.Name == pr.name {
				px = y
			}
		}
		if px == nil {
			px = &Proxy{Name: pr.name}
			x.Proxies = append(x.Proxies, px)
		}
		px.CPUSeconds += cpu[pr.name].total
		px.SysSeconds += cpu[pr.name].sys
	}
}

func (r *Report) unavailable(sc string, p *path) {
	if p.note == "" {
		return
	}
	x := r.find(sc, p.name)
	x.Available, x.Note = false, p.note
}

func (r *Report) rss(sc, path, proxy string, mb float64) {
	x := r.find(sc, path)
	for _, y := range x.Proxies {
		if y.Name == proxy {
			y.RSSMB = round1(mb)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ptr(v float64) *float64 { return &v }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
func round1(v float64) float64 { return math.Round(v*10) / 10 }

// finish computes the medians, the differences to the baseline, and the
// per-proxy costs.
func (r *Report) finish() {
	pick := func(x *Result, f func(*Round) float64) []float64 {
		var v []float64
		for _, rd := range x.Rounds {
			v = append(v, f(rd))
		}
		return v
	}
	get := []func(*Round) float64{
		func(rd *Round) float64 { return rd.P50 }, func(rd *Round) float64 { return rd.P90 },
		func(rd *Round) float64 { return rd.P99 }, func(rd *Round) float64 { return rd.P999 },
	}
	for _, x := range r.Paths {
		if !x.Available || len(x.Rounds) == 0 {
			continue
		}
		x.P50, x.P90 = ptr(round3(median(pick(x, get[0])))), ptr(round3(median(pick(x, get[1]))))
		x.P99, x.P999 = ptr(round3(median(pick(x, get[2])))), ptr(round3(median(pick(x, get[3]))))
		x.RPS = ptr(round1(median(pick(x, func(rd *Round) float64 { return rd.RPS }))))
		reqs := 0
		for _, rd := range x.Rounds {
			reqs += rd.Requests
			x.Errors += rd.Errors
		}
		if base := r.baseline(x.Scenario); base != nil {
			added := make([]*float64, 4)
			for i, f := range get {
				var d []float64
				for _, rd := range x.Rounds {
					for _, bd := range base.Rounds {
						if bd.Round == rd.Round {
							d = append(d, f(rd)-f(bd))
						}
					}
				}
				if len(d) > 0 {
					added[i] = ptr(round3(median(d)))
				}
			}
			x.AddedP50, x.AddedP90, x.AddedP99, x.AddedP999 = added[0], added[1], added[2], added[3]
		}
		if len(x.Proxies) == 0 || reqs == 0 {
			continue
		}
		var cpu, rps, rss float64
		for _, p := range x.Proxies {
			p.CPUSeconds, p.SysSeconds = round3(p.CPUSeconds), round3(p.SysSeconds)
			p.CPUPer1k = round3(p.CPUSeconds / float64(reqs) * 1000)
			if p.CPUSeconds > 0 {
				p.ReqPerCPUS = math.Round(float64(reqs) / p.CPUSeconds)
			}
			cpu += p.CPUPer1k
			rps += p.ReqPerCPUS
			rss = max(rss, p.RSSMB)
		}
		n := float64(len(x.Proxies))
		x.CPUPer1k, x.ReqPerCPUS, x.RSSMB = ptr(round3(cpu/n)), ptr(math.Round(rps/n)), ptr(rss)
	}
	services, _ := r.Settings["services"].(int)
	r.Goals = r.goals(services)
}

func (r *Report) baseline(sc string) *Result {
	for _, x := range r.Paths {
		if x.Scenario == sc && x.Name == "baseline" && x.Available && len(x.Rounds) > 0 {
			return x
		}
	}
	return nil
}

func (r *Report) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Table writes the report as readable tables, one per scenario.
func (r *Report) Table(w io.Writer) {
	f := func(p *float64, prec int) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, *p)
	}
	fmt.Fprintf(w, "%s  nproc=%s  cpu=%q  load=%s\n", r.Date, r.Machine["nproc"], r.Machine["cpu_model"], r.Machine["loadavg"])
	for _, sc := range []string{"latency", "grpc", "throughput"} {
		var rows []*Result
		for _, x := range r.Paths {
			if x.Scenario == sc {
				rows = append(rows, x)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", map[string]string{
			"latency":    "HTTP/1.1 at fixed rate (latency in ms, medians over rounds)",
			"grpc":       "gRPC ping at fixed rate (latency in ms)",
			"throughput": "closed loop, max throughput",
		}[sc])
		var notes []string
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "path\tp50\tp90\tp99\tp99.9\t+p50\t+p90\t+p99\t+p99.9\trps\terrors\tCPU-s/1k per proxy\tkernel %\treq/CPU-s per proxy\tpeak RSS MB\t")
		for _, x := range rows {
			if !x.Available {
				fmt.Fprintf(tw, "%s%s\n", x.Name, strings.Repeat("\tn/a", 14)+"\t")
				notes = append(notes, x.Name+": "+x.Note)
				continue
			}
			var cpu, sys, rps, rss []string
			for _, p := range x.Proxies {
				cpu = append(cpu, fmt.Sprintf("%.3f", p.CPUPer1k))
				if p.CPUSeconds > 0 {
					sys = append(sys, fmt.Sprintf("%.0f", 100*p.SysSeconds/p.CPUSeconds))
				}
				rps = append(rps, fmt.Sprintf("%.0f", p.ReqPerCPUS))
				rss = append(rss, fmt.Sprintf("%.1f", p.RSSMB))
			}
			j := func(s []string) string {
				if len(s) == 0 {
					return "-"
				}
				return strings.Join(s, " / ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", x.Name,
				f(x.P50, 3), f(x.P90, 3), f(x.P99, 3), f(x.P999, 3),
				f(x.AddedP50, 3), f(x.AddedP90, 3), f(x.AddedP99, 3), f(x.AddedP999, 3),
				f(x.RPS, 0), x.Errors, j(cpu), j(sys), j(rps), j(rss))
		}
		tw.Flush()
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	goalTable(w, r.Goals)
}
