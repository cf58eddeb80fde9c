package bookinfo

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxInFlight bounds the requests the traffic generator has open at once;
// a tick that finds them all busy is skipped, never queued, so a slow
// target cannot make the generator burst later.
const maxInFlight = 32

// traffic sends GET requests to target at a steady rate until its context
// ends.
type traffic struct {
	target       string
	rate         float64  // requests per second
	users        []string // end-users, one every fifth request
	summaryEvery time.Duration
	client       *http.Client
	log          *lineLog

	mu      sync.Mutex
	window  tally // since the last summary
	total   tally
	started time.Time
}

// tally counts outcomes: by status code, "error" for no response, and
// "skipped" for ticks with every request slot busy.
type tally map[string]int

func (t tally) count() (n int) {
	for k, v := range t {
		if k != "skipped" {
			n += v
		}
	}
	return n
}

// String is "18 ok, errors: 503 x2, error x1" with keys sorted.
func (t tally) String() string {
	ok := t["200"]
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if k != "200" && k != "skipped" {
			errs = append(errs, fmt.Sprintf("%s x%d", k, t[k]))
		}
	}
	s := fmt.Sprintf("%d requests, %d ok", t.count(), ok)
	if len(errs) > 0 {
		s += ", errors: " + strings.Join(errs, ", ")
	}
	if n := t["skipped"]; n > 0 {
		s += fmt.Sprintf(", %d skipped (target slow)", n)
	}
	return s
}

// userFor is the end-user of request i (from 0): every fifth request
// carries the next user of the list, the others none.
func userFor(i int, users []string) string {
	if len(users) == 0 || i%5 != 0 {
		return ""
	}
	return users[(i/5)%len(users)]
}

func (g *traffic) run(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / g.rate)
	g.started = time.Now()
	g.window, g.total = tally{}, tally{}
	g.log.printf("traffic: %s at %g requests/s (end-users %s)", g.target, g.rate, strings.Join(g.users, ","))

	// A ticker drops ticks it cannot deliver, so the rate is a ceiling.
	tick := time.NewTicker(interval)
	defer tick.Stop()
	summary := time.NewTicker(g.summaryEvery)
	defer summary.Stop()
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.log.printf("traffic: done after %s: %s", time.Since(g.started).Round(time.Second), g.total)
	}()
	for i := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-summary.C:
			g.mu.Lock()
			w := g.window
			g.window = tally{}
			g.mu.Unlock()
			g.log.printf("traffic: last %s: %s", g.summaryEvery, w)
		case <-tick.C:
			select {
			case slots <- struct{}{}:
			default:
				g.record("skipped")
				continue
			}
			user := userFor(i, g.users)
			i++
			wg.Go(func() {
				defer func() { <-slots }()
				outcome := g.send(ctx, user)
				if ctx.Err() == nil {
					g.record(outcome)
				}
			})
		}
	}
}

func (g *traffic) record(outcome string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.window[outcome]++
	g.total[outcome]++
}

// send makes one request and returns its outcome for the tally.
func (g *traffic) send(ctx context.Context, user string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.target, nil)
	if err != nil {
		return "error"
	}
	req.Header.Set("User-Agent", "weft-traffic")
	if user != "" {
		req.Header.Set("end-user", user)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return "error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}
