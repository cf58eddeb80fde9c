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
// while nothing needs it, as it does under load, so an idle proxy wakes
// 100 times a second. Other costs: the runtime prints one scheduler line
// to standard error at start on a host that has been up for over 24.8
// days, and once per 24.8 days after that, and a fatal error's report
// ends with the scheduler's state (a line per thread and goroutine).
//
// A GODEBUG that already names schedtrace is kept as it is
// (GODEBUG=schedtrace=0 turns the setting off), and so is every other
// GODEBUG setting.
package runtimeenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Setting is the GODEBUG entry Apply adds.
const Setting = "schedtrace=2147483647"

// errNoExec: the platform cannot replace a process's image.
var errNoExec = errors.New("no exec on this platform")

// Apply re-executes the running program (os.Args) with Setting added to
// GODEBUG, unless GODEBUG already names schedtrace. Call it first thing
// in main, before signal handlers are installed. It returns only when the
// process goes on as it is: with the setting, or, when the process image
// cannot be replaced, without it after a line on standard error.
func Apply() {
	godebug, ok := withSetting(os.Getenv("GODEBUG"))
	if !ok {
		return
	}
	env := os.Environ()
	kept := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			kept = append(kept, kv)
		}
	}
	if err := execSelf(os.Args, append(kept, "GODEBUG="+godebug)); err != nil && err != errNoExec {
		fmt.Fprintf(os.Stderr, "%s: running without GODEBUG=%s (%v): more CPU per request at moderate load\n", filepath.Base(os.Args[0]), Setting, err)
	}
}

// withSetting returns godebug with Setting added, and false if godebug
// already names schedtrace (the runtime matches keys exactly).
func withSetting(godebug string) (string, bool) {
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, _, _ := strings.Cut(kv, "="); k == "schedtrace" {
			return godebug, false
		}
	}
	if godebug == "" {
		return Setting, true
	}
	return godebug + "," + Setting, true
}
