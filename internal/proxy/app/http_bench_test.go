package app_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// BenchmarkHTTPThroughSidecars sends keep-alive HTTP/1.1 POSTs with a
// 1 KiB body, one at a time on one connection, through the server sidecar
// alone and through client and server sidecars, to an app that echoes
// the body. Client and app are minimal raw-socket HTTP/1.1 so that the
// allocations per op are the sidecars' (both run in this process). The
// figures to read are allocs/op and B/op; ns/op is a loopback round trip
// on a shared machine. As in `make bench`, the sidecars log no requests.
func BenchmarkHTTPThroughSidecars(b *testing.B) {
	app := rawEchoServer(b)
	m := startMeshWith(b, app, proxytest.ProxyOptions{ConfigAccessLogs: true})
	body := bytes.Repeat([]byte("x"), 1024)
	for _, path := range []struct{ name, addr, host string }{
		{"server-sidecar", m.inbound, "httpbin"},
		{"two-hops", m.client.ListenerAddr(b, xdsmeta.ListenerOutbound), "httpbin:8000"},
	} {
		b.Run(path.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", path.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := []byte(fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s", path.host, len(body), body))
			br := bufio.NewReader(conn)
			roundTrip := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				code, n := readRawResponse(b, br)
				if code != 200 || n != len(body) {
					b.Fatalf("status %d, %d body bytes; want 200 and %d", code, n, len(body))
				}
			}
			roundTrip() // connections and pools warm
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
		// The same with 16 connections at once (GOMAXPROCS x 8
		// goroutines on 2 cores), as the benchmark's closed loop: the
		// figure to read is cpu-µs/op, the process's CPU time (user and
		// system) per request, nearly all of it the sidecars'.
		b.Run(path.name+"-concurrent", func(b *testing.B) {
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			start := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				conn, err := net.Dial("tcp", path.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				req := []byte(fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s", path.host, len(body), body))
				br := bufio.NewReader(conn)
				for pb.Next() {
					if _, err := conn.Write(req); err != nil {
						b.Error(err)
						return
					}
					if code, n := readRawResponse(b, br); code != 200 || n != len(body) {
						b.Errorf("status %d, %d body bytes; want 200 and %d", code, n, len(body))
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime(b)-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readRawResponse reads one response with a Content-Length body and
// returns its status and body length, without allocating.
func readRawResponse(tb testing.TB, br *bufio.Reader) (int, int) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		tb.Fatal(err)
	}
	code := -1
	if len(status) >= 12 {
		code = digits(status[9:12])
	}
	n := -1
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if len(l) <= 2 {
			break
		}
		n = max(n, contentLength(l))
	}
	if n < 0 {
		tb.Fatal("response without Content-Length")
	}
	if _, err := br.Discard(n); err != nil {
		tb.Fatal(err)
	}
	return code, n
}

// contentLength is the value of a Content-Length header line, -1 for any
// other line.
func contentLength(l []byte) int {
	k, v, ok := bytes.Cut(l, []byte(":"))
	if !ok || !bytes.EqualFold(k, []byte("content-length")) {
		return -1
	}
	return digits(bytes.TrimSpace(v))
}

// digits parses a decimal number, -1 when b is not one.
func digits(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// rawEchoServer is a minimal HTTP/1.1 server that answers every request
// with its body, on keep-alive connections, without allocating per
// request.
func rawEchoServer(tb testing.TB) string {
	return serveTCP(tb, "127.0.0.1:0", serveRawEcho)
}

func serveRawEcho(c net.Conn) {
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	var body []byte
	var num [20]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		n := 0
		for first := true; ; first = false {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(l) <= 2 && !first {
				break
			}
			n = max(n, contentLength(l))
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		if _, err := io.ReadFull(br, body[:n]); err != nil {
			return
		}
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ")
		bw.Write(strconv.AppendInt(num[:0], int64(n), 10))
		bw.WriteString("\r\n\r\n")
		bw.Write(body[:n])
		if bw.Flush() != nil {
			return
		}
	}
}
