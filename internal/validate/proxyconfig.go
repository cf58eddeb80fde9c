package validate

import (
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1beta1 "istio.io/api/networking/v1beta1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// maxProxyEnvValue bounds an environment variable's value in a
// ProxyConfig, as Istio's CRD does.
const maxProxyEnvValue = 2048

// ingressGateway is the key under which the ingress gateway of `weft up`
// takes part in the one-ProxyConfig-per-workload check.
var ingressGateway = model.IngressGatewayNamespace + "/ingress gateway"

// proxyConfigRules are the ProxyConfig fields Weft does not support; they
// join fieldRules.
func proxyConfigRules() []fieldRule {
	return []fieldRule{
		{kind: config.KindProxyConfig, path: "spec.image", severity: model.SeverityWarning,
			message: "image is ignored: Weft runs its weft-proxy binary, not a container image; remove it to silence this warning"},
	}
}

// checkProxyConfig checks a ProxyConfig: a concurrency of 0 or more,
// environment variables a process can have (and, for the Go runtime's
// own, values it reads), at most one ProxyConfig without a selector per
// namespace and one with a selector per workload (Istio takes the oldest
// of several; Weft, which has no creation times, keeps the one in force,
// else the first read, and refuses the others, so that which applies is
// never a surprise). Which apply where is decided by
// model.ProxySettingsFor.
func (b *build) checkProxyConfig(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*networkingv1beta1.ProxyConfig)).(*networkingv1beta1.ProxyConfig)
	if c := spec.GetConcurrency(); c != nil && c.GetValue() < 0 {
		rep.errorf("spec.concurrency", "concurrency %d is negative; use 0 (every CPU), a number of threads, or leave it out for the proxy's default (2 for a sidecar)", c.GetValue())
	}
	env := spec.GetEnvironmentVariables()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		checkProxyEnv(rep, k, env[k])
	}
	if _, ok := env["GOMAXPROCS"]; ok && spec.GetConcurrency() != nil {
		rep.warnf("spec.concurrency", "GOMAXPROCS in environmentVariables wins over concurrency in the proxy, so concurrency changes nothing; keep one")
	}
	wide := model.ProxyConfigNamespaceWide(spec)
	var selected []string // the workloads it selects, "ns/name"
	switch {
	case wide:
		if first := b.proxyConfigDefault[r.Namespace]; first != nil && first != r {
			rep.errorf("spec", "namespace %s already has a ProxyConfig without selector, %s; keep one", r.Namespace, where(first))
		}
	case len(spec.GetSelector().GetMatchLabels()) == 0:
		rep.warnf("spec.selector", "an empty selector selects no workload; remove selector to apply it to every workload of namespace %s", r.Namespace)
	default:
		selected = b.workloadsSelected(r.Namespace, spec)
		if len(selected) == 0 {
			rep.warnf("spec.selector", "it selects no Workload of namespace %s, nor the ingress gateway (namespace %s, labels %s); it applies to nothing yet", r.Namespace, model.IngressGatewayNamespace, labelList(model.IngressGatewayLabels))
		}
		for _, w := range selected {
			if first := b.proxyConfigSelects[w]; first != nil && first != r {
				rep.errorf("spec.selector", "it selects %s, which %s selects too; a workload takes one ProxyConfig with a selector: merge the two, or narrow a selector", workloadWord(w), where(first))
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

// goMemLimitRE is what the Go runtime reads as GOMEMLIMIT (a byte count
// with an optional unit); it stops a process at start on anything else.
var goMemLimitRE = regexp.MustCompile(`^\+?([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// checkProxyEnv checks one environment variable of a ProxyConfig.
func checkProxyEnv(rep *reporter, k, v string) {
	f := "spec.environmentVariables." + k
	switch {
	case k == "" || strings.ContainsAny(k, "=\x00"):
		rep.errorf("spec.environmentVariables", "%q is not an environment variable's name: a name is not empty and has no '=' or NUL", k)
	case strings.ContainsRune(v, 0):
		rep.errorf(f, "the value has a NUL byte, which no environment variable can hold")
	case len(v) > maxProxyEnvValue:
		rep.errorf(f, "the value is %d bytes; Istio's limit, which Weft keeps, is %d", len(v), maxProxyEnvValue)
	case k == "GOMEMLIMIT" && v != "off" && v != "" && !validMemLimit(v):
		rep.errorf(f, "%q is not a memory limit the Go runtime reads, and the proxy would not start; use bytes with an optional unit (B, KiB, MiB, GiB, TiB), such as 64MiB, or off", v)
	case k == "GOGC" && v != "off" && !validInt32(v):
		rep.errorf(f, "%q is not a GOGC the Go runtime reads (it would use 100); use a percentage, such as 200, or off", v)
	case k == "GOMAXPROCS" && !positiveInt(v):
		rep.errorf(f, "%q is not a GOMAXPROCS the Go runtime reads (it would ignore it); use a number of threads, 1 or more, or set concurrency instead", v)
	case strings.HasPrefix(k, "ISTIO_META_"):
		rep.warnf(f, "set in the proxy's environment, but Weft's proxy does not send ISTIO_META_ variables to the control plane as node metadata, so it changes nothing; remove it to silence this warning")
	case strings.HasPrefix(k, "ISTIO_") || strings.HasPrefix(k, "PILOT_"):
		rep.warnf(f, "set in the proxy's environment, but Weft's proxy does not read Istio's agent variables, so it changes nothing; remove it to silence this warning")
	}
}

func validMemLimit(v string) bool {
	m := goMemLimitRE.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	n, err := strconv.ParseUint(m[1], 10, 63)
	if err != nil {
		return false
	}
	unit := map[string]uint64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	return n <= math.MaxInt64/unit
}

func validInt32(v string) bool {
	_, err := strconv.ParseInt(v, 10, 32)
	return err == nil
}

func positiveInt(v string) bool {
	n, err := strconv.ParseInt(v, 10, 32)
	return err == nil && n > 0
}

// workloadsSelected lists, sorted, the Workloads in force in spec's
// namespace whose instances' labels its selector matches ("ns/name"), and
// the ingress gateway (ingressGateway) if it matches that.
func (b *build) workloadsSelected(namespace string, spec *networkingv1beta1.ProxyConfig) []string {
	var out []string
	for k, r := range b.inForce {
		if k.kind != config.KindWorkload || k.namespace != namespace {
			continue
		}
		if w, ok := r.Spec.(*config.Workload); ok && model.ProxyConfigSelects(spec, w.InstanceLabels()) {
			out = append(out, k.namespace+"/"+k.name)
		}
	}
	if namespace == model.IngressGatewayNamespace && model.ProxyConfigSelects(spec, model.IngressGatewayLabels) {
		out = append(out, ingressGateway)
	}
	slices.Sort(out)
	return out
}

// workloadWord names what workloadsSelected listed.
func workloadWord(w string) string {
	if w == ingressGateway {
		return "the ingress gateway"
	}
	return "Workload " + w
}

// labelList writes labels as "k: v, k: v", sorted.
func labelList(labels map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, k+": "+labels[k])
	}
	return strings.Join(out, ", ")
}
