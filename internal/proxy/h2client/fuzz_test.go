package h2client

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzRoundTrip answers a request with arbitrary frames: the client never
// panics, and the round trip and the body's read end once the server is
// gone.
func FuzzRoundTrip(f *testing.F) {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...string) []byte {
		hb.Reset()
		for i := 0; i < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 10})
	f.Add(append([]byte(nil), b.Bytes()...))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "103", "link", "x"), EndHeaders: true})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200", "trailer", "grpc-status"), EndHeaders: true})
	_ = fr.WriteDataPadded(1, false, []byte("body"), []byte{0, 0})
	_ = fr.WriteWindowUpdate(0, 100)
	_ = fr.WriteWindowUpdate(1, 100)
	_ = fr.WritePing(false, [8]byte{})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("grpc-status", "0"), EndStream: true, EndHeaders: true})
	f.Add(append([]byte(nil), b.Bytes()...))
	b.Reset()
	_ = fr.WriteSettings()
	_ = fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	f.Add(append([]byte(nil), b.Bytes()...))
	f.Fuzz(func(t *testing.T, frames []byte) {
		p := New(Options{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, server := net.Pipe()
			go func() {
				defer server.Close()
				_ = server.SetDeadline(time.Now().Add(5 * time.Second))
				go func() { _, _ = io.Copy(io.Discard, server) }()
				_, _ = server.Write(frames)
			}()
			return c, nil
		}})
		defer p.Retire()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://upstream:80/", io.NopCloser(strings.NewReader("request body")))
		req.ContentLength = 12
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := p.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the round trip did not end after the server left")
		}
	})
}
