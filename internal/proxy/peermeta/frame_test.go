package peermeta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func frame(payload string) []byte {
	b := []byte("weft\x01")
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
		want Workload
	}{
		{name: "full", w: Workload{Name: "db-v1", Namespace: "shop", App: "db", Version: "v1", ServiceAccount: "db"}},
		{name: "unknown peer: empty payload", w: Workload{}},
		{name: "longest values", w: Workload{Name: strings.Repeat("w", MaxNameLen), Namespace: strings.Repeat("n", MaxValueLen),
			App: strings.Repeat("a", MaxValueLen), Version: strings.Repeat("v", MaxValueLen), ServiceAccount: strings.Repeat("s", MaxNameLen)}},
		{name: "invalid values left out", w: Workload{Name: "db-v1", App: "caf\u00e9", Version: strings.Repeat("v", MaxValueLen+1)},
			want: Workload{Name: "db-v1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == (Workload{}) {
				want = tc.w
				if len(Invalid(tc.w)) > 0 {
					t.Fatal("bad test case")
				}
			}
			// The payload that follows the frame stays in the reader.
			b := AppendFrame([]byte("prefix"), tc.w)[len("prefix"):]
			if len(b) > FrameHeaderLen+MaxLen {
				t.Fatalf("frame of %d bytes, over %d", len(b), FrameHeaderLen+MaxLen)
			}
			r := bytes.NewReader(append(append([]byte(nil), b...), "payload"...))
			got, err := ReadFrame(r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ReadFrame (-want +got):\n%s", diff)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "payload" {
				t.Errorf("after the frame the reader holds %q, want %q", rest, "payload")
			}
			got, n, err := ParseFrame(append(b, "payload"...))
			if err != nil || n != len(b) {
				t.Fatalf("ParseFrame = %d, %v; want %d, nil", n, err, len(b))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseFrame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	tooLong := []byte("weft\x01")
	tooLong = binary.BigEndian.AppendUint16(tooLong, MaxLen+1)
	tooLong = append(tooLong, make([]byte, MaxLen+1)...)
	tests := []struct {
		name    string
		in      []byte
		invalid bool   // wraps ErrFrame
		msg     string // in the error
	}{
		{name: "payload instead of a frame", in: []byte("GET / HTTP/1.1\r\n\r\n"), invalid: true, msg: `starts with "GET "`},
		{name: "other version", in: []byte("weft\x02\x00\x00"), invalid: true, msg: "version 2, want 1"},
		{name: "oversized", in: tooLong, invalid: true, msg: "payload of 1025 bytes, over the limit of 1024"},
		{name: "no frame at all", in: nil, msg: "EOF"},
		{name: "header cut short", in: []byte("weft\x01\x00"), msg: "unexpected EOF"},
		{name: "payload cut short", in: frame("w=db-v1")[:9], msg: "unexpected EOF"},
		{name: "pair without '='", in: frame("w=db;n"), invalid: true, msg: `pair "n" is not key=value`},
		{name: "two-byte key", in: frame("ww=db"), invalid: true, msg: `pair "ww=db"`},
		{name: "empty pair", in: frame("w=db;;n=x"), invalid: true, msg: `pair ""`},
		{name: "trailing ';'", in: frame("w=db;"), invalid: true, msg: "ends with ';'"},
		{name: "empty value", in: frame("w="), invalid: true, msg: `value of 'w' is empty`},
		{name: "bytes outside the name charset", in: frame("v=v1 beta"), invalid: true, msg: `value of 'v'`},
		{name: "label value over 63 bytes", in: frame("a=" + strings.Repeat("a", MaxValueLen+1)), invalid: true, msg: `value of 'a'`},
		{name: "spaces", in: frame(" w=db"), invalid: true, msg: `pair " w=db"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tc.in))
			if err == nil {
				t.Fatalf("ReadFrame(%q) = nil error", tc.in)
			}
			if errors.Is(err, ErrFrame) != tc.invalid {
				t.Errorf("ReadFrame(%q) = %v: wraps ErrFrame %v, want %v", tc.in, err, !tc.invalid, tc.invalid)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadFrame(%q) = %q, want it to say %q", tc.in, err, tc.msg)
			}
			if _, _, perr := ParseFrame(tc.in); perr == nil || perr.Error() != err.Error() {
				t.Errorf("ParseFrame = %v, ReadFrame = %v: want the same error", perr, err)
			}
		})
	}
}

func TestReadFrameIgnoresUnknownKeys(t *testing.T) {
	got, err := ReadFrame(bytes.NewReader(frame("w=db-v1;x=a later key's value;v=v1;w=db-v2")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Workload{Name: "db-v2", Version: "v1"}, got); diff != "" {
		t.Errorf("ReadFrame (-want +got):\n%s", diff)
	}
}

// FuzzReadFrame checks that a frame from a peer never panics the parser,
// never takes more than a frame's bytes, and that what it accepts is valid
// and survives a round trip.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Workload{Name: "db-v1", Namespace: "shop", App: "db", Version: "v1", ServiceAccount: "db"}))
	f.Add(AppendFrame(nil, Workload{}))
	f.Add(append(AppendFrame(nil, Workload{Name: "x"}), "payload"...))
	f.Add(frame("w=db;;x=?"))
	f.Add([]byte("weft\x01\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		w, err := ReadFrame(r)
		pw, n, perr := ParseFrame(b)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ReadFrame error %v, ParseFrame error %v", err, perr)
		}
		if err != nil {
			return
		}
		if consumed := len(b) - r.Len(); consumed != n || n > FrameHeaderLen+MaxLen {
			t.Fatalf("ReadFrame took %d bytes, ParseFrame %d (limit %d)", consumed, n, FrameHeaderLen+MaxLen)
		}
		if diff := cmp.Diff(w, pw); diff != "" {
			t.Fatalf("ReadFrame and ParseFrame differ (-read +parse):\n%s", diff)
		}
		if bad := Invalid(w); len(bad) > 0 {
			t.Fatalf("accepted invalid fields %v: %+v", bad, w)
		}
		again, err := ReadFrame(bytes.NewReader(AppendFrame(nil, w)))
		if err != nil {
			t.Fatalf("re-encoded frame of %+v: %v", w, err)
		}
		if diff := cmp.Diff(w, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
