package xdsserver

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestCodecSharedResources: a response carrying a resourceSet's shared
// encoding is sent as the two buffers, without copying the shared one, and
// decodes to the response with the resources in Resources.
func TestCodecSharedResources(t *testing.T) {
	enc := map[string][]byte{}
	for i := range 60 { // over minSharedBody
		name := fmt.Sprintf("outbound|9080||svc-%d.default.svc.cluster.local", i)
		enc[name] = []byte(strings.Repeat("x", 40) + name)
	}
	rs := newResourceSet(resource.ClusterType, "v1", enc)
	if cap(rs.body) != len(rs.body) {
		t.Errorf("body capacity %d, want its length %d", cap(rs.body), len(rs.body))
	}
	out := &discovery.DiscoveryResponse{VersionInfo: "v1", TypeUrl: resource.ClusterType, Nonce: "7"}
	setEncodedResources(out, rs.body)
	want := &discovery.DiscoveryResponse{VersionInfo: "v1", TypeUrl: resource.ClusterType, Nonce: "7", Resources: rs.anys}

	c := newXDSCodec()
	data, err := c.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 2 || &data[1].ReadOnlyData()[0] != &rs.body[0] {
		t.Errorf("got %d buffers, want 2, the second the shared encoding", len(data))
	}
	got := &discovery.DiscoveryResponse{}
	if err := proto.Unmarshal(data.Materialize(), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("decoded response (-want +got):\n%s", diff)
	}
	// The default codec's encoding of the same message decodes the same.
	plain, err := proto.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	got = &discovery.DiscoveryResponse{}
	if err := proto.Unmarshal(plain, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("proto.Marshal's encoding decoded (-want +got):\n%s", diff)
	}
	// Small or other messages go to the proto codec.
	small := &discovery.DiscoveryResponse{VersionInfo: "v2", Resources: rs.anys[:1]}
	if data, err = c.Marshal(small); err != nil || len(data) != 1 {
		t.Errorf("small response: %d buffers, %v; want 1 buffer", len(data), err)
	}
}

// TestCodecRequests: requests decode as proto.Unmarshal decodes them, the
// resource names the server serves to its own strings.
func TestCodecRequests(t *testing.T) {
	node := &core.Node{Id: "sidecar~10.0.0.1~a.default~default.svc.cluster.local", Metadata: &structpb.Struct{
		Fields: map[string]*structpb.Value{"NAMESPACE": structpb.NewStringValue("default")},
	}}
	names := []string{"outbound|9080||b.default.svc.cluster.local", "outbound|9080||a.default.svc.cluster.local", "ü"}
	// The server serves the first two names.
	served := map[string]string{names[0]: strings.Clone(names[0]), names[1]: strings.Clone(names[1])}
	var table atomic.Pointer[map[string]string]
	table.Store(&served)
	c := newXDSCodec()
	c.names = &table
	for _, tc := range []struct {
		name string
		req  *discovery.DiscoveryRequest
	}{
		{"empty", &discovery.DiscoveryRequest{}},
		{"no names", &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}},
		{"names only", &discovery.DiscoveryRequest{ResourceNames: names}},
		{"every field", &discovery.DiscoveryRequest{
			VersionInfo: "3", Node: node, ResourceNames: names, TypeUrl: resource.EndpointType,
			ResponseNonce: "12", ErrorDetail: &status.Status{Code: 3, Message: "bad"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got := &discovery.DiscoveryRequest{VersionInfo: "left over"}
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.req, got, protocmp.Transform()); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			for i, name := range got.GetResourceNames() {
				if own, ok := served[name]; ok && unsafe.StringData(own) != unsafe.StringData(name) {
					t.Errorf("name %d %q is not the server's string", i, name)
				}
			}
		})
	}

	// Encodings proto.Unmarshal rejects are rejected; others decode as it
	// decodes them (a name with another wire type is an unknown field).
	nameTag := protowire.AppendTag(nil, resourceNamesField, protowire.BytesType)
	for name, b := range map[string][]byte{
		"invalid UTF-8 name":  protowire.AppendString(nameTag, "\xff"),
		"served then invalid": protowire.AppendString(protowire.AppendTag(protowire.AppendString(slices.Clone(nameTag), names[0]), resourceNamesField, protowire.BytesType), "\xff"),
		"truncated":           nameTag,
		"name as varint":      protowire.AppendVarint(protowire.AppendTag(protowire.AppendString(nameTag, "a"), resourceNamesField, protowire.VarintType), 1),
	} {
		t.Run(name, func(t *testing.T) {
			want := &discovery.DiscoveryRequest{}
			wantErr := proto.Unmarshal(b, want)
			got := &discovery.DiscoveryRequest{}
			err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); err == nil && diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}
