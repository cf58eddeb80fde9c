package validate

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// checkPeerAuthentication checks a PeerAuthentication: portLevelMtls only
// with a selector and with real port numbers (as Istio requires), and one
// selector-less PeerAuthentication per namespace (Istio would pick the
// oldest silently; Weft asks to keep one). Every field of the kind is
// supported; precedence between them is decided by xdstranslate.
func (b *build) checkPeerAuthentication(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*security.PeerAuthentication)).(*security.PeerAuthentication)
	selector := len(spec.GetSelector().GetMatchLabels()) > 0
	ports := make([]uint32, 0, len(spec.GetPortLevelMtls()))
	for p := range spec.GetPortLevelMtls() {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, p := range ports {
		at := fmt.Sprintf("spec.portLevelMtls[%d]", p)
		switch {
		case !selector:
			rep.errorf(at, "portLevelMtls needs a selector (spec.selector.matchLabels) naming the workloads whose port %d it sets", p)
		case p == 0 || p > 65535:
			rep.errorf(at, "port %d is out of range; use the workload's port number, 1 to 65535", p)
		case spec.GetPortLevelMtls()[p] == nil:
			rep.errorf(at, "port %d has no mtls mode; set mode: STRICT, PERMISSIVE or DISABLE", p)
		}
	}
	if !selector && spec.GetMtls() == nil && len(ports) == 0 {
		rep.warnf("spec.mtls", "no mtls mode set: the policy changes nothing (the mode is inherited); set mtls.mode")
	}
	if !selector {
		if first := b.peerAuthDefault[r.Namespace]; first != nil && first != r {
			rep.errorf("spec.selector", "namespace %s already has a PeerAuthentication without selector, %s; keep one", r.Namespace, where(first))
		}
	}
	return func() {
		if !selector {
			if b.peerAuthDefault == nil {
				b.peerAuthDefault = map[string]*config.Resource{}
			}
			if b.peerAuthDefault[r.Namespace] == nil {
				b.peerAuthDefault[r.Namespace] = r
			}
		}
		b.snap.PeerAuthentications = append(b.snap.PeerAuthentications, &model.PeerAuthentication{Meta: r.Meta, Spec: spec})
	}
}
