package controlplane

import (
	"iter"
	"sort"
	"strings"

	"weft.dev/weft/internal/model"
)

// findInstances is how the control plane's tools (tap, authz check) read
// a target: the instances whose service, workload or instance name is
// target ("reviews", "reviews-v1", "reviews-v1-0"), or only those whose
// service is, when servicesOnly is set. "name.namespace", optionally
// followed by ".svc.cluster.local" or more, keeps to that namespace. They
// come sorted by namespace and name.
func findInstances(instances iter.Seq[*model.Instance], target string, servicesOnly bool) []*model.Instance {
	name, ns := target, ""
	if n, rest, ok := strings.Cut(target, "."); ok {
		name = n
		ns, _, _ = strings.Cut(rest, ".")
	}
	var out []*model.Instance
	for in := range instances {
		if ns != "" && in.Namespace != ns {
			continue
		}
		if in.Service == name || !servicesOnly && (in.Workload == name || in.Name == name) {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
