package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
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
			got, sni, _ := detect(server, bufio.NewReader(server), 50*time.Millisecond)
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

// TestLargeClientHelloSNI: the server name of a ClientHello larger than
// the connection's first 4 KiB buffer (its server_name after a large
// extension, as browsers may order them) is found, and the whole record
// can then be read from the reader detect returns.
func TestLargeClientHelloSNI(t *testing.T) {
	u16 := func(n int) []byte { return []byte{byte(n >> 8), byte(n)} }
	name := []byte("shop.example.com")
	sniList := append(append([]byte{0}, u16(len(name))...), name...)
	sniExt := append(u16(len(sniList)), sniList...)
	var exts []byte
	exts = append(exts, 0x00, 0x15) // padding
	exts = append(exts, u16(4500)...)
	exts = append(exts, make([]byte, 4500)...)
	exts = append(exts, 0x00, 0x00) // server_name
	exts = append(exts, u16(len(sniExt))...)
	exts = append(exts, sniExt...)
	var body []byte
	body = append(body, 0x03, 0x03)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)                // session id
	body = append(body, 0, 2, 0x13, 0x01) // cipher suites
	body = append(body, 1, 0)             // compression
	body = append(body, u16(len(exts))...)
	body = append(body, exts...)
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := append([]byte{0x16, 0x03, 0x01}, u16(len(hs))...)
	rec = append(rec, hs...)

	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() { _, _ = client.Write(append(rec, "next"...)) }()
	kind, sni, br := detect(server, bufio.NewReader(server), time.Second)
	if kind != detectedTLS || sni != "shop.example.com" {
		t.Fatalf("detect = %v %q; want TLS with shop.example.com (a %d-byte record)", kind, sni, len(rec))
	}
	got := make([]byte, len(rec)+4)
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, append(rec, "next"...)) {
		t.Errorf("the bytes read after detect differ from those sent (%v)", err)
	}
}
