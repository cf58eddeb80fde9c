package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// outlierCluster is a cluster of n equal hosts whose outlier detection
// ejects after two 5xx in a row.
func outlierCluster(t *testing.T, lb proxyconfig.LBPolicy, n int, od proxyconfig.Outlier) *Cluster {
	t.Helper()
	cfg := cluster(lb)
	cfg.Outlier = &od
	ws := make([]uint32, n)
	for i := range ws {
		ws[i] = 1
	}
	return NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": endpoints(ws...)})["c"]
}

var twoInARow = proxyconfig.Outlier{Consecutive5xx: 2, Enforcing5xx: 100, ConsecutiveGateway: 5, BaseEjection: time.Hour,
	MaxEjection: 5 * time.Hour, Interval: time.Hour, MaxEjectionPercent: 100}

func hostAt(c *Cluster, addr string) *Host { return c.st.Load().host(addr) }

func TestOutlierEjection(t *testing.T) {
	for _, lb := range []proxyconfig.LBPolicy{proxyconfig.LBRoundRobin, proxyconfig.LBLeastRequest, proxyconfig.LBRandom, proxyconfig.LBRingHash, proxyconfig.LBMaglev} {
		t.Run(lb.String(), func(t *testing.T) {
			c := outlierCluster(t, lb, 3, twoInARow)
			bad := hostAt(c, "10.0.0.1:80")
			c.Observe(bad, Result5xx)
			c.Observe(bad, ResultOK) // a success in between: no run
			c.Observe(bad, Result5xx)
			if bad.Ejected() {
				t.Fatal("ejected after 5xx, OK, 5xx")
			}
			c.Observe(bad, ResultGateway)
			if !bad.Ejected() {
				t.Fatal("not ejected after two 5xx in a row")
			}
			hashed := lb == proxyconfig.LBRingHash || lb == proxyconfig.LBMaglev
			counts := pickCounts(t, c, 300, func(i int) (uint64, bool) { return uint64(i) * 0x9e3779b97f4a7c15, hashed })
			if counts[bad.Addr] != 0 || counts["10.0.0.0:80"] == 0 || counts["10.0.0.2:80"] == 0 {
				t.Errorf("picks with 10.0.0.1 ejected: %v", counts)
			}
			// The ejection ends: back in service.
			bad.outlier.ejectedUntil.Store(time.Now().UnixNano() - 1)
			if counts := pickCounts(t, c, 300, func(i int) (uint64, bool) { return uint64(i) * 0x9e3779b97f4a7c15, hashed }); counts[bad.Addr] == 0 {
				t.Errorf("picks after the ejection ended: %v", counts)
			}
		})
	}
}

// TestOutlierRuns: a client that went away or a full circuit breaker
// says nothing about the host and does not break a run of errors.
func TestOutlierRuns(t *testing.T) {
	c := outlierCluster(t, proxyconfig.LBRoundRobin, 3, twoInARow)
	h := hostAt(c, "10.0.0.0:80")
	c.Observe(h, Result5xx)
	c.Observe(h, ResultNone)
	c.Observe(h, Result5xx)
	if !h.Ejected() {
		t.Error("5xx, a cancelled request, 5xx: not ejected")
	}
}

// TestOutlierHashAffinity: with the host of a consistent-hash key
// ejected, the key goes to one other host, not to all of them, and keys
// whose host is in service stay where they were.
func TestOutlierHashAffinity(t *testing.T) {
	for _, lb := range []proxyconfig.LBPolicy{proxyconfig.LBRingHash, proxyconfig.LBMaglev} {
		t.Run(lb.String(), func(t *testing.T) {
			c := outlierCluster(t, lb, 5, twoInARow)
			before := map[uint64]string{}
			for k := range uint64(200) {
				h, _ := c.Pick("", k*0x9e3779b97f4a7c15, true)
				before[k] = h.Addr
			}
			bad := hostAt(c, before[0])
			c.Observe(bad, Result5xx)
			c.Observe(bad, Result5xx)
			for k, was := range before {
				first, _ := c.Pick("", k*0x9e3779b97f4a7c15, true)
				for range 20 {
					if h, _ := c.Pick("", k*0x9e3779b97f4a7c15, true); h != first {
						t.Fatalf("key %d went to %s and %s", k, first.Addr, h.Addr)
					}
				}
				if first == bad || was != bad.Addr && first.Addr != was {
					t.Errorf("key %d: %s before, %s with %s ejected", k, was, first.Addr, bad.Addr)
				}
			}
		})
	}
}

// TestOutlierFallbackSpread: with most hosts ejected, the requests the
// balancer's picks cannot place are spread over the hosts in service.
func TestOutlierFallbackSpread(t *testing.T) {
	od := twoInARow
	c := outlierCluster(t, proxyconfig.LBRandom, 10, od)
	for i := range 6 {
		h := hostAt(c, fmt.Sprintf("10.0.0.%d:80", i))
		c.Observe(h, Result5xx)
		c.Observe(h, Result5xx)
	}
	counts := pickCounts(t, c, 4000, noHash)
	for i := 6; i < 10; i++ {
		a := fmt.Sprintf("10.0.0.%d:80", i)
		if n := counts[a]; n < 700 || n > 1300 {
			t.Errorf("%s got %d of 4000 picks; want about a quarter: %v", a, n, counts)
		}
	}
}

func TestOutlierLimits(t *testing.T) {
	t.Run("max ejection percent keeps all but one host", func(t *testing.T) {
		od := twoInARow
		od.MaxEjectionPercent = 10 // of 3 hosts: none, but one may always go
		c := outlierCluster(t, proxyconfig.LBRoundRobin, 3, od)
		for _, a := range []string{"10.0.0.0:80", "10.0.0.1:80"} {
			c.Observe(hostAt(c, a), Result5xx)
			c.Observe(hostAt(c, a), Result5xx)
		}
		if !hostAt(c, "10.0.0.0:80").Ejected() || hostAt(c, "10.0.0.1:80").Ejected() {
			t.Errorf("ejected: first %v, second %v; want the first only", hostAt(c, "10.0.0.0:80").Ejected(), hostAt(c, "10.0.0.1:80").Ejected())
		}
	})
	t.Run("panic threshold", func(t *testing.T) {
		od := twoInARow
		od.PanicPercent = 50
		c := outlierCluster(t, proxyconfig.LBRoundRobin, 2, od)
		for _, a := range []string{"10.0.0.0:80", "10.0.0.1:80"} {
			c.Observe(hostAt(c, a), Result5xx)
			c.Observe(hostAt(c, a), Result5xx)
		}
		// Both out, under 50 % in service: ejections are ignored.
		if counts := pickCounts(t, c, 10, noHash); len(counts) != 2 {
			t.Errorf("picks in panic: %v, want both hosts", counts)
		}
		od.PanicPercent = 0
		c = outlierCluster(t, proxyconfig.LBRoundRobin, 1, od)
		h := hostAt(c, "10.0.0.0:80")
		c.Observe(h, Result5xx)
		c.Observe(h, Result5xx)
		if _, err := c.Pick("", 0, false); !errors.Is(err, ErrNoHealthyUpstream) {
			t.Errorf("the only host ejected, no panic threshold: Pick error %v, want ErrNoHealthyUpstream", err)
		}
	})
	t.Run("gateway errors", func(t *testing.T) {
		od := twoInARow
		od.Consecutive5xx, od.ConsecutiveGateway, od.EnforcingGateway = 0, 3, 100
		c := outlierCluster(t, proxyconfig.LBRoundRobin, 3, od)
		h := hostAt(c, "10.0.0.0:80")
		c.Observe(h, ResultGateway)
		c.Observe(h, ResultGateway)
		c.Observe(h, Result5xx) // a 500 breaks a run of gateway errors
		c.Observe(h, ResultGateway)
		c.Observe(h, ResultGateway)
		if h.Ejected() {
			t.Fatal("ejected without three gateway errors in a row")
		}
		c.Observe(h, ResultGateway)
		if !h.Ejected() {
			t.Fatal("not ejected after three gateway errors in a row")
		}
	})
	t.Run("ejections grow and decay", func(t *testing.T) {
		od := twoInARow
		od.BaseEjection, od.MaxEjection, od.Interval = time.Minute, 150*time.Second, time.Hour
		c := outlierCluster(t, proxyconfig.LBRoundRobin, 3, od)
		h := hostAt(c, "10.0.0.0:80")
		// eject ejects h again, its previous ejection having ended at ended.
		eject := func(ended time.Time) time.Duration {
			h.outlier.ejectedUntil.Store(ended.UnixNano())
			start := time.Now()
			c.Observe(h, Result5xx)
			c.Observe(h, Result5xx)
			return time.Duration(h.outlier.ejectedUntil.Load() - start.UnixNano()).Round(time.Second)
		}
		for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 150 * time.Second, 150 * time.Second, 150 * time.Second} {
			if got := eject(time.Now()); got != want {
				t.Errorf("ejection %d lasts %v, want %v", i+1, got, want)
			}
		}
		if n := h.outlier.ejections.Load(); n != 3 {
			t.Errorf("count of ejections %d after reaching the maximum, want 3 (ceil(150s/60s))", n)
		}
		// Two intervals in service since the last one ended: 3 - 2 + 1.
		if got := eject(time.Now().Add(-2*time.Hour - time.Minute)); got != 2*time.Minute {
			t.Errorf("after two intervals in service the ejection lasts %v, want 2m", got)
		}
	})
}

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		status    int
		err       error
		cancelled bool
		want      Result
	}{
		{200, nil, false, ResultOK}, {404, nil, false, ResultOK}, {500, nil, false, Result5xx},
		{503, nil, false, ResultGateway}, {504, nil, false, ResultGateway},
		{0, errors.New("connect refused"), false, ResultGateway},
		{0, errors.New("canceled"), true, ResultNone},
		{0, fmt.Errorf("dial: %w", ErrOverflow), false, ResultNone},
		{0, fmt.Errorf("%w %w", errors.New("per-try timeout"), ErrPending), false, ResultNone},
		// gRPC: the grpc-status header of a trailers-only answer.
		{-14, nil, false, ResultGateway}, {-13, nil, false, Result5xx}, {-5, nil, false, ResultOK}, {-0, nil, false, ResultOK},
	} {
		var resp *http.Response
		if tc.err == nil {
			resp = &http.Response{StatusCode: tc.status, Header: http.Header{}}
			if tc.status < 0 {
				resp.StatusCode = 200
				resp.Header.Set("Grpc-Status", fmt.Sprint(-tc.status))
			}
		}
		if got := ResultOf(resp, tc.err, tc.cancelled); got != tc.want {
			t.Errorf("ResultOf(%d, %v, %v) = %d, want %d", tc.status, tc.err, tc.cancelled, got, tc.want)
		}
	}
}
