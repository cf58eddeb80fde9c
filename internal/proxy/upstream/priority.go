package upstream

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// Priority levels, as Envoy balances them: each level's health is the
// share of its endpoints that are available (EDS HEALTHY or UNKNOWN, not
// ejected by outlier detection) times the overprovisioning factor (1.4 by
// default), capped at 100 %; level 0 takes its health in percent of the
// requests, level 1 its own of what is left, and so on. When the healths
// add up to less than 100 they are scaled up so the loads still do.
// Degraded endpoints (EDS DEGRADED) take what the available ones of every
// level leave, level by level, in the same way. Below 100 % in all, a
// level whose available and degraded share is under the panic threshold is in panic:
// its requests go to all of its hosts, whatever their health; when every
// level is in panic, the load follows the levels' numbers of hosts.

// levels is the per-priority state of a cluster that has more than one
// level taking requests, or outlier detection (whose ejections move
// load between levels).
type levels struct {
	// prios are the levels' priorities and sets their balancers, highest
	// priority (0) first; levels without endpoints are left out.
	prios []uint32
	sets  []prioSet
	// loads are the current loads; see Cluster.refreshLoads and eject
	// for when they are recomputed.
	loads atomic.Pointer[lbLoads]
}

// prioSet is one priority level's balancers.
type prioSet struct {
	// healthy picks among the level's endpoints that EDS calls HEALTHY
	// or UNKNOWN, degraded among its DEGRADED ones; all among every
	// endpoint of the level, for panic (the healthy picker when they are
	// the same hosts; nil when the cluster cannot panic). Each is nil
	// when it has no host.
	healthy, degraded, all picker
	// healthyPool and degradedPool are the hosts healthy and degraded
	// choose from, once each (outlier detection only).
	healthyPool, degradedPool []*Host
}

// lbLoads are the shares of requests, in percent, that each level's
// available and degraded hosts take. Read-only once made.
type lbLoads struct {
	// priorities are the levels the other slices index.
	priorities        []uint32
	healthy, degraded []uint32
	// panic marks a level in panic.
	panic []bool
	// sole is the index of the level that takes every request (degraded
	// hosts when soleDegraded), or -1 when the load is split.
	sole         int
	soleDegraded bool
	// until is when the first ejection these loads count ends
	// (UnixNano); 0 when they count none.
	until int64
}

// choose picks the level of a request: by the hash for consistent-hash
// balancers, as Envoy does, at random otherwise.
func (ld *lbLoads) choose(hash uint64, hasHash bool) (int, bool) {
	if ld.sole >= 0 {
		return ld.sole, ld.soleDegraded
	}
	var r uint32
	if hasHash {
		r = uint32(hash % 100)
	} else {
		r = rand.Uint32N(100)
	}
	for i, l := range ld.healthy {
		if r < l {
			return i, false
		}
		r -= l
	}
	for i, l := range ld.degraded {
		if r < l {
			return i, true
		}
		r -= l
	}
	return 0, false // not reached: the loads add up to 100
}

// priorities returns the levels that have endpoints, in order.
func priorities(hosts []HostStatus) []uint32 {
	var out []uint32
	for _, h := range hosts {
		if !slices.Contains(out, h.Priority) {
			out = append(out, h.Priority)
		}
	}
	slices.Sort(out)
	return out
}

func usable(h proxyconfig.Health) bool {
	return h == proxyconfig.HealthHealthy || h == proxyconfig.HealthUnknown
}

// computeLoads computes the loads of the levels prios (sorted, each with
// endpoints in hosts) at now. overprov is the overprovisioning factor in
// percent; od the cluster's outlier detection, nil for none (then no
// host is ejected and no level panics).
func computeLoads(hosts []HostStatus, prios []uint32, overprov uint32, od *proxyconfig.Outlier, now int64) *lbLoads {
	n := len(prios)
	ld := &lbLoads{priorities: prios, healthy: make([]uint32, n), degraded: make([]uint32, n), panic: make([]bool, n), sole: -1}
	if n == 0 {
		return ld
	}
	total := make([]uint64, n)
	avail := make([]uint64, n) // healthy, then degraded below
	degr := make([]uint64, n)
	for _, hs := range hosts {
		i, _ := slices.BinarySearch(prios, hs.Priority)
		total[i]++
		if od != nil {
			if until := hs.Host.outlier.ejectedUntil.Load(); until > now {
				if ld.until == 0 || until < ld.until {
					ld.until = until
				}
				continue
			}
		}
		switch {
		case usable(hs.Health):
			avail[i]++
		case hs.Health == proxyconfig.HealthDegraded:
			degr[i]++
		}
	}
	health := make([]uint32, n)
	degHealth := make([]uint32, n)
	var sum uint32
	for i := range n {
		health[i] = uint32(min(100, uint64(overprov)*avail[i]/total[i]))
		degHealth[i] = uint32(min(100, uint64(overprov)*degr[i]/total[i]))
		sum += health[i] + degHealth[i]
	}
	norm := min(100, sum) // Envoy's normalized total health
	var threshold float64
	if od != nil {
		threshold = od.PanicPercent
	}
	if norm == 0 && threshold == 0 {
		// Nothing is available and nothing may panic: level 0 takes
		// the requests, and finds no host.
		ld.healthy[0] = 100
		ld.sole = 0
		return ld
	}
	if norm > 0 {
		left := uint32(100)
		firstHealthy, firstDegraded := -1, -1
		for i := range n {
			ld.healthy[i] = min(left, health[i]*100/norm)
			left -= ld.healthy[i]
			if firstHealthy < 0 && health[i] > 0 {
				firstHealthy = i
			}
		}
		for i := range n {
			ld.degraded[i] = min(left, degHealth[i]*100/norm)
			left -= ld.degraded[i]
			if firstDegraded < 0 && degHealth[i] > 0 {
				firstDegraded = i
			}
		}
		// What rounding left goes to the first level with a host.
		if firstHealthy >= 0 {
			ld.healthy[firstHealthy] += left
		} else {
			ld.degraded[firstDegraded] += left
		}
	}
	if norm < 100 {
		all := true
		for i := range n {
			ld.panic[i] = float64(avail[i]+degr[i])*100 < threshold*float64(total[i])
			all = all && ld.panic[i]
		}
		if all {
			// Total panic: the load follows the numbers of hosts.
			var hosts uint64
			for _, t := range total {
				hosts += t
			}
			left := uint32(100)
			for i := range n {
				ld.healthy[i] = uint32(100 * total[i] / hosts)
				ld.degraded[i] = 0
				left -= ld.healthy[i]
			}
			ld.healthy[0] += left
		}
	}
	for i := range n {
		switch {
		case ld.healthy[i] == 100:
			ld.sole = i
		case ld.degraded[i] == 100:
			ld.sole, ld.soleDegraded = i, true
		}
	}
	return ld
}

// refreshLoads recomputes the loads once the first ejection they count
// has ended. Requests that find another doing it go on with the loads
// they have: the ejected-or-not check of each pick is exact, only the
// shares lag.
func (c *Cluster) refreshLoads(st *state, now int64) *lbLoads {
	if !c.outlierMu.TryLock() {
		return st.lv.loads.Load()
	}
	defer c.outlierMu.Unlock()
	ld := st.lv.loads.Load()
	if ld.until != 0 && now >= ld.until {
		ld = st.computeLoads(now)
		st.lv.loads.Store(ld)
	}
	return ld
}

// computeLoads computes the loads of the state's levels at now.
func (st *state) computeLoads(now int64) *lbLoads {
	return computeLoads(st.hosts, st.lv.prios, st.overprov, st.cfg.Outlier, now)
}

// pickLevel chooses a level by the loads, then a host in it.
func (c *Cluster) pickLevel(st *state, hash uint64, hasHash bool, now int64) *Host {
	ld := st.lv.loads.Load()
	od := st.cfg.Outlier
	if od != nil && ld.until != 0 && now >= ld.until {
		ld = c.refreshLoads(st, now)
	}
	i, degraded := ld.choose(hash, hasHash)
	if i >= len(st.lv.sets) {
		return nil // no endpoint at all
	}
	p := &st.lv.sets[i]
	if ld.panic[i] {
		if p.all == nil {
			return nil
		}
		return p.all.pick(hash, hasHash)
	}
	pk, pool := p.healthy, p.healthyPool
	if degraded {
		pk, pool = p.degraded, p.degradedPool
	}
	if pk == nil {
		return nil
	}
	h := pk.pick(hash, hasHash)
	if od != nil {
		h = inService(pk, pool, h, hash, hasHash, now)
	}
	return h
}

// PriorityLoad is one priority level's share of a cluster's requests.
type PriorityLoad struct {
	// Priority is the level.
	Priority uint32
	// Healthy and Degraded are the percentages of requests that go to
	// its available hosts and to its degraded ones.
	Healthy, Degraded uint32
	// Panic says the level is in panic: its requests go to all of its
	// hosts, ejected or unhealthy ones too.
	Panic bool
}

// PriorityLoads returns the current loads of the cluster's priority
// levels (none for ORIGINAL_DST clusters).
func (c *Cluster) PriorityLoads() []PriorityLoad {
	st := c.st.Load()
	if st.cfg.Type == proxyconfig.DiscoveryOriginalDst {
		return nil
	}
	var ld *lbLoads
	if st.lv != nil {
		ld = c.refreshLoads(st, nowNano())
	} else {
		// One level, or none, without outlier detection: loads that
		// never change, computed again here (an admin request) rather
		// than kept by every such cluster for its life.
		ld = computeLoads(st.hosts, priorities(st.hosts), st.overprov, st.cfg.Outlier, nowNano())
	}
	out := make([]PriorityLoad, len(ld.priorities))
	for i, p := range ld.priorities {
		out[i] = PriorityLoad{Priority: p, Healthy: ld.healthy[i], Degraded: ld.degraded[i], Panic: ld.panic[i]}
	}
	return out
}

func nowNano() int64 { return time.Now().UnixNano() }
