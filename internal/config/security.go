package config

import (
	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
)

// KindPeerAuthentication is Istio's PeerAuthentication
// (security.istio.io); its spec decodes into *security.PeerAuthentication
// of istio.io/api/security/v1beta1, which security.istio.io/v1 aliases.
const KindPeerAuthentication = "PeerAuthentication"

func init() {
	istioKinds[KindPeerAuthentication] = func() proto.Message { return &security.PeerAuthentication{} }
	kindAPIVersions[KindPeerAuthentication] = []string{"security.istio.io/v1", "security.istio.io/v1beta1"}
}
