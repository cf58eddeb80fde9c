package listener

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		send    func(c net.Conn)
		want    detected
		wantSNI string
	}{
		{name: "http/1.1 request line", send: write("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), want: detectedHTTP},
		{name: "http/1.0 request line", send: write("POST / HTTP/1.0\r\n\r\n"), want: detectedHTTP},
		{name: "h2c preface", send: write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), want: detectedHTTP},
		{name: "request line cut short", send: write("GET /slow"), want: detectedHTTP},
		{name: "upper-case text is not HTTP", send: write("HELLO WORLD\r\n"), want: detectedOther},
		{name: "lower-case text", send: write("ping\n"), want: detectedOther},
		{name: "binary", send: write("\x00\x01\x02"), want: detectedOther},
		{name: "tls client hello with sni", send: func(c net.Conn) {
			_ = tls.Client(c, &tls.Config{ServerName: "db.example.com", InsecureSkipVerify: true}).Handshake()
		}, want: detectedTLS, wantSNI: "db.example.com"},
		{name: "tls client hello without sni", send: func(c net.Conn) {
			_ = tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake()
		}, want: detectedTLS},
		{name: "silent client (server speaks first)", send: func(c net.Conn) {}, want: detectedSilent},
		{name: "closed at once", send: func(c net.Conn) { _ = c.Close() }, want: detectedClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			go tc.send(client)
			// A "cut short" line waits detectLineTimeout; the others decide
			// on what they have.
			start := time.Now()
			got, sni := detect(server, bufio.NewReader(server), 50*time.Millisecond)
			if got != tc.want || sni != tc.wantSNI {
				t.Errorf("detect = %v %q, want %v %q", got, sni, tc.want, tc.wantSNI)
			}
			if d := time.Since(start); d > detectLineTimeout+time.Second {
				t.Errorf("detect took %v", d)
			}
		})
	}
}

func write(s string) func(net.Conn) {
	return func(c net.Conn) { _, _ = c.Write([]byte(s)) }
}

func TestParseClientHelloSNIMalformed(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, {1, 0, 0, 10, 3, 3}, {2, 0, 0, 0}} {
		if got := parseClientHelloSNI(b); got != "" {
			t.Errorf("parseClientHelloSNI(%x) = %q, want empty", b, got)
		}
	}
}

func FuzzParseClientHelloSNI(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) { _ = parseClientHelloSNI(b) })
}
