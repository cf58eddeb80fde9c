package app_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/xdsmeta"
)

// BenchmarkHTTPThroughSidecars sends keep-alive HTTP/1.1 POSTs with a
// 1 KiB body, one at a time on one connection, through the server sidecar
// alone and through client and server sidecars, to an app that echoes
// the body. Client and app are minimal raw-socket HTTP/1.1 so that the
// allocations per op are the sidecars' (both run in this process). The
// figures to read are allocs/op and B/op; ns/op is a loopback round trip
// on a shared machine.
func BenchmarkHTTPThroughSidecars(b *testing.B) {
	app := rawEchoServer(b)
	m := startMeshTo(b, app)
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
	}
}

// readRawResponse reads one response with a Content-Length body and
// returns its status and body length.
func readRawResponse(tb testing.TB, br *bufio.Reader) (int, int) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		tb.Fatal(err)
	}
	code := 0
	if f := strings.Fields(line); len(f) >= 2 {
		code, _ = strconv.Atoi(f[1])
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
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(k), "content-length") {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		tb.Fatalf("response %q without Content-Length", line)
	}
	if _, err := br.Discard(n); err != nil {
		tb.Fatal(err)
	}
	return code, n
}

// rawEchoServer is a minimal HTTP/1.1 server that answers every request
// with its body, on keep-alive connections.
func rawEchoServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveRawEcho(c)
		}
	}()
	return ln.Addr().String()
}

func serveRawEcho(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	var body []byte
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
			if k, v, ok := bytes.Cut(l, []byte(":")); ok && bytes.EqualFold(k, []byte("content-length")) {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		if _, err := io.ReadFull(br, body[:n]); err != nil {
			return
		}
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", n)
		bw.Write(body[:n])
		if bw.Flush() != nil {
			return
		}
	}
}
