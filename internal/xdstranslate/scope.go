package xdstranslate

import (
	"strings"

	"weft.dev/weft/internal/model"
)

// scope is the set of services a proxy may reach, from the Sidecar
// resource that selects it. A nil scope allows everything.
type scope struct {
	// key names the Sidecar ("ns/name") for cache keys.
	key   string
	hosts []egressHost
}

type egressHost struct {
	// ns is a namespace, "*" for any, or "~" for none.
	ns string
	// host is "*", "*.suffix" or a name.
	host string
}

// scopeFor finds the Sidecar that applies to p: in p's namespace, one whose
// workloadSelector matches p's labels first, then the one without a
// selector. Gateways are not scoped.
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
	if chosen == nil {
		return nil
	}
	s := &scope{key: chosen.Namespace + "/" + chosen.Name}
	for _, eg := range chosen.Spec.GetEgress() {
		for _, h := range eg.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				ns, host = "*", h
			}
			switch ns {
			case ".":
				ns = chosen.Namespace
			}
			if host != "*" && !strings.HasPrefix(host, "*") && !strings.Contains(host, ".") {
				host = model.FQDN(host, chosen.Namespace)
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

func (s *scope) cacheKey() string {
	if s == nil {
		return ""
	}
	return s.key
}
