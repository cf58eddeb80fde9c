//go:build !unix

package procscale

import "time"

// cpuTime cannot be read here: the Scaler does not start.
func cpuTime() (time.Duration, bool) { return 0, false }
