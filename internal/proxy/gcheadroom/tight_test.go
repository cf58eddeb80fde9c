package gcheadroom

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// A response is applied under the tighter target, and the process's own
// setting comes back afterwards; a lower setting, or GC off, is kept.
func TestHandleTightRestoresGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, own := range []int{100, 200, 10, -1} {
		debug.SetGCPercent(own)
		runtime.GC() // no garbage: the tighter target stands (see TestTightPercent)
		during := 0
		if err := Tight(configGCPercent, func() error {
			during = debug.SetGCPercent(-2) // reads the setting (any negative: off)
			debug.SetGCPercent(during)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := configGCPercent
		if own < configGCPercent {
			want = own
		}
		if during != want {
			t.Errorf("GOGC %d: %d while applying, want %d", own, during, want)
		}
		if after := debug.SetGCPercent(own); after != own {
			t.Errorf("GOGC %d: %d after applying", own, after)
		}
	}
}

// configGCPercent is the xDS client's target.
const configGCPercent = 25

func TestTightPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name              string
		percent           int
		inUse, live, base uint64
		want              int
	}{
		{"just after a collection", 25, 8 * mib, 8 * mib, 10 * mib, 25},
		{"some garbage", 25, 10 * mib, 8 * mib, 10 * mib, 54},
		{"garbage past the target", 25, 14 * mib, 8 * mib, 10 * mib, 111},
		// Stacks and globals a third of base: GOGC 25 puts the target at
		// 8 + 3 = 11 MiB, and a GOGC figured from base alone at 12.9,
		// both below the 14 in use.
		{"large stacks and globals", 25, 14 * mib, 8 * mib, 12 * mib, 97},
		{"nothing measured yet", 25, 3 * mib, 0, 0, 25},
		{"GC off", -1, 14 * mib, 8 * mib, 10 * mib, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := TightPercent(c.percent, c.inUse, c.live, c.base)
			if got != c.want {
				t.Errorf("TightPercent(%d, %d, %d, %d MiB) = %d, want %d", c.percent, c.inUse/mib, c.live/mib, c.base/mib, got, c.want)
			}
			// The runtime's target for it is the live heap plus GOGC
			// percent of base, and its lowest trigger 45/64 of the way
			// there: above the heap in use.
			if c.base > 0 && c.percent > 0 {
				trigger := c.live + c.base*uint64(got)/100*45/64
				if trigger <= c.inUse {
					t.Errorf("lowest trigger %.2f MiB, not above the %.2f MiB in use", float64(trigger)/mib, float64(c.inUse)/mib)
				}
			}
		})
	}
}

// With more garbage on the heap than the tighter target allows, Tight
// sets a target that does not start a collection at once: one started
// past its trigger would make every goroutine that allocates assist it
// heavily or wait for it.
func TestTightKeepsTheTargetAboveTheHeapInUse(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	runtime.GC()
	live := make([][]byte, 16) // 16 MiB live
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	// 8 MiB of garbage: within GOGC 100's target, past 25 %'s.
	for range 128 {
		sink = make([]byte, 64<<10)
	}
	read := func() (goal, inUse, live uint64) {
		s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	}
	if _, inUse, _ := read(); inUse < 22<<20 {
		t.Skipf("a collection ran meanwhile: %d MiB in use", inUse>>20)
	}
	var goal, inUse, liveHeap uint64
	if err := Tight(configGCPercent, func() error {
		goal, inUse, liveHeap = read()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The runtime starts a collection at the latest when the heap in use
	// passes its trigger, which lies at least 45/64 of the way from the
	// live heap to the target.
	if trigger := liveHeap + (goal-liveHeap)*45/64; trigger <= inUse {
		t.Errorf("while applying: target %.1f MiB, lowest trigger %.1f, at or below the %.1f MiB in use", float64(goal)/(1<<20), float64(trigger)/(1<<20), float64(inUse)/(1<<20))
	}
	runtime.KeepAlive(live)
}

var sink []byte
