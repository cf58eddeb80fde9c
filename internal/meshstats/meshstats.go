// Package meshstats gives the control plane its own view of the mesh's
// golden signals, without Prometheus: it scrapes every sidecar's
// Istio-standard metrics, keeps a bounded window of samples in memory, and
// answers "success rate, requests per second, latency percentiles per
// workload and version over the last N minutes" (`weft stat`).
//
// The numbers are those the server side records (reporter="destination"),
// so every request a workload answered is counted once, whoever called it.
package meshstats

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Target is one sidecar to scrape.
type Target struct {
	// Instance names the sidecar ("reviews-v2-0.default").
	Instance string
	// URL of its Prometheus text exposition.
	URL string
}

// Key identifies one row of `weft stat`: a workload version serving a service.
type Key struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Workload  string `json:"workload"`
	Version   string `json:"version"`
}

// counts are cumulative counters of one key, summed over instances.
type counts struct {
	requests float64
	errors   float64   // 5xx answers
	buckets  []float64 // cumulative histogram counts per finite bound
	observed float64   // histogram sample count (the +Inf bucket)
}

// sample is one scrape round: cumulative counts per key per instance.
type sample struct {
	at   time.Time
	byIn map[string]map[Key]*counts // instance -> key -> counts
}

// Options configure a Collector.
type Options struct {
	// Interval between scrapes; default 5 s.
	Interval time.Duration
	// Window is how much history is kept; default 15 min. Memory is
	// bounded by Window/Interval samples.
	Window time.Duration
	// Targets returns the sidecars to scrape now; called every round.
	Targets func() []Target
	// Logger for scrape errors (debug level: a sidecar that is starting
	// or gone is normal).
	Logger *slog.Logger
	// Client is the HTTP client; default one with a 2 s timeout.
	Client *http.Client
}

// Collector scrapes and keeps the window. Its methods are safe for
// concurrent use.
type Collector struct {
	opts Options

	mu      sync.Mutex
	samples []sample  // oldest first, at most Window/Interval+1
	bounds  []float64 // histogram upper bounds (ms), from the first scrape
}

// New returns a Collector; call Run to start scraping.
func New(opts Options) *Collector {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Window <= 0 {
		opts.Window = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 2 * time.Second}
	}
	return &Collector{opts: opts}
}

// Run scrapes every Interval until ctx is done.
func (c *Collector) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		c.Scrape(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scrape runs one round now.
func (c *Collector) Scrape(ctx context.Context) {
	var targets []Target
	if c.opts.Targets != nil {
		targets = c.opts.Targets()
	}
	s := sample{at: time.Now(), byIn: map[string]map[Key]*counts{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, bounds, err := c.scrape(ctx, t)
			if err != nil {
				c.opts.Logger.Debug("scraping sidecar metrics", "instance", t.Instance, "err", err)
				return
			}
			mu.Lock()
			s.byIn[t.Instance] = got
			mu.Unlock()
			c.mu.Lock()
			if c.bounds == nil && len(bounds) > 0 {
				c.bounds = bounds
			}
			c.mu.Unlock()
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples = append(c.samples, s)
	keep := int(c.opts.Window/c.opts.Interval) + 1
	if over := len(c.samples) - keep; over > 0 {
		c.samples = append(c.samples[:0:0], c.samples[over:]...)
	}
}

func (c *Collector) scrape(ctx context.Context, t Target) (map[Key]*counts, []float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", t.URL, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", t.URL, resp.Status)
	}
	return parse(resp.Body)
}

// parse reads the server-side request metrics of one exposition.
func parse(r io.Reader) (map[Key]*counts, []float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, nil, err
	}
	out := map[Key]*counts{}
	get := func(k Key) *counts {
		if c, ok := out[k]; ok {
			return c
		}
		c := &counts{}
		out[k] = c
		return c
	}
	if f := families["istio_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			l := labels(m)
			if l["reporter"] != "destination" {
				continue
			}
			v := m.GetCounter().GetValue()
			c := get(keyOf(l))
			c.requests += v
			if strings.HasPrefix(l["response_code"], "5") {
				c.errors += v
			}
		}
	}
	var bounds []float64
	if f := families["istio_request_duration_milliseconds"]; f != nil {
		for _, m := range f.GetMetric() {
			l := labels(m)
			if l["reporter"] != "destination" {
				continue
			}
			h := m.GetHistogram()
			c := get(keyOf(l))
			finite := h.GetBucket()
			if n := len(finite); n > 0 && math.IsInf(finite[n-1].GetUpperBound(), 1) {
				finite = finite[:n-1] // the +Inf bucket is the sample count
			}
			if bounds == nil {
				for _, b := range finite {
					bounds = append(bounds, b.GetUpperBound())
				}
			}
			if c.buckets == nil {
				c.buckets = make([]float64, len(bounds))
			}
			for i, b := range finite {
				if i < len(c.buckets) {
					c.buckets[i] += float64(b.GetCumulativeCount())
				}
			}
			c.observed += float64(h.GetSampleCount())
		}
	}
	return out, bounds, nil
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func keyOf(l map[string]string) Key {
	return Key{
		Namespace: l["destination_workload_namespace"],
		Service:   l["destination_service_name"],
		Workload:  l["destination_workload"],
		Version:   l["destination_version"],
	}
}

// Row is one line of `weft stat`.
type Row struct {
	Key
	// Requests counted in the window.
	Requests float64 `json:"requests"`
	// SuccessRate is the share of non-5xx answers (0..1); NaN-free: 1 when
	// there were no requests.
	SuccessRate float64 `json:"successRate"`
	// RPS is requests per second over the window.
	RPS float64 `json:"rps"`
	// P50, P95 and P99 are latency percentiles in milliseconds, estimated
	// from the histogram buckets; 0 when there were no requests.
	P50 float64 `json:"p50Ms"`
	P95 float64 `json:"p95Ms"`
	P99 float64 `json:"p99Ms"`
}

// Result is the answer to a Stat query.
type Result struct {
	// Window is the span actually covered (less than asked while the
	// collector is young).
	Window time.Duration `json:"window"`
	// Rows, sorted by namespace, service, workload.
	Rows []Row `json:"rows"`
}

// Stat computes the rows over the last window. filter, if not empty,
// keeps rows whose service or workload equals it.
func (c *Collector) Stat(window time.Duration, filter string) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := Result{Rows: []Row{}}
	if len(c.samples) < 2 {
		return res
	}
	last := c.samples[len(c.samples)-1]
	first := c.samples[0]
	for i := len(c.samples) - 2; i >= 0; i-- {
		first = c.samples[i]
		if last.at.Sub(c.samples[i].at) >= window {
			break
		}
	}
	span := last.at.Sub(first.at)
	res.Window = span
	delta := map[Key]*counts{}
	for in, keys := range last.byIn {
		for k, now := range keys {
			var then *counts
			if fk := first.byIn[in]; fk != nil {
				then = fk[k]
			}
			d := delta[k]
			if d == nil {
				d = &counts{buckets: make([]float64, len(c.bounds))}
				delta[k] = d
			}
			d.requests += diff(now.requests, then, func(c *counts) float64 { return c.requests })
			d.errors += diff(now.errors, then, func(c *counts) float64 { return c.errors })
			d.observed += diff(now.observed, then, func(c *counts) float64 { return c.observed })
			for i := range d.buckets {
				if i < len(now.buckets) {
					d.buckets[i] += diff(now.buckets[i], then, func(c *counts) float64 {
						if i < len(c.buckets) {
							return c.buckets[i]
						}
						return 0
					})
				}
			}
		}
	}
	for k, d := range delta {
		if filter != "" && k.Service != filter && k.Workload != filter {
			continue
		}
		row := Row{Key: k, Requests: d.requests, SuccessRate: 1}
		if span > 0 {
			row.RPS = d.requests / span.Seconds()
		}
		if d.requests > 0 {
			row.SuccessRate = 1 - d.errors/d.requests
			row.P50 = quantile(0.50, c.bounds, d.buckets, d.observed)
			row.P95 = quantile(0.95, c.bounds, d.buckets, d.observed)
			row.P99 = quantile(0.99, c.bounds, d.buckets, d.observed)
		}
		res.Rows = append(res.Rows, row)
	}
	sort.Slice(res.Rows, func(i, j int) bool {
		a, b := res.Rows[i], res.Rows[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Workload < b.Workload
	})
	return res
}

// diff is the increase of a cumulative counter; a sidecar that restarted
// (counter went down) counts from zero.
func diff(now float64, then *counts, get func(*counts) float64) float64 {
	if then == nil {
		return now
	}
	if d := now - get(then); d >= 0 {
		return d
	}
	return now
}

// quantile estimates the q-quantile from cumulative bucket counts (cum,
// one per finite bound) and the total number of observations by linear
// interpolation inside the bucket, as Prometheus's histogram_quantile
// does. A quantile beyond the last finite bound reports that bound.
func quantile(q float64, bounds, cum []float64, total float64) float64 {
	if len(bounds) == 0 || total == 0 {
		return 0
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for i, b := range bounds {
		if i >= len(cum) {
			break
		}
		if cum[i] >= rank {
			if cum[i] == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(cum[i]-prevCount)
		}
		prevBound, prevCount = b, cum[i]
	}
	return bounds[len(bounds)-1]
}

// FormatMs prints a latency for the table.
func FormatMs(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
}
