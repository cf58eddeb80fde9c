// Package runtimeenv gives the proxy process the Go runtime settings it
// runs best with, which the runtime reads only from its environment at
// start: Apply re-executes the process once with them added to GODEBUG.
//
// The setting is schedtrace with a period of 24.8 days (the largest the
// runtime takes). Its purpose is its side effect: with schedtrace set,
// the runtime's monitor thread (sysmon) does not sleep deeply while every
// P is idle. Without it, a proxy serving a moderate request rate goes idle
// between requests, the first system call of every request wakes the
// monitor, and the monitor then polls every 20 µs until the process is
// idle again: measured at 1000 requests per second, that is about 40 % of
// a sidecar's CPU time. With it, the monitor's sleep stretches to 10 ms
// while nothing needs it, as it does under load. The cost: the runtime
// prints one scheduler line to standard error at start on a host that has
// been up for over 24.8 days, and once per 24.8 days after that, and a
// fatal error's report includes the scheduler's state.
//
// A GODEBUG that already names schedtrace is kept as it is
// (GODEBUG=schedtrace=0 turns the setting off), and so is every other
// GODEBUG setting.
package runtimeenv

import (
	"os"
	"strings"
)

// Setting is the GODEBUG entry Apply adds.
const Setting = "schedtrace=2147483647"

// Apply re-executes the running binary with Setting added to GODEBUG,
// unless GODEBUG already names schedtrace or the platform cannot replace
// the process image. It returns only when the process goes on as it is;
// an exec that fails leaves the process running without the setting.
func Apply() {
	godebug, ok := withSetting(os.Getenv("GODEBUG"))
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	env := os.Environ()
	kept := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			kept = append(kept, kv)
		}
	}
	_ = execSelf(exe, os.Args, append(kept, "GODEBUG="+godebug))
}

// withSetting returns godebug with Setting added, and false if godebug
// already names schedtrace.
func withSetting(godebug string) (string, bool) {
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, _, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "schedtrace" {
			return godebug, false
		}
	}
	if godebug == "" {
		return Setting, true
	}
	return godebug + "," + Setting, true
}
