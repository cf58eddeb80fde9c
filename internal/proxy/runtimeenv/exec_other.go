//go:build !unix

package runtimeenv

import "errors"

func execSelf([]string, []string) error {
	return errors.New("no exec on this platform")
}
