package listener

import (
	"io"
	"net"
	"testing"

	"weft.dev/weft/internal/proxy/proxymetrics"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		b.Fatal("accept failed")
	}
	return client, server
}

// BenchmarkPipe copies 1 KiB writes (small chunks: the worst case for a
// per-chunk cost) from a downstream to an upstream through pipe over
// loopback sockets, with the byte counters of a connection (counted) and
// without (uncounted), to show what counting each chunk costs.
func BenchmarkPipe(b *testing.B) {
	for _, bc := range []struct {
		name    string
		counted bool
	}{{"uncounted", false}, {"counted", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var bytes proxymetrics.TCPBytes
			if bc.counted {
				m := proxymetrics.New()
				bytes = m.TCPOpened(&proxymetrics.TCPConn{Service: "mongo.default.svc.cluster.local"})
			}
			app, down := tcpPair(b)
			up, backend := tcpPair(b)
			done := make(chan struct{})
			go func() {
				defer close(done)
				pipe(down, up, 0, bytes)
			}()
			drained := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, backend)
				_ = backend.Close()
				drained <- n
			}()
			buf := make([]byte, 1024)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := app.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = app.(*net.TCPConn).CloseWrite()
			if n := <-drained; n != int64(b.N)*int64(len(buf)) {
				b.Fatalf("the upstream got %d bytes, want %d", n, int64(b.N)*int64(len(buf)))
			}
			b.StopTimer()
			_ = app.Close()
			<-done
		})
	}
}
