package xdsclient

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
)

// Resources kept compressed read back as they came, in name order, and
// resources packed in later responses (a new compressor, the same
// dictionary) read back with the dictionary of the first.
func TestRawResourcesRoundTrip(t *testing.T) {
	var p rawPacker
	want := map[string][]byte{}
	stored := map[string][]byte{}
	for resp := range 3 {
		for i := range 50 {
			name := fmt.Sprintf("outbound|80||svc-%04d.bench.svc.cluster.local", resp*50+i)
			// Small resources (kept as they are) and large ones
			// (compressed), and an empty one (all fields default).
			b := bytes.Repeat([]byte(name+"|eds|tls|"), 1+i%7*300)
			if i == 7 {
				b = []byte{}
			}
			want[name], stored[name] = b, p.pack(b)
		}
		p.reset()
	}
	r := &RawResources{dict: p.dict, m: stored}
	if r.Len() != len(want) {
		t.Fatalf("Len %d, want %d", r.Len(), len(want))
	}
	var packed, plain int
	for n := range want {
		if len(want[n]) < packMin {
			if len(stored[n]) != len(want[n])+1 {
				t.Errorf("%s: %d bytes kept for %d, want them as they are (and a tag)", n, len(stored[n]), len(want[n]))
			}
			continue
		}
		packed += len(stored[n])
		plain += len(want[n])
	}
	if plain == 0 || packed >= plain/4 {
		t.Errorf("%d bytes kept for %d in large resources: want at least 4x on repetitive ones", packed, plain)
	}
	prev := ""
	seen := 0
	if err := r.Each(func(n string, b []byte) error {
		if n <= prev {
			t.Errorf("%q after %q: not in name order", n, prev)
		}
		prev = n
		if !bytes.Equal(b, want[n]) {
			t.Errorf("%s: read back %d bytes, want %d", n, len(b), len(want[n]))
		}
		seen++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("Each visited %d resources, want %d", seen, len(want))
	}

	again := NewRawResources(maps.Clone(want))
	n := 0
	if err := again.Each(func(name string, b []byte) error {
		n++
		if !bytes.Equal(b, want[name]) {
			t.Errorf("NewRawResources: %s read back wrong", name)
		}
		return nil
	}); err != nil || n != len(want) {
		t.Errorf("NewRawResources: %d resources read back, err %v", n, err)
	}
	var none *RawResources
	if none.Len() != 0 || none.Each(func(string, []byte) error { return fmt.Errorf("called") }) != nil {
		t.Error("a nil RawResources is not empty")
	}
}

// Keeping a small resource (a cluster, endpoints) costs no compressor.
func BenchmarkPackSmall(b *testing.B) {
	r := bytes.Repeat([]byte("outbound|80||svc-0001.bench.svc.cluster.local"), 8) // ~380 B
	var p rawPacker
	b.ReportAllocs()
	for b.Loop() {
		p.pack(r)
		p.reset()
	}
}
