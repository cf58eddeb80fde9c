package httpproxy

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestReplayBodyRelease: once a request is over, an attempt that still
// reads fails without touching the pooled buffer, which goes back to the
// pool; an attempt blocked reading the downstream body keeps the buffer
// out of the pool (it may still append to it).
func TestReplayBodyRelease(t *testing.T) {
	t.Run("late reader fails", func(t *testing.T) {
		rb := &replayBody{src: io.NopCloser(strings.NewReader("hello world")), limit: RetryBufferLimit}
		rb.reserve(11)
		if rb.pooled == nil {
			t.Fatal("a small body did not get a pooled buffer")
		}
		a, ok := rb.attempt()
		if !ok {
			t.Fatal("no attempt")
		}
		p := make([]byte, 5)
		if n, err := a.Read(p); n != 5 || err != nil || string(p) != "hello" {
			t.Fatalf("read %d %v %q", n, err, p[:n])
		}
		pooled := rb.pooled
		rb.release()
		if rb.pooled != nil || rb.buf != nil {
			t.Fatal("release kept the buffer")
		}
		if n, err := a.Read(p); n != 0 || !errors.Is(err, errAttemptOver) {
			t.Fatalf("read after release: %d %v, want errAttemptOver", n, err)
		}
		if len(*pooled) != 0 {
			t.Fatalf("the pooled buffer came back with %d bytes in use", len(*pooled))
		}
	})
	t.Run("blocked reader keeps the buffer", func(t *testing.T) {
		pr, pw := io.Pipe()
		rb := &replayBody{src: pr, limit: RetryBufferLimit}
		rb.reserve(3)
		a, _ := rb.attempt()
		read := make(chan string, 1)
		go func() {
			p := make([]byte, 3)
			n, _ := a.Read(p) // blocks in the downstream body, holding rb.mu
			read <- string(p[:n])
		}()
		// Wait until the reader holds the lock.
		for deadline := time.Now().Add(5 * time.Second); ; {
			if !rb.mu.TryLock() {
				break
			}
			rb.mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatal("the reader never took the lock")
			}
			time.Sleep(time.Millisecond)
		}
		rb.release()
		if _, err := pw.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if got := <-read; got != "abc" {
			t.Fatalf("blocked reader got %q", got)
		}
		rb.mu.Lock()
		defer rb.mu.Unlock()
		if rb.pooled == nil || string(rb.buf) != "abc" {
			t.Fatalf("release with a reader blocked gave the buffer away (pooled %v, buf %q)", rb.pooled != nil, rb.buf)
		}
	})
}
