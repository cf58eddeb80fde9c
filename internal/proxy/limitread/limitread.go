// Package limitread bounds what a peer may send while a protocol header
// is parsed, so that no peer can grow a parser's buffers without end. The
// sidecar's HTTP/1.x server (request headers) and upstream pool (response
// headers) share it.
package limitread

import (
	"errors"
	"io"
	"math"
)

// ErrTooLarge is returned once the allowance is used up.
var ErrTooLarge = errors.New("header too large")

// Unlimited lifts the bound (between headers).
const Unlimited = math.MaxInt64

// Reader reads from R until Remain bytes were read, then fails with
// ErrTooLarge. Set Remain before a header is read and to Unlimited after
// it. Not safe for concurrent use.
type Reader struct {
	R      io.Reader
	Remain int64
}

func (l *Reader) Read(p []byte) (int, error) {
	if l.Remain <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.Remain {
		p = p[:l.Remain]
	}
	n, err := l.R.Read(p)
	l.Remain -= int64(n)
	return n, err
}
