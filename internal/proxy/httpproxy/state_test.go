package httpproxy

import (
	"testing"
	"unsafe"
)

// TestRequestStateSize keeps the request state, allocated for every
// request, in the 640-byte size class: an object of more than 512 bytes
// with pointers carries an 8-byte header, so the state may be at most
// 632 bytes. Past that it costs the next class, 704 bytes per request.
func TestRequestStateSize(t *testing.T) {
	if n := unsafe.Sizeof(reqState{}); n > 632 {
		t.Errorf("reqState is %d bytes, more than the 632 that fit the 640-byte size class", n)
	}
}
