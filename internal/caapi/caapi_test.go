package caapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestRequestRoundTrip(t *testing.T) {
	in := &Request{CSR: []byte("-----BEGIN CERTIFICATE REQUEST-----\n"), Validity: 90 * time.Minute}
	got, err := DecodeRequest(EncodeRequest(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	resp := &Response{CertChain: []byte("chain"), TrustBundle: []byte("bundle")}
	back, err := DecodeResponse(EncodeResponse(resp))
	if err != nil || string(back.CertChain) != "chain" || string(back.TrustBundle) != "bundle" {
		t.Errorf("DecodeResponse = %+v, %v", back, err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]any
		want string
	}{
		{"no csr", map[string]any{}, "csr: missing"},
		{"csr not a string", map[string]any{"csr": 3}, "csr: want a string"},
		{"validity not a number", map[string]any{"csr": "x", "validity_seconds": "1h"}, "want a number"},
		{"negative validity", map[string]any{"csr": "x", "validity_seconds": -5}, "want a number of seconds >= 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := structpb.NewStruct(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeRequest(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeRequest = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		md   metadata.MD
		want string
		code codes.Code
	}{
		{"bearer", metadata.Pairs("authorization", "Bearer abc"), "abc", codes.OK},
		{"lowercase scheme", metadata.Pairs("authorization", "bearer abc"), "abc", codes.OK},
		{"none", metadata.MD{}, "", codes.Unauthenticated},
		{"basic", metadata.Pairs("authorization", "Basic abc"), "", codes.Unauthenticated},
		{"empty token", metadata.Pairs("authorization", "Bearer  "), "", codes.Unauthenticated},
		{"two", metadata.Pairs("authorization", "Bearer a", "authorization", "Bearer b"), "", codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BearerToken(metadata.NewIncomingContext(context.Background(), tc.md))
			if got != tc.want || status.Code(err) != tc.code {
				t.Errorf("BearerToken = %q, %v; want %q, %s", got, err, tc.want, tc.code)
			}
		})
	}
}
