package config

import (
	"google.golang.org/protobuf/proto"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
)

// KindProxyConfig is Istio's ProxyConfig (networking.istio.io/v1beta1,
// the only version it has); its spec decodes into
// *networkingv1beta1.ProxyConfig. It sets how a workload's proxy
// process runs (its threads, its environment), which takes effect when
// the proxy starts.
const KindProxyConfig = "ProxyConfig"

func init() {
	istioKinds[KindProxyConfig] = func() proto.Message { return &networkingv1beta1.ProxyConfig{} }
	kindAPIVersions[KindProxyConfig] = []string{"networking.istio.io/v1beta1"}
}
