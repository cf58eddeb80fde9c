package model

import (
	networkingv1beta1 "istio.io/api/networking/v1beta1"
)

// ProxyConfig is a validated Istio ProxyConfig: how the proxy processes
// of the workloads it applies to run.
type ProxyConfig = Config[*networkingv1beta1.ProxyConfig]

// ProxySettings is how one proxy process runs, merged from the
// ProxyConfigs that apply to it. It takes effect when the proxy starts.
type ProxySettings struct {
	// Concurrency is the most threads the proxy runs on (weft-proxy
	// --concurrency): 0 means every CPU the process may use, -1 that no
	// ProxyConfig sets it (the proxy's default: 2 for a sidecar, every
	// CPU for a gateway).
	Concurrency int32
	// Env is added to the proxy's environment; nil when empty.
	Env map[string]string
	// From are the ProxyConfigs that apply, "namespace/name", from the
	// least specific (mesh-wide) to the most (the workload's own).
	From []string
}

// ProxySettingsFor merges the ProxyConfigs that apply to a proxy in
// namespace whose workload has labels, as Istio does: the root
// namespace's ProxyConfig without a selector (mesh-wide), then
// namespace's own without a selector, then the first (by name) in
// namespace whose selector matches labels. A later one's concurrency
// replaces an earlier one's; environment variables merge by name, the
// later one's value winning. Validation keeps one ProxyConfig without a
// selector per namespace and one selecting each Workload.
func (s *Snapshot) ProxySettingsFor(namespace string, labels map[string]string) ProxySettings {
	out := ProxySettings{Concurrency: -1}
	apply := func(pc *ProxyConfig) {
		if c := pc.Spec.GetConcurrency(); c != nil {
			out.Concurrency = c.GetValue()
		}
		for k, v := range pc.Spec.GetEnvironmentVariables() {
			if out.Env == nil {
				out.Env = map[string]string{}
			}
			out.Env[k] = v
		}
		out.From = append(out.From, pc.Namespace+"/"+pc.Name)
	}
	root := s.MeshTelemetry.Root()
	first := func(match func(*ProxyConfig) bool) *ProxyConfig {
		for _, pc := range s.ProxyConfigs { // sorted by namespace, then name
			if match(pc) {
				return pc
			}
		}
		return nil
	}
	if pc := first(func(pc *ProxyConfig) bool { return pc.Namespace == root && ProxyConfigNamespaceWide(pc.Spec) }); pc != nil {
		apply(pc)
	}
	if namespace != root {
		if pc := first(func(pc *ProxyConfig) bool { return pc.Namespace == namespace && ProxyConfigNamespaceWide(pc.Spec) }); pc != nil {
			apply(pc)
		}
	}
	if pc := first(func(pc *ProxyConfig) bool {
		return pc.Namespace == namespace && !ProxyConfigNamespaceWide(pc.Spec) && LabelsMatch(pc.Spec.GetSelector().GetMatchLabels(), labels)
	}); pc != nil {
		apply(pc)
	}
	return out
}

// ProxyConfigNamespaceWide reports whether spec applies to every workload
// of its namespace (or, in the root namespace, of the mesh): it has no
// selector labels.
func ProxyConfigNamespaceWide(spec *networkingv1beta1.ProxyConfig) bool {
	return len(spec.GetSelector().GetMatchLabels()) == 0
}
