package gcheadroom

import (
	"runtime/debug"
	"testing"
)

// A response is applied under the tighter target, and the process's own
// setting comes back afterwards; a lower setting, or GC off, is kept.
func TestHandleTightRestoresGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, own := range []int{100, 200, 10, -1} {
		debug.SetGCPercent(own)
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
