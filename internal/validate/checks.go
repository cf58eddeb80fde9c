package validate

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

func (b *build) checkGateway(r *config.Resource, rep *reporter) func() {
	gw := r.Spec.(*networking.Gateway)
	if len(gw.GetServers()) == 0 {
		rep.errorf("spec.servers", "servers is required; add a server with a port and hosts")
	}
	for i, s := range gw.GetServers() {
		f := fmt.Sprintf("spec.servers[%d]", i)
		if s.GetPort() == nil {
			rep.errorf(f+".port", "port is required")
		} else {
			checkPortNumber(rep, f+".port.number", s.GetPort().GetNumber())
		}
		if len(s.GetHosts()) == 0 {
			rep.errorf(f+".hosts", "hosts is required; list the hostnames this server accepts (\"*\" for any)")
		}
		for j, h := range s.GetHosts() {
			host := h
			if ns, rest, ok := strings.Cut(h, "/"); ok {
				host = rest
				if ns != "*" && ns != "." && !isDNSLabel(ns) {
					rep.errorf(fmt.Sprintf("%s.hosts[%d]", f, j), "%q: %q is not a namespace; write host or namespace/host", h, ns)
					continue
				}
			}
			if !validHost(host) {
				rep.errorf(fmt.Sprintf("%s.hosts[%d]", f, j), "%q is not a valid host; use a DNS name, \"*\" or \"*.\" followed by a domain", h)
			}
		}
	}
	leftOut := checkGatewayServers(rep, gw.GetServers())
	others := make([]*config.Resource, 0, len(b.gateways))
	for _, o := range b.gateways {
		others = append(others, o)
	}
	sort.Slice(others, func(i, j int) bool {
		return others[i].Namespace+"/"+others[i].Name < others[j].Namespace+"/"+others[j].Name
	})
	checkGatewayConflicts(rep, r.Namespace, r.Name, gw, others)
	b.checkFields(r, rep)
	return func() {
		b.putGateway(r, gw, leftOut)
	}
}

func (b *build) checkDestinationRule(r *config.Resource, rep *reporter) func() {
	dr := proto.Clone(r.Spec.(*networking.DestinationRule)).(*networking.DestinationRule)
	host := model.FQDN(dr.GetHost(), r.Namespace)
	dr.Host = host
	switch {
	case host == "":
		rep.errorf("spec.host", "host is required; name the service this rule applies to")
	case !validHost(host):
		rep.errorf("spec.host", "%q is not a valid host", dr.GetHost())
	case b.drByHost[host] != nil:
		rep.errorf("spec.host", "%s already applies to host %s; merge the two into one DestinationRule", where(b.drByHost[host]), host)
	case !b.anyServiceMatches(host):
		rep.warnf("spec.host", "no service has host %s, so this rule applies to nothing; declare the service with a Workload or ServiceEntry, or fix the name", host)
	}
	var names []string
	seen := map[string]bool{}
	for i, s := range dr.GetSubsets() {
		f := fmt.Sprintf("spec.subsets[%d].name", i)
		switch {
		case s.GetName() == "":
			rep.errorf(f, "subset name is required")
		case seen[s.GetName()]:
			rep.errorf(f, "subset %q is defined twice; subset names must be unique", s.GetName())
		case !isDNSLabel(s.GetName()):
			rep.errorf(f, "%q is not a valid subset name; use lowercase letters, digits and '-'", s.GetName())
		}
		seen[s.GetName()] = true
		names = append(names, s.GetName())
	}
	var ports []uint32 // the service's, when it is known
	if svc := b.lookup(host); svc != nil {
		for _, p := range svc.Ports {
			ports = append(ports, p.Number)
		}
	}
	checkLocalityLbs(rep, dr, ports)
	checkTrafficPolicies(rep, dr)
	b.checkFields(r, rep)
	return func() {
		b.drByHost[host] = r
		b.subsets[host] = names
		b.snap.DestinationRules = append(b.snap.DestinationRules, &model.DestinationRule{Meta: r.Meta, Spec: dr})
	}
}

// gatewayKey resolves a VirtualService's gateway reference: "mesh",
// "ns/name", or "name" in the VirtualService's namespace.
func gatewayKey(ref, ns string) string {
	if ref == "mesh" || strings.Contains(ref, "/") {
		return ref
	}
	return ns + "/" + ref
}

func (b *build) checkVirtualService(r *config.Resource, rep *reporter) func() {
	vs := proto.Clone(r.Spec.(*networking.VirtualService)).(*networking.VirtualService)
	mesh := false
	var gwKeys []string
	for i, g := range vs.GetGateways() {
		k := gatewayKey(g, r.Namespace)
		if k == "mesh" {
			mesh = true
		} else if b.gateways[k] == nil {
			rep.errorf(fmt.Sprintf("spec.gateways[%d]", i), "Gateway %s does not exist; create it or fix the name (\"mesh\" means the sidecars)", k)
		}
		gwKeys = append(gwKeys, k)
	}
	if len(vs.GetGateways()) == 0 {
		mesh = true
		gwKeys = []string{"mesh"}
	}
	var claims []string
	for i, h := range vs.GetHosts() {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		if !validHost(h) {
			rep.errorf(f, "%q is not a valid host", h)
			continue
		}
		fq := model.FQDN(h, r.Namespace)
		for _, o := range vs.Hosts[:i] {
			if o != fq && strings.EqualFold(o, fq) {
				rep.errorf(f, "host %s is already in hosts as %s: host names do not depend on case; list each host once", fq, o)
			}
		}
		vs.Hosts[i] = fq
		if mesh && !strings.HasPrefix(fq, "*") && b.lookup(fq) == nil {
			rep.warnf(f, "no service has host %s, so the sidecars never route it; declare it with a Workload or ServiceEntry, or fix the name", fq)
		}
		for _, g := range gwKeys {
			// Host names are DNS names, which do not depend on case: the
			// sidecar (as Envoy) refuses a route configuration where two
			// virtual hosts have the same domain in any case.
			c := strings.ToLower(fq) + "|" + g
			if first := b.vsClaims[c]; first != nil && first != r {
				rep.errorf(f, "host %s on gateway %s is already routed by %s%s; merge the two VirtualServices into one", fq, g, where(first), spelledAs(first, fq))
				break
			}
			claims = append(claims, c)
		}
	}
	catchAll := -1
	var merged []*networking.HTTPRoute
	delegates := false
	for i, h := range vs.GetHttp() {
		f := fmt.Sprintf("spec.http[%d]", i)
		b.checkHTTPRoute(rep, f, r.Namespace, h)
		all := false
		if d := h.GetDelegate(); d != nil {
			delegates = true
			routes := b.delegateRoutes(rep, f, r.Namespace, h)
			merged = append(merged, routes...)
			// A delegate route left with no match catches everything.
			all = slices.ContainsFunc(routes, func(m *networking.HTTPRoute) bool { return matchesAll(m.GetMatch()) })
		} else {
			merged = append(merged, h)
			all = matchesAll(h.GetMatch())
		}
		if catchAll >= 0 {
			rep.warnf(f, "this route can never match: http[%d] above it matches every request; move it above http[%d] or remove it", catchAll, catchAll)
		} else if all {
			catchAll = i
		}
	}
	vs.Http = merged
	for i, t := range vs.GetTcp() {
		b.checkRoutes(rep, fmt.Sprintf("spec.tcp[%d].route", i), r.Namespace, tcpDests(t.GetRoute()))
	}
	for i, t := range vs.GetTls() {
		if len(t.GetMatch()) == 0 {
			rep.errorf(fmt.Sprintf("spec.tls[%d].match", i), "a tls route needs a match with sniHosts: the TLS server names it routes")
		}
		for j, m := range t.GetMatch() {
			if len(m.GetSniHosts()) == 0 {
				rep.errorf(fmt.Sprintf("spec.tls[%d].match[%d].sniHosts", i, j), "sniHosts is required: the TLS server names this match routes")
			}
		}
		b.checkRoutes(rep, fmt.Sprintf("spec.tls[%d].route", i), r.Namespace, tcpDests(t.GetRoute()))
	}
	b.checkFields(r, rep)
	return func() {
		for _, c := range claims {
			if b.vsClaims[c] == nil {
				b.vsClaims[c] = r
			}
		}
		b.snap.VirtualServices = append(b.snap.VirtualServices, &model.VirtualService{Meta: r.Meta, Spec: vs})
		if delegates {
			// A root's last good version is its merged routes, as in the
			// snapshot the one-shot Build starts from: a version that
			// names its delegates would fail again with them when one is
			// deleted or stops being a delegate, and nothing would route
			// the root's hosts. (While the root is broken, its delegates'
			// later changes do not reach it.)
			b.inForce[keyOf(r.Meta)] = &config.Resource{Meta: r.Meta, Spec: vs}
		}
	}
}

// spelledAs says how first, a VirtualService, spells host when it is
// not host's spelling: " (as Shop.example.com)".
func spelledAs(first *config.Resource, host string) string {
	vs, ok := first.Spec.(*networking.VirtualService)
	if !ok {
		return ""
	}
	as := ""
	for _, h := range vs.GetHosts() {
		switch fq := model.FQDN(h, first.Namespace); {
		case fq == host:
			return ""
		case strings.EqualFold(fq, host):
			as = " (as " + fq + ")"
		}
	}
	return as
}

type weighted struct {
	dest   *networking.Destination
	weight int32
}

func httpDests(rs []*networking.HTTPRouteDestination) []weighted {
	out := make([]weighted, len(rs))
	for i, r := range rs {
		out[i] = weighted{r.GetDestination(), r.GetWeight()}
	}
	return out
}

func tcpDests(rs []*networking.RouteDestination) []weighted {
	out := make([]weighted, len(rs))
	for i, r := range rs {
		out[i] = weighted{r.GetDestination(), r.GetWeight()}
	}
	return out
}

// checkRoutes checks the destinations of one route list and its weights.
func (b *build) checkRoutes(rep *reporter, field, ns string, ds []weighted) {
	total := int64(0) // weights are int32: their sum must not wrap
	for j, d := range ds {
		f := fmt.Sprintf("%s[%d]", field, j)
		if d.weight < 0 {
			rep.errorf(f+".weight", "weight %d is negative", d.weight)
		}
		total += int64(d.weight)
		b.checkDestination(rep, f+".destination", ns, d.dest)
	}
	switch {
	case len(ds) == 1 && ds[0].weight != 0 && ds[0].weight != 100:
		rep.errorf(field+"[0].weight", "weight is %d but a single destination takes all traffic; set it to 100 or remove it", ds[0].weight)
	case len(ds) > 1 && total != 100:
		rep.errorf(field, "weights add up to %d, not 100; adjust them so they total 100", total)
	}
}

// checkDestination checks one destination and resolves its host in place
// (d belongs to the VirtualService's clone).
func (b *build) checkDestination(rep *reporter, field, ns string, d *networking.Destination) {
	if d == nil {
		rep.errorf(field, "destination is required")
		return
	}
	if d.GetHost() == "" {
		rep.errorf(field+".host", "host is required; name the service to send traffic to")
		return
	}
	host := model.FQDN(d.GetHost(), ns)
	d.Host = host
	svc := b.lookup(host)
	if svc == nil {
		if strings.HasSuffix(host, "."+model.DomainSuffix) {
			rep.errorf(field+".host", "no Workload or ServiceEntry serves host %s; fix the name or declare the service", host)
		} else {
			rep.errorf(field+".host", "host %s is not in the registry; declare it with a ServiceEntry to reach it", host)
		}
		return
	}
	if n := d.GetPort().GetNumber(); n != 0 {
		if _, ok := svc.Port(n); !ok {
			rep.errorf(field+".port.number", "service %s has no port %d; its ports are %s", svc.Hostname, n, portList(svc))
		}
	}
	if s := d.GetSubset(); s != "" {
		dr := b.drByHost[svc.Hostname]
		switch {
		case dr == nil:
			rep.errorf(field+".subset", "subset %q is not defined: no DestinationRule has host %s; add one with a subset named %q", s, svc.Hostname, s)
		case !contains(b.subsets[svc.Hostname], s):
			defined := "none"
			if names := b.subsets[svc.Hostname]; len(names) > 0 {
				sorted := append([]string(nil), names...)
				sort.Strings(sorted)
				defined = strings.Join(sorted, ", ")
			}
			rep.errorf(field+".subset", "subset %q is not defined in %s; its subsets are: %s", s, where(dr), defined)
		}
	}
}

// matchesAll reports whether an HTTP route's match list lets every request
// through: no match at all, or one match with no condition (or only a
// "/" prefix, which every path has).
func matchesAll(ms []*networking.HTTPMatchRequest) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		c := proto.Clone(m).(*networking.HTTPMatchRequest)
		c.Name = ""
		c.StatPrefix = ""
		if p := c.GetUri().GetPrefix(); p == "/" && !c.GetIgnoreUriCase() {
			c.Uri = nil
		}
		c.IgnoreUriCase = false
		if proto.Size(c) == 0 {
			return true
		}
	}
	return false
}

func (b *build) checkSidecar(r *config.Resource, rep *reporter) func() {
	sc := proto.Clone(r.Spec.(*networking.Sidecar)).(*networking.Sidecar)
	for i, e := range sc.GetEgress() {
		if len(e.GetHosts()) == 0 {
			rep.errorf(fmt.Sprintf("spec.egress[%d].hosts", i), "hosts is required; list namespace/host entries (\"./*\" for this namespace)")
		}
		for j, h := range e.GetHosts() {
			f := fmt.Sprintf("spec.egress[%d].hosts[%d]", i, j)
			ns, host, ok := strings.Cut(h, "/")
			switch {
			case !ok:
				rep.errorf(f, "%q is not namespace/host; write \"./%s\" for this namespace or \"*/%s\" for any", h, h, h)
				continue
			case ns != "*" && ns != "." && ns != "~" && !isDNSLabel(ns):
				rep.errorf(f, "%q: %q is not a namespace; use a namespace name, \".\" (this one), \"*\" (any) or \"~\" (none)", h, ns)
				continue
			case !validHost(host) || strings.Contains(host, "/"):
				rep.errorf(f, "%q: %q is not a valid host; use a DNS name, \"*\" or \"*.\" followed by a domain", h, host)
				continue
			}
			if ns == "." && !strings.Contains(host, ".") && !strings.HasPrefix(host, "*") {
				// A short name in "./": qualified with the namespace "."
				// means for each proxy (the proxy's own, for a root
				// namespace Sidecar), when it is applied.
				continue
			}
			rel := r.Namespace
			if ns != "." && ns != "*" && ns != "~" {
				rel = ns
			}
			e.Hosts[j] = ns + "/" + model.FQDN(host, rel)
		}
	}
	if sc.GetWorkloadSelector() == nil {
		if first := b.sidecarDefault[r.Namespace]; first != nil && first != r {
			rep.errorf("spec", "namespace %s already has a Sidecar without workloadSelector, %s; keep one", r.Namespace, where(first))
		}
	}
	b.checkFields(r, rep)
	return func() {
		if sc.GetWorkloadSelector() == nil && b.sidecarDefault[r.Namespace] == nil {
			b.sidecarDefault[r.Namespace] = r
		}
		b.snap.Sidecars = append(b.snap.Sidecars, &model.Sidecar{Meta: r.Meta, Spec: sc})
	}
}
