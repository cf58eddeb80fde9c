//go:build !unix

package runtimeenv

import "errors"

func execSelf(string, []string, []string) error {
	return errors.New("runtimeenv: no exec on this platform")
}
