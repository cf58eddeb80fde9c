// Package gcheadroom bounds how far the sidecar's heap may grow past its
// live size between two collections.
//
// Go's collector lets the heap grow by GOGC percent (100 by default) of
// the live heap, stacks and globals before it collects again. A sidecar's
// live heap is mostly its configuration, so under Go's default a sidecar
// that holds the routes and clusters of 1000 services (about 9 MB live)
// lets its heap grow to about 18 MB, though its requests allocate no more
// than those of a sidecar with a small configuration, whose heap grows by
// 4-5 MB. The Tuner keeps the growth near a fixed headroom instead: after
// every collection it sets GOGC to headroom / (live heap + stacks +
// globals), between a floor and 100. A small configuration keeps Go's
// default; a large one collects more often (marking more each time) in
// exchange for a heap that grows by the headroom, not by its own size.
//
// A GOGC in the environment is the operator's choice and turns the Tuner
// off, as does a headroom of 0.
//
// The package owns the process's GOGC: Tight, which an xDS response is
// applied under, lowers it for a while, and the Tuner's adjustments made
// meanwhile take effect when it ends.
package gcheadroom

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// MinPercent is the lowest GOGC the Tuner sets: a heap growing by less
// than a quarter of its live size collects too often to be worth its
// memory.
const MinPercent = 25

// Percent is the GOGC that keeps a heap's growth near headroom bytes,
// given the bytes the collector scales it by (live heap, stacks and
// globals): between MinPercent and 100.
func Percent(headroom, base uint64) int {
	if base == 0 {
		return 100
	}
	p := headroom * 100 / base
	return int(min(max(p, MinPercent), 100))
}

// mu guards GOGC's changes: the Tuners' and Tight's.
var mu sync.Mutex

// tight counts the Tight calls running; restore is the GOGC to set when
// the last one ends.
var (
	tight   int
	restore int
)

// setPercent sets GOGC, or, while Tight runs, the GOGC it restores.
// Called with mu held.
func setPercent(p int) {
	if tight > 0 {
		restore = p
		return
	}
	debug.SetGCPercent(p)
}

// Tight runs f with GOGC at most percent: applying an xDS response
// allocates several times its size in short-lived objects (decoded
// protos, parsed config, the new runtime snapshot) on top of the config
// in use, and with the usual target that transient, not the steady
// state, would set the sidecar's peak memory. A lower GOGC, or GC off, is
// left alone. GOGC is set back when f returns (to what a Tuner chose
// meanwhile, if it did).
//
// It never sets a target that would start a collection at once: where
// garbage is left since the last collection, the GOGC it sets is higher
// (see TightPercent).
func Tight(percent int, f func() error) error {
	mu.Lock()
	if tight == 0 {
		metrics.Read(tightSamples[:])
		var v [len(tightSamples)]uint64
		for i, s := range tightSamples {
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = s.Value.Uint64()
			}
		}
		p := TightPercent(percent, v[0], v[1], v[1]+v[2]+v[3])
		prev := debug.SetGCPercent(p)
		if prev < p { // lower, or off (negative): keep it
			debug.SetGCPercent(prev)
		}
		restore = prev
	}
	tight++
	mu.Unlock()
	defer func() {
		mu.Lock()
		tight--
		if tight == 0 {
			debug.SetGCPercent(restore)
		}
		mu.Unlock()
	}()
	return f()
}

// tightSamples are what Tight reads, under mu: the heap in use (live
// objects and garbage not yet swept), the live heap, and the stacks and
// globals, which with the live heap are what the collector scales its
// target by.
var tightSamples = [...]metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/scan/stack:bytes"},
	{Name: "/gc/scan/globals:bytes"},
}

// TightPercent is the GOGC that Tight sets for percent, given the heap
// in use, the live heap, and base, the bytes the collector scales its
// target by (the live heap, stacks and globals): percent itself just
// after a collection, more with garbage left since, so that the
// collection it sets does not start at once. The runtime's target is the
// live heap plus GOGC percent of base, and it starts a collection when the
// heap in use passes its trigger, which lies at least 45/64 of the way
// from the live heap to the target; the GOGC returned puts that lowest
// trigger percent of base (times 45/64) above the heap in use. A
// collection that starts at once, past its trigger or its target, is
// paced as late: every goroutine that allocates, a request's as much as
// the one applying the response, must do marking work out of proportion
// to its allocation or wait for it to end. Measured under a change a
// second with 100 services (docs/performance.md, optimisation 27), a GOGC
// put below the heap in use started such a collection on every change
// and held requests up to 18 ms. Tight keeps a lower GOGC than this, so
// with much garbage it changes nothing and the next collection comes
// when it would have.
func TightPercent(percent int, inUse, live, base uint64) int {
	if base == 0 || percent < 0 || inUse <= live {
		return percent
	}
	return percent + int((inUse-live)*100*triggerDen/(triggerNum*base)) + 1 // +1: never short of it
}

// triggerNum/triggerDen is the least fraction of the way from the live
// heap to its target at which the runtime starts a collection
// (runtime/mgcpacer.go, minTriggerRatioNum/triggerRatioDen).
const (
	triggerNum = 45
	triggerDen = 64
)

// Tuner sets GOGC after every collection (see the package comment).
type Tuner struct {
	headroom uint64
	stopped  atomic.Bool
	samples  []metrics.Sample // under mu
	percent  int              // the GOGC set last, under mu
}

// Start starts a Tuner for headroom bytes. It returns nil, and leaves
// the collector as it is, when headroom is 0 or GOGC is set in the
// environment.
func Start(headroom uint64) *Tuner {
	if headroom == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{
		headroom: headroom,
		percent:  100,
		samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		},
	}
	t.Adjust()
	t.arm()
	return t
}

// Stop stops adjusting and gives GOGC back its default (100).
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	setPercent(100)
	t.percent = 100
}

// Percent is the GOGC the Tuner set last (100 for a nil Tuner).
func (t *Tuner) Percent() int {
	if t == nil {
		return 100
	}
	mu.Lock()
	defer mu.Unlock()
	return t.percent
}

// Adjust sets GOGC from the last collection's live heap. The Tuner calls
// it after every collection; calling it sooner (after a configuration
// change) changes nothing until the next collection has measured.
func (t *Tuner) Adjust() {
	if t == nil || t.stopped.Load() {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if t.stopped.Load() {
		return // Stop ran since the check above: its GOGC stands
	}
	metrics.Read(t.samples)
	var base uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
		}
	}
	p := Percent(t.headroom, base)
	// Small changes are not worth the pacer's retargeting.
	if p != t.percent && (p == 100 || p == MinPercent || abs(p-t.percent) >= 5) {
		setPercent(p)
		t.percent = p
	}
}

// arm runs Adjust after the next collection: a cleanup attached to an
// object nothing references runs once a collection has found it
// unreachable, and arms the next one.
func (t *Tuner) arm() {
	s := new(sentinel)
	runtime.AddCleanup(s, func(t *Tuner) {
		if t.stopped.Load() {
			return
		}
		t.Adjust()
		t.arm()
	}, t)
}

// sentinel is large enough not to share an allocation with anything
// else (the tiny allocator's blocks are 16 bytes).
type sentinel struct{ _ [32]byte }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
