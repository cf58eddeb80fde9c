package model

import (
	networkingv1beta1 "istio.io/api/networking/v1beta1"
)

// ProxyConfig is a validated Istio ProxyConfig: how the proxy processes
// of the workloads it applies to run.
type ProxyConfig = Config[*networkingv1beta1.ProxyConfig]

// IngressGatewayNamespace and IngressGatewayLabels are the namespace and
// the labels of the ingress gateway proxy `weft up` runs, by which
// Gateways, ProxyConfigs and policies select it (the labels are those of
// Istio's default ingress gateway, which runs in istio-system).
const IngressGatewayNamespace = DefaultNamespace

// IngressGatewayLabels: see IngressGatewayNamespace. Readers must not
// change the map.
var IngressGatewayLabels = map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}

// ProxySettings is how one proxy process runs, merged from the
// ProxyConfigs that apply to it. It takes effect when the proxy starts.
// The zero value is the proxy's defaults.
type ProxySettings struct {
	// Concurrency is the most threads the proxy runs on (weft-proxy
	// --concurrency), 0 meaning every CPU the process may use; nil when
	// no ProxyConfig sets it (the proxy's default: 2 for a sidecar, every
	// CPU for a gateway).
	Concurrency *int32
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
// namespace whose selector's labels match. A later one's concurrency
// replaces an earlier one's; environment variables merge by name, the
// later one's value winning, except that a GOMAXPROCS from a less
// specific ProxyConfig goes when a more specific one sets concurrency
// (the proxy lets GOMAXPROCS win over --concurrency). Validation keeps one
// ProxyConfig without a selector per namespace and one selecting each
// workload.
func (s *Snapshot) ProxySettingsFor(namespace string, labels map[string]string) ProxySettings {
	var out ProxySettings
	apply := func(pc *ProxyConfig) {
		env := pc.Spec.GetEnvironmentVariables()
		if c := pc.Spec.GetConcurrency(); c != nil {
			v := c.GetValue()
			out.Concurrency = &v
			if _, own := env["GOMAXPROCS"]; !own {
				delete(out.Env, "GOMAXPROCS")
			}
		}
		for k, v := range env {
			if out.Env == nil {
				out.Env = map[string]string{}
			}
			out.Env[k] = v
		}
		if len(out.Env) == 0 {
			out.Env = nil
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
	if pc := first(func(pc *ProxyConfig) bool { return pc.Namespace == namespace && ProxyConfigSelects(pc.Spec, labels) }); pc != nil {
		apply(pc)
	}
	return out
}

// ProxyConfigNamespaceWide reports whether spec applies to every workload
// of its namespace (or, in the root namespace, of the mesh): it has no
// selector. As in Istio, an empty selector is not the same: it selects
// no workload.
func ProxyConfigNamespaceWide(spec *networkingv1beta1.ProxyConfig) bool {
	return spec.GetSelector() == nil
}

// ProxyConfigSelects reports whether spec's selector selects a workload
// of its namespace with labels: it has selector labels, all of which
// labels has.
func ProxyConfigSelects(spec *networkingv1beta1.ProxyConfig, labels map[string]string) bool {
	sel := spec.GetSelector().GetMatchLabels()
	return len(sel) > 0 && LabelsMatch(sel, labels)
}
