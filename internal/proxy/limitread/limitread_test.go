package limitread

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	r := &Reader{R: strings.NewReader(strings.Repeat("a", 100)), Remain: 10}
	b, err := io.ReadAll(r)
	if len(b) != 10 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("read %d bytes, %v; want 10 and ErrTooLarge", len(b), err)
	}
	r.Remain = Unlimited
	b, err = io.ReadAll(r)
	if len(b) != 90 || err != nil {
		t.Fatalf("after lifting the bound: %d bytes, %v; want the other 90", len(b), err)
	}
}
