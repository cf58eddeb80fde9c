// Package caapi is the wire contract of Weft's certificate API, served by
// the control plane's CA on 15012 (TLS) and called by the sidecar. Both
// ends import it, so it depends on gRPC and the protobuf runtime only (no
// Istio or Kubernetes types).
//
// The service is defined by hand (no generated code): one unary method,
//
//	/weft.ca.v1.CertificateService/CreateCertificate
//
// whose request and response are google.protobuf.Struct messages with
// these fields:
//
//	request:  csr               string  PEM "CERTIFICATE REQUEST"
//	          validity_seconds  number  requested lifetime; 0 or absent: the CA's default
//	response: cert_chain        string  PEM, the leaf first, then intermediates (no root)
//	          trust_bundle      string  PEM, the roots to verify peers with
//
// A second unary method, added for root rotation,
//
//	/weft.ca.v1.CertificateService/GetTrustBundle
//
// is polled by sidecars between renewals (same token):
//
//	request:  cert_chain        string  PEM, the leaf (and chain) in use; may be empty
//	          bundle_serials    list    hex serials of the roots the caller trusts now
//	response: trust_bundle      string  PEM, the roots to verify peers with
//	          renew             bool    true: ask for a new certificate now (the CA
//	                                    signs with another root than the one in use)
//
// The request is also the caller's report: the CA refuses rotation steps
// until every instance reports the bundle and leaf the step needs.
//
// The caller proves which workload it is with gRPC metadata
// `authorization: Bearer <token>` (in local mode, the bootstrap token
// `weft up` gave the instance). Errors use gRPC codes: Unauthenticated (no
// or unknown token), PermissionDenied (the CSR names another identity),
// InvalidArgument (a malformed or disallowed CSR), with a message that says
// why.
package caapi

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Names of the service and its method.
const (
	ServiceName             = "weft.ca.v1.CertificateService"
	CreateCertificateMethod = "/" + ServiceName + "/CreateCertificate"
	GetTrustBundleMethod    = "/" + ServiceName + "/GetTrustBundle"
)

// ServerName is the name the control plane's TLS certificate on 15012
// carries (beside 127.0.0.1); clients verify it.
const ServerName = "weft-controlplane"

// AuthorizationKey is the metadata key carrying the caller's credential.
const AuthorizationKey = "authorization"

// Request asks for a certificate.
type Request struct {
	// CSR is a PEM "CERTIFICATE REQUEST" whose only SAN is the caller's
	// SPIFFE ID. The key stays with the caller.
	CSR []byte
	// Validity is the lifetime asked for; 0 means the CA's default. The
	// CA never issues for longer than its configured leaf lifetime.
	Validity time.Duration
}

// Response is an issued certificate.
type Response struct {
	// CertChain is PEM: the leaf first, then any intermediates.
	CertChain []byte
	// TrustBundle is PEM: the roots that peers' chains verify against.
	TrustBundle []byte
}

// Handler serves CreateCertificate. Implementations must be safe for
// concurrent use; they return gRPC status errors.
type Handler interface {
	CreateCertificate(ctx context.Context, req *Request) (*Response, error)
}

// BundleRequest asks for the current trust bundle and reports what the
// caller uses now.
type BundleRequest struct {
	// CertChain is the caller's certificate chain in use (PEM), or empty.
	CertChain []byte
	// BundleSerials are the serials (hex) of the roots it trusts now.
	BundleSerials []string
}

// BundleResponse is the current trust bundle.
type BundleResponse struct {
	// TrustBundle is PEM: the roots peers' chains verify against.
	TrustBundle []byte
	// Renew asks the caller to get a new certificate now.
	Renew bool
}

// BundleHandler serves GetTrustBundle; a Handler that implements it gets
// the method registered too.
type BundleHandler interface {
	GetTrustBundle(ctx context.Context, req *BundleRequest) (*BundleResponse, error)
}

// Register adds the service to a gRPC server.
func Register(s grpc.ServiceRegistrar, h Handler) {
	desc := serviceDesc
	if _, ok := h.(BundleHandler); ok {
		desc.Methods = append(append([]grpc.MethodDesc(nil), serviceDesc.Methods...), grpc.MethodDesc{MethodName: "GetTrustBundle", Handler: getTrustBundleHandler})
	}
	s.RegisterService(&desc, h)
}

func getTrustBundleHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		r, err := DecodeBundleRequest(req.(*structpb.Struct))
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		resp, err := srv.(BundleHandler).GetTrustBundle(ctx, r)
		if err != nil {
			return nil, err
		}
		return &structpb.Struct{Fields: map[string]*structpb.Value{
			"trust_bundle": structpb.NewStringValue(string(resp.TrustBundle)),
			"renew":        structpb.NewBoolValue(resp.Renew),
		}}, nil
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: GetTrustBundleMethod}, call)
}

// GetTrustBundle calls the CA's bundle method with the caller's token.
func GetTrustBundle(ctx context.Context, cc grpc.ClientConnInterface, token string, req *BundleRequest) (*BundleResponse, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationKey, "Bearer "+token)
	serials := make([]*structpb.Value, len(req.BundleSerials))
	for i, s := range req.BundleSerials {
		serials[i] = structpb.NewStringValue(s)
	}
	in := &structpb.Struct{Fields: map[string]*structpb.Value{
		"cert_chain":     structpb.NewStringValue(string(req.CertChain)),
		"bundle_serials": structpb.NewListValue(&structpb.ListValue{Values: serials}),
	}}
	out := new(structpb.Struct)
	if err := cc.Invoke(ctx, GetTrustBundleMethod, in, out); err != nil {
		return nil, err
	}
	bundle, err := stringField(out, "trust_bundle", true)
	if err != nil {
		return nil, err
	}
	return &BundleResponse{TrustBundle: []byte(bundle), Renew: out.GetFields()["renew"].GetBoolValue()}, nil
}

// DecodeBundleRequest reads a bundle request from the wire.
func DecodeBundleRequest(s *structpb.Struct) (*BundleRequest, error) {
	chain, err := stringField(s, "cert_chain", false)
	if err != nil {
		return nil, err
	}
	r := &BundleRequest{CertChain: []byte(chain)}
	if v, ok := s.GetFields()["bundle_serials"]; ok {
		l, ok := v.GetKind().(*structpb.Value_ListValue)
		if !ok {
			return nil, errors.New("bundle_serials: want a list of strings")
		}
		for _, e := range l.ListValue.GetValues() {
			sv, ok := e.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, errors.New("bundle_serials: want a list of strings")
			}
			r.BundleSerials = append(r.BundleSerials, sv.StringValue)
		}
	}
	return r, nil
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Handler)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "CreateCertificate",
		Handler:    createCertificateHandler,
	}},
	Metadata: "weft/ca/v1 (hand-written)",
}

func createCertificateHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		r, err := DecodeRequest(req.(*structpb.Struct))
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		resp, err := srv.(Handler).CreateCertificate(ctx, r)
		if err != nil {
			return nil, err
		}
		return EncodeResponse(resp), nil
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: CreateCertificateMethod}, call)
}

// CreateCertificate calls the CA with the caller's bearer token.
func CreateCertificate(ctx context.Context, cc grpc.ClientConnInterface, token string, req *Request) (*Response, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationKey, "Bearer "+token)
	out := new(structpb.Struct)
	if err := cc.Invoke(ctx, CreateCertificateMethod, EncodeRequest(req), out); err != nil {
		return nil, err
	}
	return DecodeResponse(out)
}

// BearerToken returns the token of the incoming call's authorization
// metadata, or an Unauthenticated error that says what is missing.
func BearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(AuthorizationKey)
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "no credential: send metadata 'authorization: Bearer <token>' (weft up gives each sidecar a bootstrap token file)")
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization value")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", status.Error(codes.Unauthenticated, "authorization metadata is not 'Bearer <token>'")
	}
	return strings.TrimSpace(tok), nil
}

// EncodeRequest is the request as sent on the wire.
func EncodeRequest(r *Request) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"csr":              structpb.NewStringValue(string(r.CSR)),
		"validity_seconds": structpb.NewNumberValue(math.Round(r.Validity.Seconds())),
	}}
}

// DecodeRequest reads a request from the wire, checking field types.
func DecodeRequest(s *structpb.Struct) (*Request, error) {
	csr, err := stringField(s, "csr", true)
	if err != nil {
		return nil, err
	}
	r := &Request{CSR: []byte(csr)}
	if v, ok := s.GetFields()["validity_seconds"]; ok {
		n, ok := v.GetKind().(*structpb.Value_NumberValue)
		if !ok {
			return nil, errors.New("validity_seconds: want a number")
		}
		secs := n.NumberValue
		if math.IsNaN(secs) || secs < 0 || secs > float64(math.MaxInt64/int64(time.Second)) {
			return nil, fmt.Errorf("validity_seconds %v: want a number of seconds >= 0", secs)
		}
		r.Validity = time.Duration(secs) * time.Second
	}
	return r, nil
}

// EncodeResponse is the response as sent on the wire.
func EncodeResponse(r *Response) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"cert_chain":   structpb.NewStringValue(string(r.CertChain)),
		"trust_bundle": structpb.NewStringValue(string(r.TrustBundle)),
	}}
}

// DecodeResponse reads a response from the wire.
func DecodeResponse(s *structpb.Struct) (*Response, error) {
	chain, err := stringField(s, "cert_chain", true)
	if err != nil {
		return nil, err
	}
	bundle, err := stringField(s, "trust_bundle", true)
	if err != nil {
		return nil, err
	}
	return &Response{CertChain: []byte(chain), TrustBundle: []byte(bundle)}, nil
}

func stringField(s *structpb.Struct, name string, required bool) (string, error) {
	v, ok := s.GetFields()[name]
	if !ok {
		if required {
			return "", fmt.Errorf("%s: missing", name)
		}
		return "", nil
	}
	sv, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", fmt.Errorf("%s: want a string", name)
	}
	return sv.StringValue, nil
}

// ParseCertificates reads every CERTIFICATE block of PEM data (a cert
// chain or a trust bundle, as the API carries them), in order; other
// blocks are skipped. Both ends of the API use it.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE found")
	}
	return out, nil
}
