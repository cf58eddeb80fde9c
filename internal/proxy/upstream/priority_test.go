package upstream

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// TestComputeLoads checks the loads against Envoy's priority, degraded
// and panic tables (levels of 100 hosts, so that a count is a
// percentage). Where the tables round otherwise, Envoy's code gives what
// rounding leaves to the first level with available hosts, as here.
func TestComputeLoads(t *testing.T) {
	// level is one priority level: its available, degraded and other
	// (unhealthy) hosts, out of 100.
	type level struct{ avail, degraded int }
	panicAt50 := &proxyconfig.Outlier{PanicPercent: 50}
	for _, tc := range []struct {
		name     string
		levels   []level
		od       *proxyconfig.Outlier
		overprov uint32
		want     []PriorityLoad
	}{
		{"all healthy", []level{{100, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 100, 0, false}, {1, 0, 0, false}}},
		{"72 % is fully healthy", []level{{72, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 100, 0, false}, {1, 0, 0, false}}},
		{"71 %", []level{{71, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 99, 0, false}, {1, 1, 0, false}}},
		{"half", []level{{50, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 70, 0, false}, {1, 30, 0, false}}},
		{"a quarter", []level{{25, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 35, 0, false}, {1, 65, 0, false}}},
		{"none", []level{{0, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 0, 0, false}, {1, 100, 0, false}}},
		{"overprovisioning 100", []level{{80, 0}, {100, 0}}, nil, 100, []PriorityLoad{{0, 80, 0, false}, {1, 20, 0, false}}},
		{"three levels", []level{{25, 0}, {25, 0}, {100, 0}}, nil, 140, []PriorityLoad{{0, 35, 0, false}, {1, 35, 0, false}, {2, 30, 0, false}}},
		// Healths {28, 42} add up to 70: scaled to {40, 60}.
		{"normalised", []level{{20, 0}, {30, 0}}, nil, 140, []PriorityLoad{{0, 40, 0, false}, {1, 60, 0, false}}},
		// Healths {35, 35, 28}: 35, 35, 28 of 98, and the 2 rounding
		// leaves to level 0.
		{"normalised, rounding", []level{{25, 0}, {25, 0}, {20, 0}}, nil, 140, []PriorityLoad{{0, 37, 0, false}, {1, 35, 0, false}, {2, 28, 0, false}}},
		{"degraded take what is left", []level{{71, 29}}, nil, 140, []PriorityLoad{{0, 99, 1, false}}},
		{"degraded, more", []level{{25, 65}}, nil, 140, []PriorityLoad{{0, 35, 65, false}}},
		{"degraded after every level's healthy hosts", []level{{50, 50}, {50, 0}}, nil, 140, []PriorityLoad{{0, 70, 0, false}, {1, 30, 0, false}}},
		{"only degraded", []level{{0, 100}}, nil, 140, []PriorityLoad{{0, 0, 100, false}}},
		// Below 100 % in all, a level under the threshold panics.
		{"no panic while the levels add up", []level{{25, 0}, {100, 0}}, panicAt50, 140, []PriorityLoad{{0, 35, 0, false}, {1, 65, 0, false}}},
		{"one level in panic", []level{{5, 0}, {65, 0}}, panicAt50, 140, []PriorityLoad{{0, 8, 0, true}, {1, 92, 0, false}}},
		{"total panic follows the numbers of hosts", []level{{25, 0}, {25, 0}}, panicAt50, 140, []PriorityLoad{{0, 50, 0, true}, {1, 50, 0, true}}},
		{"nothing available", []level{{0, 0}, {0, 0}}, panicAt50, 140, []PriorityLoad{{0, 50, 0, true}, {1, 50, 0, true}}},
		{"nothing available, no panic", []level{{0, 0}, {0, 0}}, &proxyconfig.Outlier{}, 140, []PriorityLoad{{0, 100, 0, false}, {1, 0, 0, false}}},
		{"single level below the threshold", []level{{40, 0}}, panicAt50, 140, []PriorityLoad{{0, 100, 0, true}}},
		{"single level above it", []level{{60, 0}}, panicAt50, 140, []PriorityLoad{{0, 100, 0, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hosts []HostStatus
			var prios []uint32
			for p, l := range tc.levels {
				prios = append(prios, uint32(p))
				for i := range 100 {
					health := proxyconfig.HealthUnhealthy
					switch {
					case i < l.avail:
						health = proxyconfig.HealthHealthy
					case i < l.avail+l.degraded:
						health = proxyconfig.HealthDegraded
					}
					hosts = append(hosts, HostStatus{Host: &Host{Addr: fmt.Sprintf("%d-%d", p, i)}, Priority: uint32(p), Health: health})
				}
			}
			ld := computeLoads(hosts, prios, tc.overprov, tc.od, time.Now().UnixNano())
			var got []PriorityLoad
			for i, p := range ld.priorities {
				got = append(got, PriorityLoad{p, ld.healthy[i], ld.degraded[i], ld.panic[i]})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("loads (-want +got):\n%s", diff)
			}
		})
	}
}

// priorityEndpoints is a cluster's endpoints in priority levels: level p
// has one locality of sizes[p] hosts, addressed p<level>-<i>:80.
func priorityEndpoints(sizes ...int) *proxyconfig.Endpoints {
	eps := &proxyconfig.Endpoints{ClusterName: "c"}
	for p, n := range sizes {
		loc := proxyconfig.Locality{Name: fmt.Sprintf("r/z%d/", p), Weight: 1, Priority: uint32(p)}
		for i := range n {
			loc.Endpoints = append(loc.Endpoints, proxyconfig.Endpoint{Address: fmt.Sprintf("p%d-%d:80", p, i), Weight: 1})
		}
		eps.Localities = append(eps.Localities, loc)
	}
	return eps
}

func priorityCluster(t *testing.T, lb proxyconfig.LBPolicy, od *proxyconfig.Outlier, eps *proxyconfig.Endpoints) *Cluster {
	t.Helper()
	cfg := cluster(lb)
	cfg.Outlier = od
	return NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
}

// levelShares picks n times and returns the share of picks each level
// got, by the "p<level>-" prefix of the address, and the picks by
// address.
func levelShares(t *testing.T, c *Cluster, n int, hashed bool) (map[string]float64, map[string]int) {
	t.Helper()
	counts := pickCounts(t, c, n, func(i int) (uint64, bool) { return mix(uint64(i), 0), hashed })
	byLevel := map[string]int{}
	for a, k := range counts {
		byLevel[a[:strings.Index(a, "-")]] += k
	}
	shares := map[string]float64{}
	for l, k := range byLevel {
		shares[l] = float64(k) / float64(n)
	}
	return shares, counts
}

func ejectHost(c *Cluster, addr string) {
	h := hostAt(c, addr)
	c.Observe(h, Result5xx)
	c.Observe(h, Result5xx)
}

// TestPriorityFailover: outlier detection's ejections move requests
// from priority 0 to the next levels by Envoy's priority loads, with
// every balancer; a consistent-hash key keeps one host; and the requests
// come back once the ejections end.
func TestPriorityFailover(t *testing.T) {
	for _, lb := range []proxyconfig.LBPolicy{proxyconfig.LBRoundRobin, proxyconfig.LBLeastRequest, proxyconfig.LBRandom, proxyconfig.LBRingHash, proxyconfig.LBMaglev} {
		t.Run(lb.String(), func(t *testing.T) {
			hashed := lb == proxyconfig.LBRingHash || lb == proxyconfig.LBMaglev
			od := twoInARow
			c := priorityCluster(t, lb, &od, priorityEndpoints(2, 2, 1))
			if s, counts := levelShares(t, c, 1000, hashed); s["p0"] != 1 {
				t.Fatalf("all in service: picks %v, want priority 0 only", counts)
			}
			// Half of priority 0 out: 1.4 × 50 % = 70 % stays there.
			ejectHost(c, "p0-0:80")
			s, counts := levelShares(t, c, 4000, hashed)
			if s["p0"] < 0.64 || s["p0"] > 0.76 || s["p2"] != 0 || counts["p0-0:80"] != 0 {
				t.Errorf("half of priority 0 ejected: picks %v (shares %v), want about 70 %% on p0-1, 30 %% on priority 1", counts, s)
			}
			if got := c.PriorityLoads(); !cmp.Equal(got[:2], []PriorityLoad{{0, 70, 0, false}, {1, 30, 0, false}}) {
				t.Errorf("PriorityLoads %v, want 70 and 30", got)
			}
			if hashed {
				// The hash chooses the level: a key keeps its host.
				for k := range uint64(100) {
					first, _ := c.Pick("", mix(k, 7), true)
					for range 10 {
						if h, _ := c.Pick("", mix(k, 7), true); h != first {
							t.Fatalf("key %d went to %s and %s", k, first.Addr, h.Addr)
						}
					}
				}
			}
			// All of priority 0 out: priority 1 takes everything.
			ejectHost(c, "p0-1:80")
			if s, counts := levelShares(t, c, 1000, hashed); s["p1"] != 1 {
				t.Errorf("priority 0 ejected: picks %v, want priority 1 only", counts)
			}
			// Priority 1 half out too: it keeps 70 %, priority 2 takes 30.
			ejectHost(c, "p1-0:80")
			s, counts = levelShares(t, c, 4000, hashed)
			if s["p1"] < 0.64 || s["p1"] > 0.76 || s["p0"] != 0 || counts["p1-0:80"] != 0 {
				t.Errorf("priority 0 and half of 1 ejected: picks %v (shares %v), want about 70 %% on p1-1, the rest on priority 2", counts, s)
			}
			// The ejections end, on time: the loads follow without an
			// ejection or an update.
			c.outlierMu.Lock()
			soon := time.Now().Add(20 * time.Millisecond).UnixNano()
			for _, a := range []string{"p0-0:80", "p0-1:80", "p1-0:80"} {
				hostAt(c, a).outlier.ejectedUntil.Store(soon)
			}
			st := c.st.Load()
			st.lv.loads.Store(st.computeLoads(time.Now().UnixNano()))
			c.outlierMu.Unlock()
			deadline := time.Now().Add(5 * time.Second)
			for {
				if s, _ := levelShares(t, c, 200, hashed); s["p0"] == 1 {
					break
				}
				if time.Now().After(deadline) {
					_, counts := levelShares(t, c, 200, hashed)
					t.Fatalf("the ejections ended: picks %v, want priority 0 only", counts)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestPriorityEDSHealth: endpoints EDS calls unhealthy or degraded move
// requests to the next levels and to degraded hosts, without outlier
// detection too.
func TestPriorityEDSHealth(t *testing.T) {
	t.Run("unhealthy priority 0", func(t *testing.T) {
		eps := priorityEndpoints(2, 2)
		for i := range eps.Localities[0].Endpoints {
			eps.Localities[0].Endpoints[i].Health = proxyconfig.HealthUnhealthy
		}
		c := priorityCluster(t, proxyconfig.LBRoundRobin, nil, eps)
		if s, counts := levelShares(t, c, 1000, false); s["p1"] != 1 {
			t.Errorf("picks %v, want priority 1 only", counts)
		}
	})
	t.Run("half of priority 0 unhealthy", func(t *testing.T) {
		eps := priorityEndpoints(2, 2)
		eps.Localities[0].Endpoints[0].Health = proxyconfig.HealthUnhealthy
		c := priorityCluster(t, proxyconfig.LBRoundRobin, nil, eps)
		s, counts := levelShares(t, c, 4000, false)
		if s["p0"] < 0.64 || s["p0"] > 0.76 || counts["p0-0:80"] != 0 {
			t.Errorf("picks %v (shares %v), want about 70 %% on p0-1", counts, s)
		}
	})
	t.Run("overprovisioning factor", func(t *testing.T) {
		eps := priorityEndpoints(4, 1)
		eps.Localities[0].Endpoints[0].Health = proxyconfig.HealthUnhealthy
		eps.OverprovisioningFactor = 100 // 3 of 4: 75 %, where 1.4 would make it 100
		c := priorityCluster(t, proxyconfig.LBRoundRobin, nil, eps)
		if s, counts := levelShares(t, c, 4000, false); s["p0"] < 0.69 || s["p0"] > 0.81 {
			t.Errorf("picks %v (shares %v), want about 75 %% on priority 0", counts, s)
		}
	})
	t.Run("degraded", func(t *testing.T) {
		eps := priorityEndpoints(4)
		eps.Localities[0].Endpoints[0].Health = proxyconfig.HealthDegraded
		eps.Localities[0].Endpoints[1].Health = proxyconfig.HealthDegraded
		c := priorityCluster(t, proxyconfig.LBRoundRobin, nil, eps)
		// Two of four healthy: 70 % to them, the rest to the degraded.
		_, counts := levelShares(t, c, 4000, false)
		if d := float64(counts["p0-0:80"]+counts["p0-1:80"]) / 4000; d < 0.24 || d > 0.36 {
			t.Errorf("picks %v, want about 30 %% on the degraded hosts", counts)
		}
	})
}

// TestPriorityPanic: below 100 % of health in all, a level with fewer
// than the panic threshold of its hosts available balances over all of
// them; with every level in panic the load follows the numbers of hosts;
// with no threshold nothing is picked.
func TestPriorityPanic(t *testing.T) {
	od := twoInARow
	od.PanicPercent = 50
	t.Run("everything ejected", func(t *testing.T) {
		c := priorityCluster(t, proxyconfig.LBRoundRobin, &od, priorityEndpoints(2, 2))
		for _, a := range []string{"p0-0:80", "p0-1:80", "p1-0:80", "p1-1:80"} {
			ejectHost(c, a)
		}
		s, counts := levelShares(t, c, 4000, false)
		if len(counts) != 4 || s["p0"] < 0.44 || s["p0"] > 0.56 {
			t.Errorf("picks %v (shares %v), want all four hosts, half on each level", counts, s)
		}
	})
	t.Run("one level in panic", func(t *testing.T) {
		// Priority 0: 1 of 5 in (28 %, under the threshold); 1: 1 of 2
		// (70 %, at it): 29 % to all of priority 0, 71 % to p1-1.
		c := priorityCluster(t, proxyconfig.LBRoundRobin, &od, priorityEndpoints(5, 2))
		for _, a := range []string{"p0-0:80", "p0-1:80", "p0-2:80", "p0-3:80", "p1-0:80"} {
			ejectHost(c, a)
		}
		if got := c.PriorityLoads(); !cmp.Equal(got, []PriorityLoad{{0, 29, 0, true}, {1, 71, 0, false}}) {
			t.Errorf("PriorityLoads %v", got)
		}
		s, counts := levelShares(t, c, 4000, false)
		if counts["p0-0:80"] == 0 || counts["p1-0:80"] != 0 || s["p0"] < 0.23 || s["p0"] > 0.35 {
			t.Errorf("picks %v (shares %v), want 29 %% over all of priority 0, none to the ejected p1-0", counts, s)
		}
	})
	t.Run("no threshold", func(t *testing.T) {
		od := od
		od.PanicPercent = 0
		c := priorityCluster(t, proxyconfig.LBRoundRobin, &od, priorityEndpoints(1, 1))
		ejectHost(c, "p0-0:80")
		ejectHost(c, "p1-0:80")
		if _, err := c.Pick("", 0, false); !errors.Is(err, ErrNoHealthyUpstream) {
			t.Errorf("everything ejected, no panic threshold: Pick error %v, want ErrNoHealthyUpstream", err)
		}
	})
}

// TestMaxEjectionPercentAcrossLevels: max_ejection_percent counts the
// hosts of every priority level, as Envoy's detector does.
func TestMaxEjectionPercentAcrossLevels(t *testing.T) {
	od := twoInARow
	od.MaxEjectionPercent = 50
	c := priorityCluster(t, proxyconfig.LBRoundRobin, &od, priorityEndpoints(2, 2))
	for _, a := range []string{"p0-0:80", "p0-1:80", "p1-0:80"} {
		ejectHost(c, a)
	}
	var got []bool
	for _, a := range []string{"p0-0:80", "p0-1:80", "p1-0:80"} {
		got = append(got, hostAt(c, a).Ejected())
	}
	if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
		t.Errorf("ejected (-want +got):\n%s", diff)
	}
}
