package peermeta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The frame carries the same metadata on TCP. Two sidecars that
// negotiated the peer exchange protocol in ALPN on their mTLS connection
// (xdsmeta.PeerExchangeALPN) each write one frame right after the
// handshake, without waiting for the other's, then read the other's; the
// payload follows. Layout:
//
//	"weft"   4 bytes, magic
//	version  1 byte, FrameVersion
//	length   2 bytes, big endian: payload bytes, at most MaxLen
//	payload  the header value (Encode): w=<workload>;n=<namespace>;...
//
// Only sidecars write frames, so a frame is read strictly: a bad magic or
// version, a length over MaxLen, a short frame, an empty or malformed pair
// (not "k=v" with a one-byte key) and a known key with a value that is not
// valid for it (see Invalid) are errors, and the connection is closed.
// Unknown keys are ignored, so later versions may add keys.

// FrameVersion is the version byte of frames this package writes and
// reads.
const FrameVersion = 1

// frameMagic starts every frame.
const frameMagic = "weft"

// FrameHeaderLen is the size of a frame's fixed part; a frame is at most
// FrameHeaderLen+MaxLen bytes.
const FrameHeaderLen = len(frameMagic) + 1 + 2

// ErrFrame is wrapped by every error of ReadFrame and ParseFrame about
// what the peer sent (not by I/O errors).
var ErrFrame = errors.New("invalid peer metadata frame")

// AppendFrame appends the frame that describes w to dst. Fields that are
// not valid values are left out, as in Encode. Sidecars build their frame
// once at start.
func AppendFrame(dst []byte, w Workload) []byte {
	v := Encode(w) // at most 5 keys of 253 bytes: well under MaxLen
	dst = append(dst, frameMagic...)
	dst = append(dst, FrameVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}

// ReadFrame reads exactly one frame from r, and not a byte more, so the
// payload that follows it stays in r. A frame that is not valid gives an
// error that wraps ErrFrame; a read that fails or ends early gives that
// error (io.ErrUnexpectedEOF for a frame cut short).
func ReadFrame(r io.Reader) (Workload, error) {
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Workload{}, fmt.Errorf("reading peer metadata frame: %w", err)
	}
	n, err := parseHeader(hdr[:])
	if err != nil {
		return Workload{}, err
	}
	if n == 0 {
		return Workload{}, nil
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Workload{}, fmt.Errorf("reading peer metadata frame: %w", err)
	}
	return parsePayload(string(payload))
}

// ParseFrame reads one frame at the start of b and returns it and the
// number of bytes it took, with ReadFrame's errors: an empty b gives
// io.EOF, one that holds only part of a frame io.ErrUnexpectedEOF.
func ParseFrame(b []byte) (Workload, int, error) {
	if len(b) == 0 {
		return Workload{}, 0, fmt.Errorf("reading peer metadata frame: %w", io.EOF)
	}
	if len(b) < FrameHeaderLen {
		return Workload{}, 0, fmt.Errorf("reading peer metadata frame: %w", io.ErrUnexpectedEOF)
	}
	n, err := parseHeader(b[:FrameHeaderLen])
	if err != nil {
		return Workload{}, 0, err
	}
	end := FrameHeaderLen + n
	if len(b) < end {
		return Workload{}, 0, fmt.Errorf("reading peer metadata frame: %w", io.ErrUnexpectedEOF)
	}
	w, err := parsePayload(string(b[FrameHeaderLen:end]))
	if err != nil {
		return Workload{}, 0, err
	}
	return w, end, nil
}

// parseHeader checks a frame's fixed part and returns its payload length.
func parseHeader(h []byte) (int, error) {
	if string(h[:len(frameMagic)]) != frameMagic {
		return 0, fmt.Errorf("%w: starts with %q, not %q (the peer does not speak the exchange it negotiated)", ErrFrame, h[:len(frameMagic)], frameMagic)
	}
	if v := h[len(frameMagic)]; v != FrameVersion {
		return 0, fmt.Errorf("%w: version %d, want %d", ErrFrame, v, FrameVersion)
	}
	n := int(binary.BigEndian.Uint16(h[len(frameMagic)+1:]))
	if n > MaxLen {
		return 0, fmt.Errorf("%w: payload of %d bytes, over the limit of %d", ErrFrame, n, MaxLen)
	}
	return n, nil
}

// parsePayload reads a frame's payload strictly (see the frame layout).
func parsePayload(v string) (Workload, error) {
	var w Workload
	for v != "" {
		var kv string
		if i := strings.IndexByte(v, ';'); i >= 0 {
			kv, v = v[:i], v[i+1:]
			if v == "" {
				return Workload{}, fmt.Errorf("%w: ends with ';'", ErrFrame)
			}
		} else {
			kv, v = v, ""
		}
		if len(kv) < 2 || kv[1] != '=' {
			return Workload{}, fmt.Errorf("%w: pair %q is not key=value with a one-byte key", ErrFrame, truncate(kv))
		}
		k, val := kv[0], kv[2:]
		var field *string
		switch k {
		case 'w':
			field = &w.Name
		case 'n':
			field = &w.Namespace
		case 'a':
			field = &w.App
		case 'v':
			field = &w.Version
		case 's':
			field = &w.ServiceAccount
		default:
			continue // a later version's key
		}
		if val == "" || !validValue(k, val) {
			return Workload{}, fmt.Errorf("%w: value of %q is empty, too long or has bytes outside [A-Za-z0-9._-]: %q", ErrFrame, k, truncate(val))
		}
		*field = val
	}
	return w, nil
}

// truncate shortens what an error quotes from a peer.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
