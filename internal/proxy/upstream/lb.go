package upstream

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

// picker chooses a host. Implementations are safe for concurrent use and
// never block for long.
type picker interface {
	// pick returns a host, or nil when there is none. hash is used only
	// by consistent-hash pickers and only when hasHash is true.
	pick(hash uint64, hasHash bool) *Host
}

// weighted is one host with its effective weight.
type weighted struct {
	h *Host
	w uint64
}

func newPicker(cfg *proxyconfig.Cluster, hs []weighted) picker {
	if len(hs) == 0 {
		return emptyPicker{}
	}
	switch cfg.LB {
	case proxyconfig.LBLeastRequest:
		return newLeastRequest(hs, int(cfg.LeastRequestChoices))
	case proxyconfig.LBRandom:
		return newRandom(hs)
	case proxyconfig.LBRingHash:
		return newRing(hs, cfg.RingMinSize, cfg.RingMaxSize)
	case proxyconfig.LBMaglev:
		return newMaglev(hs, cfg.MaglevTableSize)
	}
	return newRoundRobin(hs)
}

type emptyPicker struct{}

func (emptyPicker) pick(uint64, bool) *Host { return nil }

func equalWeights(hs []weighted) bool {
	for _, h := range hs[1:] {
		if h.w != hs[0].w {
			return false
		}
	}
	return true
}

// roundRobin is smooth weighted round robin; with equal weights it is a
// lock-free counter.
type roundRobin struct {
	hs    []weighted
	equal bool
	next  atomic.Uint64

	mu      sync.Mutex
	current []int64
	total   int64
}

func newRoundRobin(hs []weighted) *roundRobin {
	rr := &roundRobin{hs: hs, equal: equalWeights(hs), current: make([]int64, len(hs))}
	for _, h := range hs {
		rr.total += int64(h.w)
	}
	// Start at a random place so that proxies do not all hit the first host.
	rr.next.Store(rand.Uint64N(uint64(len(hs))))
	return rr
}

func (rr *roundRobin) pick(uint64, bool) *Host {
	if rr.equal {
		return rr.hs[(rr.next.Add(1)-1)%uint64(len(rr.hs))].h
	}
	rr.mu.Lock()
	best := 0
	for i := range rr.hs {
		rr.current[i] += int64(rr.hs[i].w)
		if rr.current[i] > rr.current[best] {
			best = i
		}
	}
	rr.current[best] -= rr.total
	rr.mu.Unlock()
	return rr.hs[best].h
}

// random is weighted random.
type random struct {
	hs    []weighted
	cum   []uint64
	equal bool
}

func newRandom(hs []weighted) *random {
	r := &random{hs: hs, equal: equalWeights(hs), cum: make([]uint64, len(hs))}
	var sum uint64
	for i, h := range hs {
		sum += h.w
		r.cum[i] = sum
	}
	return r
}

func (r *random) pick(uint64, bool) *Host {
	if r.equal {
		return r.hs[rand.IntN(len(r.hs))].h
	}
	return r.at(rand.Uint64N(r.cum[len(r.cum)-1]))
}

func (r *random) at(n uint64) *Host {
	i := sort.Search(len(r.cum), func(i int) bool { return r.cum[i] > n })
	return r.hs[i].h
}

// leastRequest samples `choices` hosts and takes the one with the fewest
// active requests relative to its weight (power of two choices by default).
type leastRequest struct {
	hs      []weighted
	choices int
	rnd     *random
}

func newLeastRequest(hs []weighted, choices int) *leastRequest {
	if choices < 2 {
		choices = 2
	}
	return &leastRequest{hs: hs, choices: choices, rnd: newRandom(hs)}
}

func (lr *leastRequest) pick(uint64, bool) *Host {
	if len(lr.hs) == 1 {
		return lr.hs[0].h
	}
	var best *Host
	var bestScore float64
	for i := 0; i < lr.choices; i++ {
		h := lr.hs[rand.IntN(len(lr.hs))]
		score := float64(h.w) / float64(h.h.active.Load()+1)
		if best == nil || score > bestScore {
			best, bestScore = h.h, score
		}
	}
	return best
}

// ring is a consistent-hash ring (Envoy's RING_HASH).
type ring struct {
	hashes []uint64
	hosts  []*Host
	rnd    *random
}

func newRing(hs []weighted, minSize, maxSize uint64) *ring {
	var total, minW uint64
	for _, h := range hs {
		total += h.w
		if minW == 0 || h.w < minW {
			minW = h.w
		}
	}
	minNorm := float64(minW) / float64(total)
	scale := float64(minSize)
	if need := float64(minSize) / minNorm / float64(len(hs)); need > scale {
		scale = need
	}
	// Every host gets at least one entry; the ring never exceeds maxSize.
	scale = min(scale, float64(maxSize))
	r := &ring{rnd: newRandom(hs)}
	type entry struct {
		hash uint64
		h    *Host
	}
	var entries []entry
	for _, h := range hs {
		n := uint64(float64(h.w) / float64(total) * scale)
		if n == 0 {
			n = 1
		}
		for i := uint64(0); i < n; i++ {
			entries = append(entries, entry{router.HashString(h.h.Addr + "_" + strconv.FormatUint(i, 10)), h.h})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hash < entries[j].hash })
	r.hashes = make([]uint64, len(entries))
	r.hosts = make([]*Host, len(entries))
	for i, e := range entries {
		r.hashes[i], r.hosts[i] = e.hash, e.h
	}
	return r
}

func (r *ring) pick(hash uint64, hasHash bool) *Host {
	if !hasHash {
		return r.rnd.pick(0, false)
	}
	i := sort.Search(len(r.hashes), func(i int) bool { return r.hashes[i] >= hash })
	if i == len(r.hashes) {
		i = 0
	}
	return r.hosts[i]
}

// maglev is a weighted Maglev lookup table (Envoy's MAGLEV).
type maglev struct {
	table []*Host
	rnd   *random
}

func newMaglev(hs []weighted, size uint64) *maglev {
	m := &maglev{table: make([]*Host, size), rnd: newRandom(hs)}
	var maxW uint64
	for _, h := range hs {
		maxW = max(maxW, h.w)
	}
	offset := make([]uint64, len(hs))
	skip := make([]uint64, len(hs))
	next := make([]uint64, len(hs))
	claimed := make([]uint64, len(hs))
	for i, h := range hs {
		offset[i] = router.HashString(h.h.Addr) % size
		skip[i] = router.HashString(h.h.Addr+"#skip")%(size-1) + 1
	}
	filled := uint64(0)
	for pass := uint64(1); filled < size; pass++ {
		for i, h := range hs {
			// A host of weight w takes a slot in w/maxW of the passes.
			if pass*h.w/maxW <= claimed[i] {
				continue
			}
			claimed[i]++
			for {
				c := (offset[i] + next[i]*skip[i]) % size
				next[i]++
				if m.table[c] == nil {
					m.table[c] = h.h
					filled++
					break
				}
			}
			if filled == size {
				break
			}
		}
	}
	return m
}

func (m *maglev) pick(hash uint64, hasHash bool) *Host {
	if !hasHash {
		return m.rnd.pick(0, false)
	}
	return m.table[hash%uint64(len(m.table))]
}
