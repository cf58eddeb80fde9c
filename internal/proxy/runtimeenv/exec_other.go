//go:build !unix

package runtimeenv

// execSelf cannot replace the process image here: the proxy runs without
// the setting, silently (see errNoExec).
func execSelf([]string, []string) error { return errNoExec }
