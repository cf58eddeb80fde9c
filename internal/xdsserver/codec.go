package xdsserver

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Sending one encoding to many streams.
//
// A response that carries every resource of a resourceSet holds the set's
// encoded resources as its unknown fields (setEncodedResources): encoded
// as any other message, it is exactly the DiscoveryResponse with those
// resources. gRPC's proto codec copies them into a new buffer for every
// stream (766 KB per proxy in the 1000-service benchmark); xdsCodec hands
// gRPC the shared encoding itself, after a small buffer with the
// response's own fields (version, type, nonce), so that the only copy is
// the one into the HTTP/2 frames. A server without it (Register on a
// caller's grpc.Server, without ServerOptions) sends the same bytes.

// setEncodedResources makes body, the encoding of repeated field 2
// (resources) of a DiscoveryResponse, the resources of out. body is shared
// and must not be changed; its capacity must be its length, so that an
// append to out's unknown fields copies it.
func setEncodedResources(out *discovery.DiscoveryResponse, body []byte) {
	out.ProtoReflect().SetUnknown(protoreflect.RawFields(body))
}

// minSharedBody is the size from which xdsCodec sends unknown fields
// without copying them; below it a copy costs less than a second buffer.
const minSharedBody = 4 << 10

// xdsCodec is gRPC's proto codec, except that it sends the unknown fields
// of a DiscoveryResponse (its shared encoded resources) without copying
// them, and decodes the resource names of a DiscoveryRequest that the
// server serves to the server's own strings.
type xdsCodec struct {
	proto encoding.CodecV2
	// names are the resource names requests are decoded to, by name (nil:
	// none); Server.updateEndpoints replaces them.
	names *atomic.Pointer[map[string]string]
}

// ServerOptions are the grpc.ServerOptions a grpc.Server that serves s
// with Register should have: a codec that sends the encoding of resources
// shared between proxies without copying it per stream, and reads the
// names proxies subscribe to without a new string for each. It applies
// to every service of the server and encodes all else as gRPC's default
// codec does. Serve uses them.
func (s *Server) ServerOptions() []grpc.ServerOption {
	c := newXDSCodec()
	c.names = &s.names
	return []grpc.ServerOption{grpc.ForceServerCodecV2(c)}
}

func newXDSCodec() xdsCodec {
	c := encoding.GetCodecV2(grpcproto.Name)
	if c == nil {
		panic("xdsserver: gRPC's proto codec is not registered")
	}
	return xdsCodec{proto: c}
}

func (c xdsCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*discovery.DiscoveryResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	m := r.ProtoReflect()
	body := m.GetUnknown()
	if len(body) < minSharedBody {
		return c.proto.Marshal(v)
	}
	// The known fields, then the unknown ones: proto.Marshal's order.
	head := &discovery.DiscoveryResponse{}
	hm := head.ProtoReflect()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		hm.Set(fd, v)
		return true
	})
	b, err := proto.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("marshaling discovery response: %w", err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b), mem.SliceBuffer(body)}, nil
}

// Unmarshal decodes as gRPC's proto codec does, except that a
// DiscoveryRequest's resource names that the server serves are the
// server's own strings: a state-of-the-world client names its whole
// subscription in every request (a sidecar's EDS request names every
// cluster, 1000 in the benchmark), and the same names come from every
// proxy, so decoding each as a new string was most of the cost of reading
// requests, and of the memory the streams keep.
func (c xdsCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*discovery.DiscoveryRequest)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	var names map[string]string
	if c.names != nil {
		if m := c.names.Load(); m != nil {
			names = *m
		}
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return unmarshalRequest(buf.ReadOnlyData(), req, names)
}

// resourceNamesField is DiscoveryRequest.resource_names.
const resourceNamesField = 3

// unmarshalRequest is proto.Unmarshal(b, req), except that the resource
// names found in names are names' strings. The other fields are left to
// proto.Unmarshal.
func unmarshalRequest(b []byte, req *discovery.DiscoveryRequest, names map[string]string) error {
	if len(names) == 0 {
		return proto.Unmarshal(b, req)
	}
	count, restSize := 0, 0
	for p := b; len(p) > 0; {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return proto.Unmarshal(b, req) // reports the error
		}
		m := protowire.ConsumeFieldValue(num, typ, p[n:])
		if m < 0 {
			return proto.Unmarshal(b, req)
		}
		if num == resourceNamesField && typ == protowire.BytesType {
			count++
		} else {
			restSize += n + m
		}
		p = p[n+m:]
	}
	if count == 0 {
		return proto.Unmarshal(b, req)
	}
	out := make([]string, 0, count)
	rest := make([]byte, 0, restSize)
	for p := b; len(p) > 0; {
		num, typ, n := protowire.ConsumeTag(p)
		m := protowire.ConsumeFieldValue(num, typ, p[n:])
		if num == resourceNamesField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(p[n:])
			if name, ok := names[string(v)]; ok {
				out = append(out, name)
			} else if utf8.Valid(v) {
				out = append(out, string(v))
			} else {
				return errors.New("proto: invalid UTF-8 in envoy.service.discovery.v3.DiscoveryRequest.resource_names")
			}
		} else {
			rest = append(rest, p[:n+m]...)
		}
		p = p[n+m:]
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return err
	}
	req.ResourceNames = out
	return nil
}

// Name is the proto codec's: clients see no difference.
func (c xdsCodec) Name() string { return c.proto.Name() }
