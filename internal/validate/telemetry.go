package validate

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/logfilter"
	"weft.dev/weft/internal/model"
)

// telemetryRules are the Telemetry fields Weft does not support; they
// join fieldRules. Metrics overrides are accepted with a warning and
// ignored: the sidecars always record Istio's standard metrics, and a
// Telemetry exported from an Istio cluster often carries them.
func telemetryRules() []fieldRule {
	return []fieldRule{
		{kind: config.KindTelemetry, path: "spec.targetRef", severity: model.SeverityError,
			message: "targetRef is not supported by Weft yet; select workloads with selector.matchLabels instead"},
		{kind: config.KindTelemetry, path: "spec.targetRefs", severity: model.SeverityError,
			message: "targetRefs is not supported by Weft yet; select workloads with selector.matchLabels instead"},
		{kind: config.KindTelemetry, path: "spec.metrics", severity: model.SeverityWarning,
			message: "metrics overrides are ignored: Weft's sidecars always record Istio's standard metrics with the standard labels; remove it to silence this warning"},
		{kind: config.KindTelemetry, path: "spec.tracing[].useRequestIdForTraceSampling", severity: model.SeverityWarning,
			message: "useRequestIdForTraceSampling is ignored: Weft samples on the trace context alone; remove it to silence this warning"},
		{kind: config.KindTelemetry, path: "spec.tracing[].enableIstioTags", severity: model.SeverityWarning,
			message: "enableIstioTags is ignored: Weft's spans always carry its standard attributes; remove it to silence this warning"},
		{kind: config.KindTelemetry, path: "spec.tracing[].disableContextPropagation", severity: model.SeverityError,
			message: "disableContextPropagation is not supported by Weft yet; remove it"},
	}
}

// checkTelemetry checks a Telemetry: at most one tracing and one access
// logging entry, only the mesh's providers (model.TracingProviderName,
// model.AccessLogProviderName), a sampling percentage in [0, 100],
// complete custom tags, and one selector-less Telemetry per namespace.
// Precedence between Telemetries is decided by xdstranslate.
func (b *build) checkTelemetry(r *config.Resource, rep *reporter) func() {
	spec := proto.Clone(r.Spec.(*telemetry.Telemetry)).(*telemetry.Telemetry)
	if n := len(spec.GetTracing()); n > 1 {
		rep.errorf("spec.tracing[1]", "Weft supports one tracing entry per Telemetry, this one has %d; merge them", n)
	}
	for i, t := range spec.GetTracing() {
		at := fmt.Sprintf("spec.tracing[%d]", i)
		for j, p := range t.GetProviders() {
			if p.GetName() != model.TracingProviderName {
				rep.errorf(fmt.Sprintf("%s.providers[%d].name", at, j), "unknown tracing provider %q; Weft's mesh has one, %q (OpenTelemetry over OTLP/gRPC to the collector set with --tracing-endpoint)", p.GetName(), model.TracingProviderName)
			}
		}
		if s := t.GetRandomSamplingPercentage(); s != nil && (s.GetValue() < 0 || s.GetValue() > 100) {
			rep.errorf(at+".randomSamplingPercentage", "randomSamplingPercentage %v is out of range; use 0 to 100", s.GetValue())
		}
		for _, name := range sortedTagNames(t.GetCustomTags()) {
			tag := t.GetCustomTags()[name]
			f := fmt.Sprintf("%s.customTags[%s]", at, name)
			switch {
			case name == "":
				rep.errorf(f, "a custom tag needs a name")
			case tag.GetLiteral() != nil:
			case tag.GetEnvironment() != nil:
				if tag.GetEnvironment().GetName() == "" {
					rep.errorf(f+".environment.name", "environment needs the name of the variable to read")
				}
			case tag.GetHeader() != nil:
				if tag.GetHeader().GetName() == "" {
					rep.errorf(f+".header.name", "header needs the name of the request header to read")
				}
			case tag.GetFormatter() != nil:
				rep.errorf(f+".formatter", "formatter custom tags are not supported by Weft yet; use literal, header or environment")
			default:
				rep.errorf(f, "custom tag %q has no value; set literal, header or environment", name)
			}
		}
	}
	if n := len(spec.GetAccessLogging()); n > 1 {
		rep.errorf("spec.accessLogging[1]", "Weft supports one accessLogging entry per Telemetry, this one has %d; merge them", n)
	}
	for i, a := range spec.GetAccessLogging() {
		for j, p := range a.GetProviders() {
			if p.GetName() != model.AccessLogProviderName {
				rep.errorf(fmt.Sprintf("spec.accessLogging[%d].providers[%d].name", i, j), "unknown access log provider %q; Weft's mesh has one, %q (JSON lines on the proxy's stdout)", p.GetName(), model.AccessLogProviderName)
			}
		}
		if f := a.GetFilter(); f != nil {
			if _, err := logfilter.Compile(f.GetExpression()); err != nil {
				rep.errorf(fmt.Sprintf("spec.accessLogging[%d].filter.expression", i), "%v", err)
			}
		}
	}
	namespaceWide := len(spec.GetSelector().GetMatchLabels()) == 0 && spec.GetTargetRef() == nil && len(spec.GetTargetRefs()) == 0
	if namespaceWide {
		if first := b.telemetryDefault[r.Namespace]; first != nil && first != r {
			rep.errorf("spec", "namespace %s already has a Telemetry without selector, %s; keep one", r.Namespace, where(first))
		}
	}
	b.checkFields(r, rep)
	return func() {
		if namespaceWide {
			if b.telemetryDefault == nil {
				b.telemetryDefault = map[string]*config.Resource{}
			}
			if b.telemetryDefault[r.Namespace] == nil {
				b.telemetryDefault[r.Namespace] = r
			}
		}
		b.snap.Telemetries = append(b.snap.Telemetries, &model.Telemetry{Meta: r.Meta, Spec: spec})
	}
}

func sortedTagNames(m map[string]*telemetry.Tracing_CustomTag) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
