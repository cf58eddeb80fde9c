package xdsclient

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"maps"
	"slices"
)

// RawResources are one type's accepted resources in wire form (each the
// value of the Any it came in), kept for config dumps. A resource of at
// least packMin bytes (a large mesh's route configuration) is kept
// DEFLATE-compressed against a dictionary cut from the first such
// resource of the type: with 1000 services the route configuration's
// 0.54 MB take 0.03 MB. Smaller ones are kept as they came (see packMin).
// A RawResources is immutable.
type RawResources struct {
	dict []byte
	m    map[string][]byte // compressed, by name
}

// NewRawResources compresses resources (wire form by name), with a
// dictionary cut from one of them.
func NewRawResources(resources map[string][]byte) *RawResources {
	var p rawPacker
	m := make(map[string][]byte, len(resources))
	for _, n := range slices.Sorted(maps.Keys(resources)) {
		m[n] = p.pack(resources[n])
	}
	return &RawResources{dict: p.dict, m: m}
}

// Len is the number of resources.
func (r *RawResources) Len() int {
	if r == nil {
		return 0
	}
	return len(r.m)
}

// Each calls fn with every resource's wire form, by name in order; fn
// must not keep b. It stops at fn's first error and returns it, or the
// error of a resource that does not decompress.
func (r *RawResources) Each(fn func(name string, b []byte) error) error {
	if r == nil {
		return nil
	}
	var (
		fr  io.ReadCloser
		src bytes.Reader
		out bytes.Buffer
	)
	for _, n := range slices.Sorted(maps.Keys(r.m)) {
		kept := r.m[n]
		if len(kept) == 0 {
			return fmt.Errorf("resource %q: nothing kept", n)
		}
		if kept[0] == keptPlain {
			if err := fn(n, kept[1:]); err != nil {
				return err
			}
			continue
		}
		src.Reset(kept[1:])
		if fr == nil {
			fr = flate.NewReaderDict(&src, r.dict)
		} else if err := fr.(flate.Resetter).Reset(&src, r.dict); err != nil {
			return err
		}
		out.Reset()
		if _, err := out.ReadFrom(fr); err != nil {
			return err
		}
		if err := fn(n, out.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// rawDictMax bounds the dictionary: DEFLATE refers back at most 32 KiB.
const rawDictMax = 32 << 10

// packMin is the size from which a resource is compressed. A compressor
// is made for each response that has one to pack, and its state takes
// about 1 MB: for a smaller resource it would allocate over 16 times
// what it could save. With 100 services the route configuration (55 KB)
// changed on every edit of the mesh, and compressing it was half of what
// applying the change allocated (docs/performance.md, optimisation 27).
const packMin = 64 << 10

// The first byte of a kept resource says how the rest is kept.
const (
	keptPlain    = 0
	keptDeflated = 1
)

// rawPacker compresses a type's resources as they are accepted. Its
// dictionary is set by the first resource it packs and kept for the
// type's life, since what it packed needs it to be read.
type rawPacker struct {
	dict []byte
	w    *flate.Writer // for one response at a time (see reset)
	buf  bytes.Buffer
}

// pack returns b as kept (tagged, compressed if large), in a slice of
// its own.
func (p *rawPacker) pack(b []byte) []byte {
	if len(b) < packMin {
		out := make([]byte, 1+len(b))
		out[0] = keptPlain
		copy(out[1:], b)
		return out
	}
	if p.dict == nil {
		p.dict = bytes.Clone(b[max(0, len(b)-rawDictMax):])
		if p.dict == nil {
			p.dict = []byte{}
		}
	}
	p.buf.Reset()
	p.buf.WriteByte(keptDeflated)
	if p.w == nil {
		// Level 2 uses the dictionary (level 1 does not) at about
		// 700 MB/s.
		p.w, _ = flate.NewWriterDict(&p.buf, 2, p.dict)
	} else {
		p.w.Reset(&p.buf)
	}
	_, _ = p.w.Write(b) // a bytes.Buffer does not fail
	_ = p.w.Close()
	return bytes.Clone(p.buf.Bytes())
}

// reset drops the compressor (about 1 MB of tables) after a response:
// it is made again for the next one, which may be minutes away.
func (p *rawPacker) reset() {
	p.w = nil
	p.buf = bytes.Buffer{}
}
