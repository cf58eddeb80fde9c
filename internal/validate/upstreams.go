package validate

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// declareHosts indexes, before any check runs, the hosts and ports that the
// Workloads and ServiceEntries read declare. A Workload's upstreams are
// checked against this index rather than the registry being built, so an
// upstream may name a service declared later in file order, or by a
// Workload that names this one back. A service whose declaring resource is
// itself rejected still counts here: that resource's own findings say why,
// and translation leaves out an upstream whose service is not in force.
func (b *build) declareHosts() {
	add := func(host string, r *config.Resource, ports []model.Port, res model.Resolution) {
		svc := b.declared[host]
		if svc == nil {
			svc = &model.Service{Hostname: host, Namespace: r.Namespace, Resolution: res, Source: r.Key()}
			b.declared[host] = svc
		}
		for _, p := range ports {
			if _, ok := svc.Port(p.Number); !ok {
				svc.Ports = append(svc.Ports, p)
			}
		}
	}
	for _, r := range b.set.Resources {
		if r.Invalid {
			continue
		}
		switch spec := r.Spec.(type) {
		case *config.Workload:
			var ports []model.Port
			for _, p := range spec.Ports {
				ports = append(ports, model.Port{Name: p.Name, Number: p.Number})
			}
			if len(ports) > 0 {
				add(model.FQDN(spec.Service, r.Namespace), r, ports, model.ResolutionStatic)
			}
		case *networking.ServiceEntry:
			var ports []model.Port
			for _, p := range spec.GetPorts() {
				ports = append(ports, model.Port{Name: p.GetName(), Number: p.GetNumber()})
			}
			res := model.ResolutionStatic
			if spec.GetResolution() == networking.ServiceEntry_NONE {
				res = model.ResolutionNone
			}
			for _, h := range spec.GetHosts() {
				if !strings.HasPrefix(h, "*") {
					add(model.FQDN(h, r.Namespace), r, ports, res)
				}
			}
		}
	}
	for _, svc := range b.declared {
		sort.Slice(svc.Ports, func(i, j int) bool { return svc.Ports[i].Number < svc.Ports[j].Number })
	}
}

// checkUpstreams checks a Workload's spec.upstreams: each names a declared
// service (exact host, not a wildcard) and one of its ports, once, with a
// usable environment variable name.
func (b *build) checkUpstreams(w *config.Workload, ns string, rep *reporter) {
	if len(w.Upstreams) > 0 && !w.Sidecar {
		rep.warnf("spec.upstreams", "upstreams are served by the sidecar, and this Workload has sidecar: false, so they are ignored; remove them or enable the sidecar")
	}
	seen := map[string]int{}
	envs := map[string]int{}
	for i, u := range w.Upstreams {
		f := fmt.Sprintf("spec.upstreams[%d]", i)
		if u.Env != "" && !envNameRE.MatchString(u.Env) {
			rep.errorf(f+".env", "%q is not a valid environment variable name; use letters, digits and '_', not starting with a digit", u.Env)
		} else if j, ok := envs[u.Env]; ok {
			rep.errorf(f+".env", "%s is also set by spec.upstreams[%d]; give each upstream its own variable", u.Env, j)
		} else {
			envs[u.Env] = i
		}
		switch {
		case u.Service == "":
			rep.errorf(f+".service", "service is required; name the mesh service to reach (for example \"reviews\")")
			continue
		case strings.HasPrefix(u.Service, "*") || !validHost(u.Service):
			rep.errorf(f+".service", "%q is not a service host; use a short name, name.namespace or a fully qualified name", u.Service)
			continue
		}
		host := model.FQDN(u.Service, ns)
		svc := b.declared[host]
		if svc == nil {
			rep.errorf(f+".service", "no Workload or ServiceEntry serves host %s; fix the name or declare the service", host)
			continue
		}
		if svc.Resolution == model.ResolutionNone {
			rep.errorf(f+".service", "service %s has resolution NONE (%s): the sidecar would forward to the address the app dialed, its own local port; use resolution DNS or STATIC to reach it through a local port", host, svc.Source)
			continue
		}
		switch _, ok := svc.Port(u.Port); {
		case u.Port == 0:
			rep.errorf(f+".port", "port is required; give the service port to reach: %s", portList(svc))
			continue
		case !ok:
			rep.errorf(f+".port", "service %s has no port %d; its ports are %s", host, u.Port, portList(svc))
			continue
		}
		key := fmt.Sprintf("%s:%d", host, u.Port)
		if j, ok := seen[key]; ok {
			rep.errorf(f, "%s is already listed as spec.upstreams[%d]; list each service port once", key, j)
			continue
		}
		seen[key] = i
	}
}

// checkMetrics checks a Workload's spec.metrics: it names one of the
// Workload's ports, the path is absolute, and there is a sidecar to merge
// the metrics.
func checkMetrics(w *config.Workload, rep *reporter) {
	m := w.Metrics
	if m == nil {
		return
	}
	if !w.Sidecar {
		rep.warnf("spec.metrics", "app metrics are merged by the sidecar, and this Workload has sidecar: false, so they are not; scrape the app directly or enable the sidecar")
	}
	found := false
	var names []string
	for _, p := range w.Ports {
		names = append(names, p.Name)
		found = found || p.Name == m.Port
	}
	if !found {
		rep.errorf("spec.metrics.port", "no port named %q; the Workload's ports are: %s", m.Port, strings.Join(names, ", "))
	}
	if !strings.HasPrefix(m.Path, "/") {
		rep.errorf("spec.metrics.path", "%q must start with /", m.Path)
	}
}
