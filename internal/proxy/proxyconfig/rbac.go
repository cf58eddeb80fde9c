package proxyconfig

import (
	"fmt"

	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"weft.dev/weft/internal/proxy/rbac"
)

const typeNetworkRBAC = rbac.NetworkTypeURL

// parseSecurityHTTPFilter takes the HTTP filters the proxy enforces before
// routing: RBAC (compiled into h.RBAC, in order) and JWT authentication.
// ok is false for other filters.
func parseSecurityHTTPFilter(h *HTTPConnectionManager, f *hcmv3.HttpFilter) (ok bool, err error) {
	switch f.GetTypedConfig().GetTypeUrl() {
	case rbac.HTTPTypeURL:
		cfg := &httprbac.RBAC{}
		if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return true, err
		}
		es, err := rbac.CompileHTTP(cfg)
		if err != nil {
			return true, err
		}
		if h.RBAC == nil {
			h.RBAC = &rbac.Chain{}
		}
		h.RBAC.Engines = append(h.RBAC.Engines, es...)
		return true, nil
	case typeJWTAuthn:
		if h.JWT != nil {
			return true, fmt.Errorf("a second jwt_authn filter is not supported")
		}
		j, err := parseJWTAuthn(f.GetTypedConfig())
		if err != nil {
			return true, err
		}
		h.JWT = j
		return true, nil
	}
	return false, nil
}

func parseNetworkRBAC(fc *FilterChain, tc *anypb.Any) error {
	cfg := &netrbac.RBAC{}
	if err := tc.UnmarshalTo(cfg); err != nil {
		return err
	}
	es, err := rbac.CompileNetwork(cfg)
	if err != nil {
		return err
	}
	if fc.RBAC == nil {
		fc.RBAC = &rbac.Chain{}
	}
	fc.RBAC.Engines = append(fc.RBAC.Engines, es...)
	return nil
}
