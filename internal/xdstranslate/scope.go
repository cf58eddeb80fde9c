package xdstranslate

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// scope is the set of services a proxy may reach, from the Sidecar
// resource that selects it. A nil scope allows everything.
type scope struct {
	// name is the Sidecar's "ns/name".
	name string
	// key is name, and for a root namespace Sidecar the proxy's
	// namespace, for cache keys.
	key   string
	hosts []egressHost
	// registryOnly is the Sidecar's outboundTrafficPolicy REGISTRY_ONLY
	// (set without a mode too, as in Istio): destinations outside the
	// registry are refused instead of passed through.
	registryOnly bool
}

type egressHost struct {
	// ns is a namespace, "*" for any, or "~" for none.
	ns string
	// host is "*", "*.suffix" or a name.
	host string
}

// scopeFor finds the Sidecar that applies to p: in p's namespace, one whose
// workloadSelector matches p's labels first, then the one without a
// selector, then the root namespace's one without a selector. Gateways are
// not scoped.
func scopeFor(snap *model.Snapshot, p *Proxy) *scope {
	if p.Type == Gateway {
		return nil
	}
	var chosen *model.Sidecar
	for _, sc := range snap.Sidecars {
		if sc.Namespace != p.Namespace {
			continue
		}
		sel := sc.Spec.GetWorkloadSelector().GetLabels()
		if len(sel) > 0 {
			if model.LabelsMatch(sel, p.Labels) {
				chosen = sc
				break
			}
			continue
		}
		if chosen == nil {
			chosen = sc
		}
	}
	// Istio: a namespace without a Sidecar of its own takes the root
	// namespace's selector-less one, whose "./" then means the proxy's
	// namespace.
	home := ""
	if chosen == nil {
		root := snap.MeshTelemetry.Root()
		for _, sc := range snap.Sidecars {
			if sc.Namespace == root && len(sc.Spec.GetWorkloadSelector().GetLabels()) == 0 {
				chosen, home = sc, p.Namespace
				break
			}
		}
	}
	if chosen == nil {
		return nil
	}
	s := &scope{name: chosen.Namespace + "/" + chosen.Name}
	s.key = s.name
	dot := chosen.Namespace
	if home != "" {
		dot = home
		s.key += "@" + home // "./" depends on the proxy's namespace
	}
	if otp := chosen.Spec.GetOutboundTrafficPolicy(); otp != nil && otp.GetMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY {
		s.registryOnly = true
	}
	if len(chosen.Spec.GetEgress()) == 0 {
		// Istio: without egress, the sidecar reaches every service.
		s.hosts = []egressHost{{ns: "*", host: "*"}}
	}
	for _, eg := range chosen.Spec.GetEgress() {
		for _, h := range eg.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				ns, host = "*", h
			}
			if ns == "." {
				ns = dot
			}
			if host != "*" && !strings.HasPrefix(host, "*") && !strings.Contains(host, ".") {
				host = model.FQDN(host, dot) // short names come in "./" (validate)
			}
			s.hosts = append(s.hosts, egressHost{ns: ns, host: host})
		}
	}
	return s
}

// allows reports whether the scope lets the proxy reach a service.
func (s *scope) allows(host, namespace string) bool {
	if s == nil {
		return true
	}
	for _, h := range s.hosts {
		if h.ns == "~" {
			continue
		}
		if h.ns != "*" && h.ns != namespace {
			continue
		}
		if hostMatches(h.host, host) {
			return true
		}
	}
	return false
}

// blocksUnknown reports whether the proxy refuses destinations outside
// the registry (REGISTRY_ONLY); with no Sidecar it passes them through
// (ALLOW_ANY, Istio's default).
func (s *scope) blocksUnknown() bool { return s != nil && s.registryOnly }

func (s *scope) cacheKey() string {
	if s == nil {
		return ""
	}
	return s.key
}
