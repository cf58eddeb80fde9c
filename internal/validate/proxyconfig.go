package validate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1beta1 "istio.io/api/networking/v1beta1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// maxProxyEnvValue bounds an environment variable's value in a
// ProxyConfig, as Istio's CRD does.
const maxProxyEnvValue = 2048

// proxyConfigRules are the ProxyConfig fields Weft does not support; they
// join fieldRules.
func proxyConfigRules() []fieldRule {
	return []fieldRule{
		{kind: config.KindProxyConfig, path: "spec.image", severity: model.SeverityError,
			message: "image is not supported: Weft runs its weft-proxy binary, not a container image; remove it"},
	}
}

// checkProxyConfig checks a ProxyConfig: a concurrency of 0 or more,
// environment variables a process can have, one ProxyConfig without a
// selector per namespace and one with a selector per Workload (Istio's
// rules; which applies where is decided by model.ProxySettingsFor).
func (b *build) checkProxyConfig(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*networkingv1beta1.ProxyConfig)).(*networkingv1beta1.ProxyConfig)
	if c := spec.GetConcurrency(); c != nil && c.GetValue() < 0 {
		rep.errorf("spec.concurrency", "concurrency %d is negative; use 0 (every CPU), a number of threads, or leave it out for the proxy's default (2 for a sidecar)", c.GetValue())
	}
	env := spec.GetEnvironmentVariables()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v, f := env[k], "spec.environmentVariables."+k
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			rep.errorf("spec.environmentVariables", "%q is not an environment variable's name: a name is not empty and has no '=' or NUL", k)
		case strings.ContainsRune(v, 0):
			rep.errorf(f, "the value has a NUL byte, which no environment variable can hold")
		case len(v) > maxProxyEnvValue:
			rep.errorf(f, "the value is %d bytes; Istio's limit, which Weft keeps, is %d", len(v), maxProxyEnvValue)
		case strings.HasPrefix(k, "ISTIO_META_"):
			rep.warnf(f, "set in the proxy's environment, but Weft's proxy does not send ISTIO_META_ variables to the control plane as node metadata, so it changes nothing; remove it to silence this warning")
		}
	}
	wide := model.ProxyConfigNamespaceWide(spec)
	var selected []string // "ns/name" of the Workloads it selects
	if wide {
		if first := b.proxyConfigDefault[r.Namespace]; first != nil && first != r {
			rep.errorf("spec", "namespace %s already has a ProxyConfig without selector, %s; keep one", r.Namespace, where(first))
		}
	} else {
		selected = b.workloadsSelected(r.Namespace, spec.GetSelector().GetMatchLabels())
		for _, w := range selected {
			if first := b.proxyConfigSelects[w]; first != nil && first != r {
				rep.errorf("spec.selector", "it selects Workload %s, which %s selects too; a workload takes one ProxyConfig with a selector: merge the two, or narrow a selector", w, where(first))
				break
			}
		}
	}
	b.checkFields(r, rep)
	return func() {
		if wide {
			if b.proxyConfigDefault == nil {
				b.proxyConfigDefault = map[string]*config.Resource{}
			}
			if b.proxyConfigDefault[r.Namespace] == nil {
				b.proxyConfigDefault[r.Namespace] = r
			}
		}
		for _, w := range selected {
			if b.proxyConfigSelects == nil {
				b.proxyConfigSelects = map[string]*config.Resource{}
			}
			if b.proxyConfigSelects[w] == nil {
				b.proxyConfigSelects[w] = r
			}
		}
		b.snap.ProxyConfigs = append(b.snap.ProxyConfigs, &model.ProxyConfig{Meta: r.Meta, Spec: spec})
	}
}

// workloadsSelected lists, sorted, the Workloads in force in namespace
// whose instances' labels match selector.
func (b *build) workloadsSelected(namespace string, selector map[string]string) []string {
	var out []string
	for k, r := range b.inForce {
		if k.kind != config.KindWorkload || k.namespace != namespace {
			continue
		}
		if w, ok := r.Spec.(*config.Workload); ok && model.LabelsMatch(selector, w.InstanceLabels()) {
			out = append(out, fmt.Sprintf("%s/%s", k.namespace, k.name))
		}
	}
	slices.Sort(out)
	return out
}
