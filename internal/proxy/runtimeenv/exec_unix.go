//go:build unix

package runtimeenv

import (
	"os"
	"runtime"
	"syscall"
)

// execSelf replaces the process with a new run of its own program: on
// Linux the image the process runs (/proc/self/exe), even if its file was
// replaced since; elsewhere the path os.Executable finds.
func execSelf(args, env []string) error {
	exe := "/proc/self/exe"
	if runtime.GOOS != "linux" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	return syscall.Exec(exe, args, env)
}
