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
// pool; an attempt blocked reading the downstream body holds up nothing.
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
	t.Run("blocked reader gives way", func(t *testing.T) {
		// An attempt abandoned while it waits for the client's next
		// bytes holds up neither the retry decision, nor a new attempt's
		// replay of what was kept, nor the end of the request; the bytes
		// it then reads are kept for the attempt that replaced it.
		pr, pw := io.Pipe()
		rb := &replayBody{src: pr, limit: RetryBufferLimit}
		rb.reserve(6)
		stale, _ := rb.attempt()
		p := make([]byte, 3)
		go func() { _, _ = pw.Write([]byte("abc")) }()
		if n, err := stale.Read(p); n != 3 || err != nil {
			t.Fatalf("first read: %d %v", n, err)
		}
		staleErr := make(chan error, 1)
		go func() {
			_, err := stale.Read(make([]byte, 3)) // waits for the client
			staleErr <- err
		}()
		time.Sleep(20 * time.Millisecond) // let it block in src
		done := make(chan struct{})
		var live io.Reader
		go func() {
			defer close(done)
			if !rb.replayable() {
				t.Error("not replayable")
			}
			var ok bool
			if live, ok = rb.attempt(); !ok {
				t.Error("no new attempt")
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("replayable or attempt waited for the abandoned reader")
		}
		if n, err := live.Read(p); n != 3 || err != nil || string(p) != "abc" {
			t.Fatalf("replay: %d %v %q", n, err, p[:n])
		}
		if _, err := pw.Write([]byte("def")); err != nil {
			t.Fatal(err)
		}
		if err := <-staleErr; !errors.Is(err, errAttemptOver) {
			t.Fatalf("abandoned reader: %v, want errAttemptOver", err)
		}
		pw.Close()
		rest, err := io.ReadAll(live)
		if err != nil || string(rest) != "def" {
			t.Fatalf("the new attempt read %q, %v after the replay; want the bytes the abandoned one read", rest, err)
		}
		pooled := rb.pooled
		rb.release()
		if len(*pooled) != 0 {
			t.Fatal("release gave back a buffer in use")
		}
	})
	t.Run("bytes not kept fail the new attempt", func(t *testing.T) {
		// Past the retry buffer, bytes an abandoned attempt read are
		// lost: the attempt that replaced it fails rather than send a
		// body with a hole.
		pr, pw := io.Pipe()
		rb := &replayBody{src: pr, limit: 4}
		stale, _ := rb.attempt()
		go func() { _, _ = pw.Write([]byte("abc")) }()
		if _, err := stale.Read(make([]byte, 3)); err != nil {
			t.Fatal(err)
		}
		staleErr := make(chan error, 1)
		go func() {
			_, err := stale.Read(make([]byte, 8))
			staleErr <- err
		}()
		time.Sleep(20 * time.Millisecond)
		live, ok := rb.attempt()
		if !ok {
			t.Fatal("no new attempt")
		}
		if _, err := pw.Write([]byte("defgh")); err != nil { // past the limit of 4
			t.Fatal(err)
		}
		<-staleErr
		pw.Close()
		b, err := io.ReadAll(live)
		if !errors.Is(err, errBodyLost) {
			t.Fatalf("new attempt read %q, %v; want errBodyLost", b, err)
		}
	})
}
