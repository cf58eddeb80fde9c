package h2conn

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
)

func TestWriteHeaderBlockSplits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size       int
		wantFrames int
	}{
		{"one frame", 100, 1},
		{"exactly a frame", 16 << 10, 1},
		{"continuations", 40000, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			block := bytes.Repeat([]byte{0x82}, tc.size)
			if err := WriteHeaderBlock(http2.NewFramer(&b, nil), 3, block, true, 16<<10); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(nil, &b)
			var got []byte
			frames := 0
			for b.Len() > 0 {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				frames++
				switch f := f.(type) {
				case *http2.HeadersFrame:
					if frames != 1 || !f.StreamEnded() || f.HeadersEnded() != (tc.wantFrames == 1) {
						t.Fatalf("HEADERS as frame %d: end stream %v, end headers %v", frames, f.StreamEnded(), f.HeadersEnded())
					}
					got = append(got, f.HeaderBlockFragment()...)
				case *http2.ContinuationFrame:
					if f.HeadersEnded() != (frames == tc.wantFrames) {
						t.Fatalf("CONTINUATION %d: end headers %v", frames, f.HeadersEnded())
					}
					got = append(got, f.HeaderBlockFragment()...)
				default:
					t.Fatalf("unexpected frame %v", f)
				}
			}
			if frames != tc.wantFrames || !bytes.Equal(got, block) {
				t.Fatalf("%d frames carrying %d bytes, want %d frames carrying %d", frames, len(got), tc.wantFrames, len(block))
			}
		})
	}
}

func TestRecvWindowCreditsAtHalf(t *testing.T) {
	w := RecvWindow{Left: 100 - 70}
	if c := w.Read(40, 100); c != 0 {
		t.Fatalf("credit %d after 40 of 100 read, want none yet", c)
	}
	if c := w.Read(30, 100); c != 70 || w.Left != 100 || w.Unacked != 0 {
		t.Fatalf("credit %d, window %+v after 70 read; want 70 and the window whole", c, w)
	}
}
