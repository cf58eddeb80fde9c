package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// An app that answers before the request body ends (an early 413 or
// 200) while the client keeps sending: the client gets the answer, and
// the sidecar's accounting of the body bytes, which its upload to the app
// is still counting, ends without a data race (run with -race).
func TestEarlyAnswerWhileBodyStreams(t *testing.T) {
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
		_, _ = io.Copy(io.Discard, br) // keep reading what the sidecar sends
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: httpbin\r\nTransfer-Encoding: chunked\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(conn, "400\r\n"+string(make([]byte, 1024))+"\r\n"); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		_, _ = io.WriteString(conn, "0\r\n\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "early" {
		t.Errorf("got %d %q, want the app's early 200", resp.StatusCode, b)
	}
	<-done
}
