package config

import (
	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
)

// KindAuthorizationPolicy is Istio's AuthorizationPolicy and
// KindRequestAuthentication its RequestAuthentication
// (security.istio.io/v1 and v1beta1); their specs decode into the types of
// istio.io/api/security/v1beta1, which v1 aliases.
const (
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"
)

func init() {
	istioKinds[KindAuthorizationPolicy] = func() proto.Message { return &security.AuthorizationPolicy{} }
	kindAPIVersions[KindAuthorizationPolicy] = []string{"security.istio.io/v1", "security.istio.io/v1beta1"}
	istioKinds[KindRequestAuthentication] = func() proto.Message { return &security.RequestAuthentication{} }
	kindAPIVersions[KindRequestAuthentication] = []string{"security.istio.io/v1", "security.istio.io/v1beta1"}
}
