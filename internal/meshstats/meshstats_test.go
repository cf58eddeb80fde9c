package meshstats

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// exposition renders a sidecar's server-side metrics: requests by code
// and a latency histogram with the given cumulative bucket counts
// (bounds 1, 5, 10 ms) and total count.
func exposition(ok, failed float64, cum [3]float64, count float64) string {
	l := `reporter="destination",destination_workload="reviews-v2",destination_workload_namespace="default",destination_service_name="reviews",destination_version="v2"`
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE istio_requests_total counter\n")
	fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"200\"} %g\n", l, ok)
	fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"503\"} %g\n", l, failed)
	// The client side of another sidecar is not counted.
	fmt.Fprintf(&b, "istio_requests_total{reporter=\"source\",destination_workload=\"reviews-v2\",response_code=\"200\"} 1000\n")
	fmt.Fprintf(&b, "# TYPE istio_request_duration_milliseconds histogram\n")
	for i, le := range []string{"1", "5", "10"} {
		fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,response_code=\"200\",le=\"%s\"} %g\n", l, le, cum[i])
	}
	fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,response_code=\"200\",le=\"+Inf\"} %g\n", l, count)
	fmt.Fprintf(&b, "istio_request_duration_milliseconds_sum{%s,response_code=\"200\"} 0\n", l)
	fmt.Fprintf(&b, "istio_request_duration_milliseconds_count{%s,response_code=\"200\"} %g\n", l, count)
	return b.String()
}

func TestStatFromTwoScrapes(t *testing.T) {
	var page atomic.Value
	page.Store(exposition(10, 0, [3]float64{10, 10, 10}, 10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, page.Load().(string))
	}))
	defer srv.Close()

	c := New(Options{Targets: func() []Target { return []Target{{Instance: "reviews-v2-0.default", URL: srv.URL}} }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Scrape(ctx)
	// 100 more requests, 10 of them 503s; latencies: 50 <= 1 ms,
	// 30 in (1, 5], 15 in (5, 10], 5 above 10 ms.
	page.Store(exposition(100, 10, [3]float64{60, 90, 105}, 110))
	c.Scrape(ctx)

	res := c.Stat(time.Minute, "")
	want := []Row{{
		Key:         Key{Namespace: "default", Service: "reviews", Workload: "reviews-v2", Version: "v2"},
		Requests:    100,
		SuccessRate: 0.9,
		P50:         1 + 4*(50.0-50)/30, // rank 50 is the last of the first bucket
		P95:         5 + 5*(95.0-80)/15,
		P99:         10, // beyond the last finite bound
	}}
	if diff := cmp.Diff(want, res.Rows, cmpopts.IgnoreFields(Row{}, "RPS"), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if res.Rows[0].RPS <= 0 {
		t.Errorf("RPS = %v, want > 0", res.Rows[0].RPS)
	}
	if got := c.Stat(time.Minute, "ratings").Rows; len(got) != 0 {
		t.Errorf("filter ratings kept %v", got)
	}
	if got := c.Stat(time.Minute, "reviews-v2").Rows; len(got) != 1 {
		t.Errorf("filter by workload reviews-v2 gave %v", got)
	}
}

func TestRestartedSidecarCountsFromZero(t *testing.T) {
	var page atomic.Value
	page.Store(exposition(500, 0, [3]float64{500, 500, 500}, 500))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, page.Load().(string))
	}))
	defer srv.Close()
	c := New(Options{Targets: func() []Target { return []Target{{Instance: "a", URL: srv.URL}} }})
	ctx := context.Background()
	c.Scrape(ctx)
	page.Store(exposition(7, 0, [3]float64{7, 7, 7}, 7)) // restarted: counters went down
	c.Scrape(ctx)
	if got := c.Stat(time.Minute, "").Rows[0].Requests; got != 7 {
		t.Errorf("requests after a restart = %v, want 7", got)
	}
}

func TestWindowIsBounded(t *testing.T) {
	c := New(Options{Interval: time.Second, Window: 3 * time.Second})
	for range 10 {
		c.Scrape(context.Background())
	}
	if n := len(c.samples); n != 4 {
		t.Errorf("kept %d samples, want Window/Interval+1 = 4", n)
	}
}
