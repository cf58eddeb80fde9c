package validate

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

var sprintf = fmt.Sprintf

var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// hostRE accepts DNS names with an optional "*." prefix.
	hostRE    = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*\.?$`)
	portRefRE = regexp.MustCompile(`\$\{PORT(_[A-Za-z0-9_]+)?\}`)
)

func isDNSLabel(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

func validHost(h string) bool { return h == "*" || (len(h) <= 253 && hostRE.MatchString(h)) }

// where names a resource and its position for messages about a conflict:
// `VirtualService default/reviews (vs.yaml:3)`.
func where(r *config.Resource) string {
	if r.File == "" {
		return r.Key()
	}
	return fmt.Sprintf("%s (%s:%d)", r.Key(), r.File, r.Line)
}

// checkPortProtocol reports an explicit protocol Weft does not know.
func checkPortProtocol(rep *reporter, field, protocol string) {
	if protocol == "" {
		return
	}
	if model.ProtocolFromPort(protocol, "", "") == model.ProtocolTCP && !strings.EqualFold(protocol, "TCP") {
		rep.errorf(field, "unknown protocol %q; use HTTP, HTTP2, GRPC, TCP, TLS or HTTPS", protocol)
	}
}

func checkPortNumber(rep *reporter, field string, n uint32) {
	if n == 0 || n > 65535 {
		rep.errorf(field, "port %d is out of range; use 1-65535", n)
	}
}

func (b *build) checkWorkloadEntry(r *config.Resource, rep *reporter) func() {
	we := r.Spec.(*networking.WorkloadEntry)
	if we.GetAddress() == "" {
		rep.errorf("spec.address", "address is required; set the IP address or hostname of the workload")
	}
	for _, name := range slices.Sorted(maps.Keys(we.GetPorts())) {
		checkPortNumber(rep, "spec.ports["+name+"]", we.GetPorts()[name])
	}
	b.checkFields(r, rep)
	return func() { b.workloadEntries = append(b.workloadEntries, r) }
}

// checkRegistry checks a Workload or a ServiceEntry.
func (b *build) checkRegistry(r *config.Resource, rep *reporter) func() {
	if r.Kind == config.KindWorkload {
		return b.checkWorkload(r, rep)
	}
	return b.checkServiceEntry(r, rep)
}

func (b *build) checkWorkload(r *config.Resource, rep *reporter) func() {
	w := r.Spec.(*config.Workload)
	if !isDNSLabel(w.Service) {
		rep.errorf("spec.service", "%q is not a valid service name; use lowercase letters, digits and '-'", w.Service)
	}
	if w.Replicas < 0 {
		rep.errorf("spec.replicas", "replicas is %d; use 0 or more", w.Replicas)
	}
	checkLocality(rep, "spec.locality", w.Locality)
	names := map[string]bool{}
	numbers := map[uint32]bool{}
	var ports []model.Port
	for i, p := range w.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		switch {
		case p.Name == "":
			rep.errorf(f+".name", "port name is required; name it (for example \"http\")")
		case names[p.Name]:
			rep.errorf(f+".name", "port name %q is used twice; port names must be unique", p.Name)
		}
		names[p.Name] = true
		checkPortNumber(rep, f+".number", p.Number)
		if numbers[p.Number] && p.Number != 0 {
			rep.errorf(f+".number", "port %d is listed twice", p.Number)
		}
		numbers[p.Number] = true
		checkPortProtocol(rep, f+".protocol", p.Protocol)
		ports = append(ports, model.Port{Name: p.Name, Number: p.Number, Protocol: model.ProtocolFromPort(p.Protocol, p.AppProtocol, p.Name)})
	}
	checkRefs := func(field, s string) {
		for _, m := range portRefRE.FindAllStringSubmatch(s, -1) {
			if m[1] == "" {
				if len(w.Ports) == 0 {
					rep.errorf(field, "${PORT} is used but the Workload has no ports; add one or remove ${PORT}")
				}
				continue
			}
			found := false
			for _, p := range w.Ports {
				if "_"+config.PortEnvName(p.Name) == m[1] {
					found = true
				}
			}
			if !found {
				rep.errorf(field, "%s names no port of this Workload; use ${PORT_<NAME>} with one of its port names, upper-cased", m[0])
			}
		}
	}
	for i, c := range w.Command {
		checkRefs(fmt.Sprintf("spec.command[%d]", i), c)
	}
	for _, k := range slices.Sorted(maps.Keys(w.Env)) {
		checkRefs("spec.env["+k+"]", w.Env[k])
	}
	b.checkUpstreams(w, r.Namespace, rep)
	checkMetrics(w, rep)

	host := model.FQDN(w.Service, r.Namespace)
	existing := b.snap.Services[host]
	if owner := b.ownerOf(host); owner != nil && len(ports) > 0 {
		if owner.Kind != config.KindWorkload {
			rep.errorf("spec.service", "host %s is already declared by %s; a service comes from Workloads or a ServiceEntry, not both", host, where(owner))
		} else if existing != nil {
			for i, p := range ports {
				if ep, ok := existing.Port(p.Number); ok && (ep.Name != p.Name || ep.Protocol != p.Protocol) {
					rep.errorf(fmt.Sprintf("spec.ports[%d]", i), "port %d is %q (%s) in %s; give it the same name and protocol in every Workload of service %s",
						p.Number, ep.Name, ep.Protocol, where(owner), w.Service)
				}
			}
		}
	}
	return func() {
		if len(ports) == 0 {
			return // a client-only workload serves no service
		}
		svc := b.snap.Services[host]
		if svc == nil {
			svc = &model.Service{Hostname: host, Namespace: r.Namespace, Resolution: model.ResolutionStatic, Source: r.Key()}
			b.snap.Services[host] = svc
			b.own(host, r)
		}
		for _, p := range ports {
			if _, ok := svc.Port(p.Number); !ok {
				svc.Ports = append(svc.Ports, p)
			}
		}
		for _, inst := range b.instances {
			if inst == nil || inst.Namespace != r.Namespace || inst.Workload != r.Name {
				continue
			}
			ep := instanceEndpoint(inst, ports)
			ep.Sidecar = w.Sidecar
			ep.Locality = w.Locality
			if !w.Sidecar {
				for _, ip := range inst.Ports {
					ep.Ports[ip.Name] = ip.AppPort
				}
			}
			svc.Endpoints = append(svc.Endpoints, ep)
		}
	}
}

// instanceEndpoint is the endpoint of a runtime instance for a service with
// the given ports: each service port maps to the sidecar's inbound port of
// the instance port with the same name (or, failing that, number).
func instanceEndpoint(inst *model.Instance, ports []model.Port) *model.Endpoint {
	ep := &model.Endpoint{
		Address:        inst.Address,
		Ports:          map[string]uint32{},
		Labels:         inst.Labels,
		ServiceAccount: inst.ServiceAccount,
		Namespace:      inst.Namespace,
		Workload:       inst.Workload,
		Sidecar:        true,
	}
	for _, p := range ports {
		for _, ip := range inst.Ports {
			if ip.Name == p.Name || (ip.Number == p.Number && ep.Ports[p.Name] == 0) {
				ep.Ports[p.Name] = ip.InboundPort
			}
		}
	}
	return ep
}

func (b *build) checkServiceEntry(r *config.Resource, rep *reporter) func() {
	se := r.Spec.(*networking.ServiceEntry)
	if len(se.GetHosts()) == 0 {
		rep.errorf("spec.hosts", "hosts is required; list the hostnames this ServiceEntry declares")
	}
	for i, san := range se.GetSubjectAltNames() {
		if san == "" || strings.ContainsAny(san, " \t") {
			rep.errorf(fmt.Sprintf("spec.subjectAltNames[%d]", i), "%q is not an identity; write a SPIFFE ID (spiffe://cluster.local/ns/NS/sa/SA) or a DNS name the endpoints' certificates carry", san)
		}
	}
	var hosts []string
	for i, h := range se.GetHosts() {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case h == "*" || !validHost(h):
			rep.errorf(f, "%q is not a valid host; use a DNS name, optionally starting with \"*.\"", h)
			continue
		}
		fq := model.FQDN(h, r.Namespace)
		if owner := b.ownerOf(fq); owner != nil && owner != r {
			rep.errorf(f, "host %s is already declared by %s; declare each host once", fq, where(owner))
		}
		for _, o := range hosts {
			if o != fq && strings.EqualFold(o, fq) {
				rep.errorf(f, "host %s is already in hosts as %s: host names do not depend on case; declare each host once", fq, o)
			}
		}
		hosts = append(hosts, fq)
	}
	for i, a := range se.GetAddresses() {
		if _, _, err := net.ParseCIDR(a); err != nil && net.ParseIP(a) == nil {
			rep.errorf(fmt.Sprintf("spec.addresses[%d]", i), "%q is not an IP address or CIDR", a)
		}
	}
	var ports []model.Port
	names := map[string]bool{}
	numbers := map[uint32]bool{}
	targets := map[string]uint32{}
	for i, p := range se.GetPorts() {
		f := fmt.Sprintf("spec.ports[%d]", i)
		checkPortNumber(rep, f+".number", p.GetNumber())
		if numbers[p.GetNumber()] {
			rep.errorf(f+".number", "port %d is listed twice", p.GetNumber())
		}
		numbers[p.GetNumber()] = true
		if p.GetName() == "" {
			rep.errorf(f+".name", "port name is required; name it (for example \"https\")")
		} else if names[p.GetName()] {
			rep.errorf(f+".name", "port name %q is used twice; port names must be unique", p.GetName())
		}
		names[p.GetName()] = true
		checkPortProtocol(rep, f+".protocol", p.GetProtocol())
		ports = append(ports, model.Port{Name: p.GetName(), Number: p.GetNumber(), Protocol: model.ProtocolFromPort(p.GetProtocol(), "", p.GetName())})
		if p.GetTargetPort() > 65535 {
			rep.errorf(f+".targetPort", "targetPort %d is out of range; use 1-65535, or leave it out to use the port number", p.GetTargetPort())
		}
		if p.GetTargetPort() != 0 {
			targets[p.GetName()] = p.GetTargetPort()
		}
	}
	var res model.Resolution
	switch se.GetResolution() {
	case networking.ServiceEntry_STATIC:
		res = model.ResolutionStatic
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		res = model.ResolutionDNS
	case networking.ServiceEntry_NONE:
		res = model.ResolutionNone
	default:
		rep.errorf("spec.resolution", "resolution %s is not supported; use STATIC, DNS, DNS_ROUND_ROBIN or NONE", se.GetResolution())
	}
	if len(se.GetEndpoints()) > 0 && se.GetWorkloadSelector() != nil {
		rep.errorf("spec.workloadSelector", "set endpoints or workloadSelector, not both")
	}
	for i, ep := range se.GetEndpoints() {
		f := fmt.Sprintf("spec.endpoints[%d]", i)
		switch {
		case ep.GetAddress() == "":
			rep.errorf(f+".address", "address is required")
		case res == model.ResolutionStatic && net.ParseIP(ep.GetAddress()) == nil && !strings.HasPrefix(ep.GetAddress(), "unix://"):
			rep.errorf(f+".address", "%q is not an IP address; with resolution STATIC endpoints are IPs (use resolution DNS for hostnames)", ep.GetAddress())
		}
		for _, name := range slices.Sorted(maps.Keys(ep.GetPorts())) {
			if !names[name] {
				rep.errorf(f+".ports["+name+"]", "port %q is not a port of this ServiceEntry", name)
			}
			checkPortNumber(rep, f+".ports["+name+"]", ep.GetPorts()[name])
		}
	}
	if res == model.ResolutionStatic && len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil && len(se.GetAddresses()) == 0 {
		rep.warnf("spec.resolution", "resolution STATIC with no endpoints and no workloadSelector: the service has no endpoints; add endpoints or use resolution DNS")
	}
	b.checkFields(r, rep)
	return func() {
		var eps []*model.Endpoint
		for _, we := range se.GetEndpoints() {
			eps = append(eps, entryEndpoint(we, r.Namespace, "", targets))
		}
		if sel := se.GetWorkloadSelector().GetLabels(); se.GetWorkloadSelector() != nil {
			for _, wr := range b.workloadEntries {
				we := wr.Spec.(*networking.WorkloadEntry)
				if wr.Namespace == r.Namespace && model.LabelsMatch(sel, we.GetLabels()) {
					eps = append(eps, entryEndpoint(we, wr.Namespace, wr.Name, targets))
				}
			}
			for _, inst := range b.instances {
				if inst != nil && inst.Namespace == r.Namespace && model.LabelsMatch(sel, inst.Labels) {
					eps = append(eps, instanceEndpoint(inst, ports))
				}
			}
		}
		for _, h := range hosts {
			b.own(h, r)
			svc := &model.Service{
				Hostname:        h,
				Namespace:       r.Namespace,
				Addresses:       append([]string(nil), se.GetAddresses()...),
				Ports:           append([]model.Port(nil), ports...),
				Resolution:      res,
				MeshExternal:    se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
				Source:          r.Key(),
				SubjectAltNames: append([]string(nil), se.GetSubjectAltNames()...),
			}
			for _, ep := range eps {
				c := *ep
				svc.Endpoints = append(svc.Endpoints, &c)
			}
			b.snap.Services[h] = svc
		}
	}
}

// own records r as the declarer of registry host h. Host names are DNS
// names, which do not depend on case, and the sidecar (as Envoy) refuses
// a route configuration with one domain in two virtual hosts, whatever
// their case: so hostOwner also holds h lower-cased, for ownerOf to find
// h under any spelling.
func (b *build) own(h string, r *config.Resource) {
	b.hostOwner[h] = r
	if lc := strings.ToLower(h); lc != h && b.hostOwner[lc] == nil {
		b.hostOwner[lc] = r
	}
}

// ownerOf returns the resource that declares host h, in any case, or nil.
func (b *build) ownerOf(h string) *config.Resource {
	if owner := b.hostOwner[h]; owner != nil {
		return owner
	}
	return b.hostOwner[strings.ToLower(h)]
}

// entryEndpoint is the endpoint of a WorkloadEntry (inline in a
// ServiceEntry, or selected by one); its ports default to the service
// ports' targetPort.
func entryEndpoint(we *networking.WorkloadEntry, ns, name string, targets map[string]uint32) *model.Endpoint {
	ports := map[string]uint32{}
	for k, v := range targets {
		ports[k] = v
	}
	for k, v := range we.GetPorts() {
		ports[k] = v
	}
	labels := map[string]string{}
	for k, v := range we.GetLabels() {
		labels[k] = v
	}
	return &model.Endpoint{
		Address:        we.GetAddress(),
		Ports:          ports,
		Labels:         labels,
		ServiceAccount: we.GetServiceAccount(),
		Namespace:      ns,
		Workload:       name,
		Weight:         we.GetWeight(),
		Locality:       we.GetLocality(),
		Network:        we.GetNetwork(),
	}
}

// finishRegistry sorts every service's ports and endpoints.
func (b *build) finishRegistry() {
	for _, svc := range b.snap.Services {
		sort.Slice(svc.Ports, func(i, j int) bool { return svc.Ports[i].Number < svc.Ports[j].Number })
		first := model.Port{}
		if len(svc.Ports) > 0 {
			first = svc.Ports[0]
		}
		sort.SliceStable(svc.Endpoints, func(i, j int) bool {
			a, c := svc.Endpoints[i], svc.Endpoints[j]
			if a.Address != c.Address {
				return a.Address < c.Address
			}
			if pa, pc := a.TargetPort(first), c.TargetPort(first); pa != pc {
				return pa < pc
			}
			return a.Workload < c.Workload
		})
	}
}

// lookup finds the service for a fully qualified host: an exact name, or a
// ServiceEntry's wildcard host ("*.example.com") covering it.
func (b *build) lookup(host string) *model.Service {
	if svc := b.snap.Services[host]; svc != nil {
		return svc
	}
	var best *model.Service
	for name, svc := range b.snap.Services {
		if strings.HasPrefix(name, "*.") && strings.HasSuffix(host, name[1:]) {
			if best == nil || len(name) > len(best.Hostname) {
				best = svc
			}
		}
	}
	return best
}

// anyServiceMatches reports whether a host pattern (possibly "*.x" or "*")
// names a service in the registry.
func (b *build) anyServiceMatches(pattern string) bool {
	if b.lookup(pattern) != nil {
		return true
	}
	if pattern == "*" {
		return len(b.snap.Services) > 0
	}
	if strings.HasPrefix(pattern, "*.") {
		for name := range b.snap.Services {
			if strings.HasSuffix(name, pattern[1:]) {
				return true
			}
		}
	}
	return false
}

func portList(svc *model.Service) string {
	var parts []string
	for _, p := range svc.Ports {
		parts = append(parts, fmt.Sprintf("%d (%s)", p.Number, p.Name))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
