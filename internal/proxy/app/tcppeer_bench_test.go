package app_test

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkTCPConnectThroughSidecars opens a TCP connection through a
// client and a server sidecar (mTLS between them) to a server-first app,
// with and without the peer metadata exchange. server-first: connect and
// read the app's greeting; client-first: connect, write 4 bytes at once,
// read the greeting and their echo. Each op is a new connection (two
// loopback TCP connects and one mTLS handshake).
func BenchmarkTCPConnectThroughSidecars(b *testing.B) {
	for _, mode := range []struct {
		name  string
		offer bool
	}{{"exchange", true}, {"no-exchange", false}} {
		b.Run(mode.name, func(b *testing.B) {
			m := startTCPPeerMesh(b, mode.offer)
			for _, flow := range []struct {
				name        string
				clientFirst bool
			}{{"server-first", false}, {"client-first", true}} {
				b.Run(flow.name, func(b *testing.B) {
					b.ReportAllocs()
					want := dbGreeting
					if flow.clientFirst {
						want += "ping"
					}
					buf := make([]byte, len(want))
					for b.Loop() {
						conn, err := net.DialTimeout("tcp", m.out, 5*time.Second)
						if err != nil {
							b.Fatal(err)
						}
						if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
							b.Fatal(err)
						}
						if flow.clientFirst {
							if _, err := io.WriteString(conn, "ping"); err != nil {
								b.Fatal(err)
							}
						}
						if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != want {
							b.Fatalf("read %q, %v; want %q", buf, err, want)
						}
						conn.Close()
					}
				})
			}
		})
	}
}
