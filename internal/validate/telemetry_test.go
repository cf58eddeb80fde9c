package validate

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// TestAnalyzeTelemetry checks every Telemetry finding: providers other
// than the mesh's, sampling out of range, incomplete or unsupported
// custom tags, targetRefs, filters, ignored metrics, more
// than one entry, a second selector-less Telemetry in a namespace,
// unknown fields and apiVersions.
func TestAnalyzeTelemetry(t *testing.T) {
	var out bytes.Buffer
	rc := Analyze(&out, []string{"testdata/mesh.yaml", "testdata/telemetry.yaml"})
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		`testdata/telemetry.yaml:32: Telemetry default/reviews: spec.tracing[0].randomSamplingPercentage: randomSamplingPercentage 150 is out of range; use 0 to 100`,
		`testdata/telemetry.yaml:34: Telemetry default/reviews: spec.tracing[0].providers[0].name: unknown tracing provider "zipkin"; Weft's mesh has one, "otel" (OpenTelemetry over OTLP/gRPC to the collector set with --tracing-endpoint)`,
		`testdata/telemetry.yaml:37: Telemetry default/reviews: spec.tracing[0].customTags[user].header.name: header needs the name of the request header to read`,
		`testdata/telemetry.yaml:39: Telemetry default/reviews: spec.tracing[0].customTags[fmt].formatter: formatter custom tags are not supported by Weft yet; use literal, header or environment`,
		`testdata/telemetry.yaml:41: Telemetry default/reviews: spec.tracing[0].useRequestIdForTraceSampling: useRequestIdForTraceSampling is ignored: Weft samples on the trace context alone; remove it to silence this warning (warning)`,
		"testdata/telemetry.yaml:45: Telemetry default/reviews: spec.accessLogging[0].filter.expression: `connection.mtls`: not a condition on an attribute Weft can filter access logs on; those are response.code, request.duration, response.grpc_status, response.flags, request.headers['name'], request.method, request.path, request.url_path, request.host, request.scheme, request.id, request.useragent and request.referer",
		`testdata/telemetry.yaml:46: Telemetry default/reviews: spec.metrics: metrics overrides are ignored: Weft's sidecars always record Istio's standard metrics with the standard labels; remove it to silence this warning (warning)`,
		`testdata/telemetry.yaml:55: Telemetry default/by-ref: spec.targetRefs: targetRefs is not supported by Weft yet; select workloads with selector.matchLabels instead`,
		`testdata/telemetry.yaml:79: Telemetry default/ns-b: spec.unknownThing: unknown field "unknownThing"`,
		`testdata/telemetry.yaml:81: Telemetry default/bad-version: apiVersion: apiVersion "telemetry.istio.io/v2" is not one Weft reads for Telemetry; use telemetry.istio.io/v1, telemetry.istio.io/v1alpha1`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if rc != 1 {
		t.Errorf("exit code = %d, want 1", rc)
	}
}

// TestTelemetryInSnapshot checks that valid Telemetries reach the
// snapshot sorted, and that a second selector-less Telemetry in a
// namespace is refused.
func TestTelemetryInSnapshot(t *testing.T) {
	set, _ := config.Parse("t.yaml", []byte(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: b, namespace: shop}
spec:
  accessLogging: [{}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: a, namespace: shop}
spec:
  tracing: [{randomSamplingPercentage: 5}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 100}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: two, namespace: shop}
spec:
  selector: {matchLabels: {app: x}}
  tracing: [{}, {}]
`))
	snap := NewBuilder().Build(set, nil)
	var names []string
	for _, tm := range snap.Telemetries {
		names = append(names, tm.Namespace+"/"+tm.Name)
	}
	if diff := cmp.Diff([]string{"istio-system/mesh", "shop/b"}, names); diff != "" {
		t.Errorf("telemetries in force (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, f := range Findings(snap) {
		if f.Severity == model.SeverityError {
			msgs = append(msgs, f.String())
		}
	}
	want := []string{"t.yaml:12: Telemetry shop/a: spec: namespace shop already has a Telemetry without selector, Telemetry shop/b (t.yaml:2); keep one",
		"t.yaml:25: Telemetry shop/two: spec.tracing[1]: Weft supports one tracing entry per Telemetry, this one has 2; merge them"}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
