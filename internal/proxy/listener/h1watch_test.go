package listener

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/cancelsig"
)

// waitingHandler waits for its request's context to end, or for hold,
// and reports each request's arrival and why it ended.
type waitingHandler struct {
	hold    time.Duration
	readAll bool // read the request body before waiting
	arrived chan string
	ended   chan error // the context's cause, nil when hold ran out
}

func newWaitingHandler(hold time.Duration) *waitingHandler {
	return &waitingHandler{hold: hold, arrived: make(chan string, 16), ended: make(chan error, 16)}
}

func (h *waitingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.readAll {
		_, _ = io.ReadAll(r.Body)
	}
	h.arrived <- r.URL.Path
	t := time.NewTimer(h.hold)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		h.ended <- cancelsig.Cause(r.Context())
		return
	case <-t.C:
		h.ended <- nil
	}
	io.WriteString(w, "done "+r.URL.Path)
}

func recv[T any](t *testing.T, c <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(within):
		t.Fatalf("%s: nothing within %s", what, within)
	}
	var zero T
	return zero
}

// TestH1ClientGoneCancelsRequest: a client that closes its connection
// while its request is served cancels the request's context within
// about two watch periods, with or without a request body, instead of
// when the handler would have answered.
func TestH1ClientGoneCancelsRequest(t *testing.T) {
	for _, tc := range []struct {
		name, req string
		readAll   bool
	}{
		{"GET", "GET /get HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"POST read whole", "POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", true},
		{"chunked read whole", "POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWaitingHandler(30 * time.Second)
			h.readAll = tc.readAll
			_, addr := h1Test(t, h.ServeHTTP)
			x := dialRaw(t, addr)
			x.send(tc.req)
			recv(t, h.arrived, 5*time.Second, "request at the handler")
			x.conn.Close()
			start := time.Now()
			cause := recv(t, h.ended, 5*time.Second, "request cancelled after the client left")
			if cause != errClientGone {
				t.Errorf("the request ended with cause %v; want %v", cause, errClientGone)
			}
			t.Logf("cancelled %s after the client left", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestH1WatchKeepsTheConnection: a watched request whose client stays
// is answered, and the connection then carries more requests, pipelined
// behind a watched one or sent after it.
func TestH1WatchKeepsTheConnection(t *testing.T) {
	h := newWaitingHandler(3 * watchAfter)
	_, addr := h1Test(t, h.ServeHTTP)
	x := dialRaw(t, addr)

	// The client waits: the watcher reads nothing until the handler
	// answers, and the next request is read as usual.
	for _, p := range []string{"/a", "/b"} {
		x.send("GET " + p + " HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, body := x.read("GET")
		if resp.StatusCode != 200 || body != "done "+p {
			t.Fatalf("GET %s = %d %q", p, resp.StatusCode, body)
		}
		if cause := recv(t, h.ended, time.Second, "handler end"); cause != nil {
			t.Fatalf("GET %s was cancelled: %v", p, cause)
		}
	}

	// A body the handler never reads: not watched, and the sweep keeps
	// looking until the response.
	x.send("POST /unread HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := x.read("POST"); resp.StatusCode != 200 || body != "done /unread" {
		t.Fatalf("POST /unread = %d %q", resp.StatusCode, body)
	}
	recv(t, h.ended, time.Second, "handler end")

	// Two requests in one write: the watcher finds the second while the
	// first is served; both are answered in order.
	x.send("GET /c HTTP/1.1\r\nHost: h\r\n\r\nPOST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz")
	for _, p := range []string{"/c", "/d"} {
		resp, body := x.read("GET")
		if resp.StatusCode != 200 || body != "done "+p {
			t.Fatalf("pipelined %s = %d %q", p, resp.StatusCode, body)
		}
		if cause := recv(t, h.ended, time.Second, "handler end"); cause != nil {
			t.Fatalf("pipelined %s was cancelled: %v", p, cause)
		}
	}
}

// TestH1StalledUploadBlocksNothing: while one client stalls in the
// middle of its request body, which its handler is reading, the sweep
// does not wait for that read: new connections are served and Shutdown
// returns when its context ends.
func TestH1StalledUploadBlocksNothing(t *testing.T) {
	m, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		io.WriteString(w, "ok "+r.URL.Path)
	})
	slow := dialRaw(t, addr)
	slow.send("POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello")
	time.Sleep(4 * watchAfter) // sweeps run while the handler waits for the rest

	fast := dialRaw(t, addr)
	_ = fast.conn.SetDeadline(time.Now().Add(3 * time.Second))
	fast.send("GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := fast.read("GET"); resp.StatusCode != 200 || body != "ok /fast" {
		t.Fatalf("GET on a new connection while another upload stalls = %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		slow.send("world")
		t.Fatal("Shutdown did not return while an upload stalled")
	}
}

// TestH1HalfClosedClientGetsFinishedResponse: a client that shuts down
// its sending side after its request (as some command-line clients do)
// cancels the request, as under net/http and Envoy, but what the handler
// still wrote is sent to it, and the connection then closes.
func TestH1HalfClosedClientGetsFinishedResponse(t *testing.T) {
	// Held long enough for the watcher to see the half-close on a busy
	// machine; the handler ends as soon as it does.
	h := newWaitingHandler(50 * watchAfter)
	_, addr := h1Test(t, func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			io.WriteString(w, "finished after the cancel")
		}
	})
	x := dialRaw(t, addr)
	x.send("GET /half HTTP/1.1\r\nHost: h\r\n\r\n")
	if err := x.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if cause := recv(t, h.ended, 5*time.Second, "handler end"); cause != errClientGone {
		t.Errorf("the request ended with cause %v; want %v", cause, errClientGone)
	}
	resp, body := x.read("GET")
	if resp.StatusCode != 200 || body != "finished after the cancel" {
		t.Errorf("got %d %q; want 200 with the handler's body", resp.StatusCode, body)
	}
	if !x.closed() {
		t.Error("the connection stayed open after the response")
	}
}
