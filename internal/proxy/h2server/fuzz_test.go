package h2server

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServe feeds a connection arbitrary frames after the client preface:
// the server never panics, and Serve returns once the client is gone,
// its handlers included.
func FuzzServe(f *testing.F) {
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
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	f.Add(append([]byte(nil), b.Bytes()...))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"), EndStream: true, EndHeaders: true})
	f.Add(append([]byte(nil), b.Bytes()...))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(":method", "POST", ":scheme", "http", ":path", "/p", ":authority", "a", "content-length", "5", "trailer", "x-t"), EndHeaders: true})
	_ = fr.WriteData(3, false, []byte("hel"))
	_ = fr.WriteDataPadded(3, false, []byte("lo"), []byte{0, 0, 0})
	_ = fr.WriteWindowUpdate(0, 1000)
	_ = fr.WriteWindowUpdate(3, 1000)
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("x-t", "v"), EndStream: true, EndHeaders: true})
	f.Add(append([]byte(nil), b.Bytes()...))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"), EndHeaders: false})
	_ = fr.WriteContinuation(5, true, block("x-more", "1"))
	_ = fr.WriteRSTStream(5, http2.ErrCodeCancel)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	_ = fr.WriteGoAway(5, http2.ErrCodeNo, nil)
	f.Add(append([]byte(nil), b.Bytes()...))
	f.Add([]byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage"))

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		n, _ := io.Copy(w, r.Body)
		w.Header().Set("X-Sum", string(rune('a'+n%26)))
	})
	f.Fuzz(func(t *testing.T, frames []byte) {
		c, peer := net.Pipe()
		sc := NewConn(c, nil, Options{Handler: h, MaxConcurrentStreams: 8, MaxHeaderListSize: 4096})
		done := make(chan struct{})
		go func() { sc.Serve(); close(done) }()
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		_ = peer.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = peer.Write([]byte(http2.ClientPreface))
		_, _ = peer.Write(frames)
		peer.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after the client left")
		}
	})
}
