package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

func findingStrings(fs []model.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

func metas(s *Set) []model.Meta {
	var out []model.Meta
	for _, r := range s.Resources {
		out = append(out, r.Meta)
	}
	return out
}

func TestLoadFindings(t *testing.T) {
	tests := []struct {
		name string
		path string
		want []string
	}{
		{
			name: "valid multi-document file",
			path: "testdata/multi.yaml",
		},
		{
			name: "folder, recursive, skipping hidden and non-YAML files",
			path: "testdata/folder",
		},
		{
			name: "bad YAML in one document keeps the others",
			path: "testdata/badyaml.yaml",
			want: []string{"testdata/badyaml.yaml:9: invalid YAML: did not find expected ',' or '}'"},
		},
		{
			name: "schema errors",
			path: "testdata/errors.yaml",
			want: []string{
				`testdata/errors.yaml:8: VirtualService default/reviews: spec.http[0].rout: unknown field "rout"; did you mean "route"?`,
				`testdata/errors.yaml:11: VirtualService default/reviews: spec.http[0].retries.perTryTimout: unknown field "perTryTimout"; did you mean "perTryTimeout"?`,
				`testdata/errors.yaml:18: ServiceEntry default/ext: spec.resolution: unknown value "DNZ"; use one of NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS`,
				`testdata/errors.yaml:22: WasmPlugin istio-system/strict: kind: kind WasmPlugin (extensions.istio.io/v1alpha1) is not supported by Weft yet; remove it or keep it out of Weft's config folder`,
				`testdata/errors.yaml:28: Widget default/w: kind: unknown kind "Widget" (apiVersion "example.com/v1"); Weft reads AuthorizationPolicy, DestinationRule, Gateway, PeerAuthentication, ProxyConfig, RequestAuthentication, ServiceEntry, Sidecar, Telemetry, VirtualService, WorkloadEntry (Istio's) and Workload (weft.dev/v1alpha1)`,
				`testdata/errors.yaml:32: Sidecar default/default: apiVersion: apiVersion "networking.istio.io/v2" is not one Weft reads for Sidecar; use networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3`,
				`testdata/errors.yaml:42: Workload default/reviews-v1: spec.replica: unknown field "replica"; did you mean "replicas"?`,
				`testdata/errors.yaml:44: Workload default/reviews-v1: spec.ports[0].protocl: unknown field "protocl"; did you mean "protocol"?`,
				"testdata/errors.yaml:50: Workload default/ratings: spec.ports[0].number: cannot unmarshal !!str `ninety` into uint32",
				"testdata/errors.yaml:51: Workload default/ratings: spec.sidecar: cannot unmarshal !!str `maybe` into bool",
				`testdata/errors.yaml:56: VirtualService default/reviews: metadata.name: VirtualService default/reviews is defined twice (first at testdata/errors.yaml:1); rename or remove one`,
				`testdata/errors.yaml:63: metadata.name: DestinationRule has no metadata.name; every resource needs a name`,
				`testdata/errors.yaml:63: metadata.nme: unknown field "nme"`,
				`testdata/errors.yaml:67: DestinationRule default/y: apiVersion: apiVersion is missing; use networking.istio.io/v1`,
				`testdata/errors.yaml:80: DestinationRule default/z: spec.subsets: expected a list, got a mapping`,
				`testdata/errors.yaml:82: kind: missing kind; set kind (for example VirtualService) and apiVersion`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := Load(tc.path)
			if diff := cmp.Diff(tc.want, findingStrings(fs)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadResources(t *testing.T) {
	set, fs := Load("testdata/multi.yaml", "testdata/folder")
	if len(fs) != 0 {
		t.Fatalf("unexpected findings: %v", findingStrings(fs))
	}
	want := []model.Meta{
		{Kind: KindVirtualService, Namespace: "shop", Name: "reviews", File: "testdata/multi.yaml", Line: 2},
		{Kind: KindWorkload, Namespace: "shop", Name: "reviews-v2", File: "testdata/multi.yaml", Line: 20},
		{Kind: KindGateway, Namespace: "default", Name: "gw", File: filepath.Join("testdata/folder", "a.yaml"), Line: 1},
		{Kind: KindServiceEntry, Namespace: "default", Name: "ext", File: filepath.Join("testdata/folder", "nested", "b.yml"), Line: 1},
	}
	if diff := cmp.Diff(want, metas(set)); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}

	vs := set.Get(KindVirtualService, "shop", "reviews")
	wantVS := &networking.VirtualService{
		Hosts: []string{"reviews"},
		Http: []*networking.HTTPRoute{{
			Name: "canary",
			Route: []*networking.HTTPRouteDestination{{
				Destination: &networking.Destination{Host: "reviews", Subset: "v2"},
				Weight:      100,
			}},
			Timeout: durationpb.New(2 * time.Second),
		}},
	}
	if diff := cmp.Diff(wantVS, vs.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("VirtualService spec (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app": "reviews"}, vs.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}

	wantW := &Workload{
		Service:  "reviews",
		Labels:   map[string]string{"version": "v2"},
		Ports:    []WorkloadPort{{Name: "http", Number: 9080, AppProtocol: "http"}},
		Replicas: 1,
		Command:  []string{"reviews", "--port", "${PORT}"},
		Env:      map[string]string{"MODE": "fast"},
		Sidecar:  true,
	}
	if diff := cmp.Diff(wantW, set.Get(KindWorkload, "shop", "reviews-v2").Spec); diff != "" {
		t.Errorf("Workload spec (-want +got):\n%s", diff)
	}
}

func TestLineOf(t *testing.T) {
	set, _ := Load("testdata/multi.yaml")
	vs := set.Get(KindVirtualService, "shop", "reviews")
	tests := []struct {
		name  string
		field string
		want  int
	}{
		{name: "metadata", field: "metadata.name", want: 5},
		{name: "list element", field: "spec.http[0]", want: 11},
		{name: "nested field", field: "spec.http[0].route[0].destination.subset", want: 15},
		{name: "map key", field: "metadata.labels[app]", want: 7},
		{name: "unwritten field falls back to parent", field: "spec.http[0].route[0].destination.port.number", want: 13},
		{name: "unknown path falls back to resource", field: "nothing", want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := vs.LineOf(tc.field); got != tc.want {
				t.Errorf("LineOf(%q) = %d, want %d", tc.field, got, tc.want)
			}
		})
	}
}

func TestWorkloadDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *Workload
	}{
		{
			name: "defaults",
			yaml: "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: ratings}\nspec: {}\n",
			want: &Workload{Service: "ratings", Replicas: 1, Sidecar: true},
		},
		{
			name: "explicit zero replicas and no sidecar",
			yaml: "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: db}\nspec: {service: mongo, replicas: 0, sidecar: false, workingDir: /srv}\n",
			want: &Workload{Service: "mongo", Replicas: 0, Sidecar: false, WorkingDir: "/srv"},
		},
		{
			name: "upstreams with default and explicit env",
			yaml: "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec:\n  upstreams:\n  - {service: reviews, port: 9080}\n  - {service: ratings.shop-1, port: 9080, env: RATINGS_ADDR}\n",
			want: &Workload{Service: "web", Replicas: 1, Sidecar: true, Upstreams: []WorkloadUpstream{
				{Service: "reviews", Port: 9080, Env: "REVIEWS_9080_ADDR"},
				{Service: "ratings.shop-1", Port: 9080, Env: "RATINGS_ADDR"},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, fs := Parse("w.yaml", []byte(tc.yaml))
			if len(fs) != 0 {
				t.Fatalf("findings: %v", findingStrings(fs))
			}
			if diff := cmp.Diff(tc.want, set.Resources[0].Spec); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "empty file", yaml: ""},
		{name: "only comments and markers", yaml: "# c\n---\n---\n...\n"},
		{name: "not a mapping", yaml: "- a\n- b\n", want: []string{"f.yaml:1: a document must be a mapping with apiVersion, kind, metadata and spec"}},
		{
			name: "content after the marker",
			yaml: "--- {apiVersion: networking.istio.io/v1, kind: Gateway, metadata: {name: g}, spec: {servers: [], bogus: 1}}\n",
			want: []string{`f.yaml:1: Gateway default/g: spec.bogus: unknown field "bogus"`},
		},
		{
			name: "type error placed on its field",
			yaml: "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [a.example.com]\n  ports:\n  - number: 99999999999\n",
			want: []string{`f.yaml:7: ServiceEntry default/s: spec.ports[0].number: invalid value for uint32 field number: 99999999999`},
		},
		{
			name: "invalid names",
			yaml: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: Bad_Name, namespace: Also.Bad}\nspec: {}\n",
			want: []string{
				`f.yaml:3: Gateway Also.Bad/Bad_Name: metadata.name: "Bad_Name" is not a valid name; use lowercase letters, digits, '-' and '.'`,
				`f.yaml:3: Gateway Also.Bad/Bad_Name: metadata.namespace: "Also.Bad" is not a valid namespace; use lowercase letters, digits and '-'`,
			},
		},
		{
			name: "unknown upstream field",
			yaml: "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec:\n  upstreams:\n  - service: reviews\n    prot: 9080\n",
			want: []string{`f.yaml:7: Workload default/web: spec.upstreams[0].prot: unknown field "prot"; did you mean "port"?`},
		},
		{
			name: "cluster metadata and status are accepted",
			yaml: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, uid: x, resourceVersion: \"1\"}\nspec: {}\nstatus: {conditions: []}\n",
		},
		{
			name: "aliases are followed",
			yaml: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n  egress:\n  - hosts: &h [\"./*\"]\n  - hosts: *h\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := Parse("f.yaml", []byte(tc.yaml))
			if diff := cmp.Diff(tc.want, findingStrings(fs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	for _, p := range []string{"testdata/multi.yaml", "testdata/errors.yaml", "testdata/badyaml.yaml", "testdata/folder/a.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, fs := Parse("fuzz.yaml", data)
		for _, r := range set.Resources {
			_ = r.LineOf("spec.http[0].route")
			if r.Invalid != (r.Spec == nil) {
				t.Errorf("%s: Invalid=%v but Spec=%v", r.Key(), r.Invalid, r.Spec)
			}
		}
		for _, x := range fs {
			if x.Severity != model.SeverityError && x.Severity != model.SeverityWarning {
				t.Errorf("bad severity in %v", x)
			}
		}
	})
}

func TestUpstreamEnvName(t *testing.T) {
	tests := []struct {
		service string
		port    uint32
		want    string
	}{
		{"reviews", 9080, "REVIEWS_9080_ADDR"},
		{"ratings.shop", 9080, "RATINGS_SHOP_9080_ADDR"},
		{"my-db.data.svc.cluster.local", 5432, "MY_DB_DATA_SVC_CLUSTER_LOCAL_5432_ADDR"},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			if got := UpstreamEnvName(tc.service, tc.port); got != tc.want {
				t.Errorf("UpstreamEnvName(%q, %d) = %q, want %q", tc.service, tc.port, got, tc.want)
			}
		})
	}
}

// TestDurations: durations are read as Istio's documentation writes them
// ("5m", "1h30m", "250ms") and in protobuf's JSON form ("30s", "0.5s");
// anything else is an error on its field.
func TestDurations(t *testing.T) {
	doc := func(d string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    outlierDetection:\n      baseEjectionTime: " + d + "\n"
	}
	for in, want := range map[string]time.Duration{
		"5m": 5 * time.Minute, "1h30m": 90 * time.Minute, "250ms": 250 * time.Millisecond, "1m30s": 90 * time.Second,
		"30s": 30 * time.Second, "0.5s": 500 * time.Millisecond, `"15m"`: 15 * time.Minute,
	} {
		set, fs := Parse("f.yaml", []byte(doc(in)))
		if len(fs) > 0 {
			t.Errorf("%s: %v", in, findingStrings(fs))
			continue
		}
		got := set.Get(KindDestinationRule, "default", "r").Spec.(*networking.DestinationRule).GetTrafficPolicy().GetOutlierDetection().GetBaseEjectionTime().AsDuration()
		if got != want {
			t.Errorf("%s read as %v; want %v", in, got, want)
		}
	}
	_, fs := Parse("f.yaml", []byte(doc("5 minutes")))
	if got := findingStrings(fs); len(got) != 1 || !strings.Contains(got[0], `f.yaml:8: DestinationRule default/r: spec.trafficPolicy.outlierDetection.baseEjectionTime: `) || !strings.Contains(got[0], `"5m"`) {
		t.Errorf("a bad duration: %v; want one error on its field suggesting a form", got)
	}
}

// A YAML syntax error is reported on the line that has it.
func TestInvalidYAMLLine(t *testing.T) {
	doc := "apiVersion: networking.istio.io/v1\n" + // 1
		"kind: Gateway\n" + // 2
		"metadata: {name: broken\n" + // 3: the flow mapping is never closed
		"spec: {}\n" // 4
	_, fs := Parse("gw.yaml", []byte(doc))
	if len(fs) != 1 {
		t.Fatalf("findings = %v", fs)
	}
	if got := fs[0].String(); !strings.HasPrefix(got, "gw.yaml:3:") {
		t.Errorf("finding = %q; want it on gw.yaml:3, the line with the unclosed '{' (line 2 is \"kind: Gateway\")", got)
	}
}

// TestInvalidYAMLLines: every kind of YAML error is reported on the
// 1-based line of the text at fault, in the first document of a file and
// after others, whether yaml.v3 raised it in its scanner (1-based lines),
// its parser (0-based lines, of the enclosing construct), its reader (no
// line) or while building nodes (no line).
func TestInvalidYAMLLines(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		msg  string
	}{
		{name: "unclosed flow mapping", yaml: "a: 1\nb: {c: 2\nd: 3\n", line: 2, msg: "did not find expected ',' or '}'"},
		{name: "unclosed flow mapping on the first line", yaml: "a: {b: 1\nc: 2\n", line: 1, msg: "did not find expected ',' or '}'"},
		{name: "missing comma in a flow mapping", yaml: "a: 1\nb: {c: 1 d: 2}\n", line: 2, msg: "did not find expected ',' or '}'"},
		{name: "unclosed flow sequence", yaml: "a: 1\nb: [c, 2\nd: 3\n", line: 2, msg: "did not find expected ',' or ']'"},
		// The sequence goes on over lines 2 and 3; line 3 is the first
		// that ends it without ',' or ']'.
		{name: "unclosed multi-line flow sequence", yaml: "a: [1,\n  2,\n  3\nb: 2\n", line: 3, msg: "did not find expected ',' or ']'"},
		{name: "extra closing bracket", yaml: "a: 1\nb: [1, 2]]\n", line: 2, msg: "did not find expected key"},
		{name: "closing brace without value", yaml: "a: 1\nb: }\n", line: 2, msg: "did not find expected node content"},
		{name: "unclosed double quote", yaml: "a: 1\nb: \"unclosed\nc: 2\n", line: 2, msg: "found unexpected end of stream"},
		{name: "unclosed double quote on the first line", yaml: "a: \"unclosed\nb: 1\nc: 2\n", line: 1, msg: "found unexpected end of stream"},
		{name: "unclosed quote after a closed multi-line one", yaml: "a: \"x\n  y\"\nb: \"unclosed\nc: 2\n", line: 3, msg: "found unexpected end of stream"},
		{name: "unclosed single quote", yaml: "a: 1\nb: 'unclosed\nc: 2\n", line: 2, msg: "found unexpected end of stream"},
		{name: "unclosed quote at the end without newline", yaml: "a: 1\nb: \"x", line: 2, msg: "found unexpected end of stream"},
		{name: "text after a quoted value", yaml: "a: 1\nb: \"x\" y\n", line: 2, msg: "did not find expected key"},
		{name: "bad escape", yaml: "a: 1\nb: \"\\q\"\n", line: 2, msg: "found unknown escape character"},
		{name: "tab indenting a key", yaml: "a: 1\n\tb: 2\n", line: 2, msg: "found a tab character that violates indentation"},
		{name: "tab indenting a key after a plain value", yaml: "a: 1\nb: 2\nc: x\n\td: 2\n", line: 4, msg: "found a tab character that violates indentation"},
		{name: "tab indenting a nested key", yaml: "a: 1\nb:\n\tc: 2\n", line: 3, msg: "found character that cannot start any token"},
		{name: "key indented less than its siblings", yaml: "a: 1\nb:\n  c: 3\n d: 4\n", line: 4, msg: "did not find expected key"},
		{name: "deep key indented less than its siblings", yaml: "s:\n  h: r\n  t:\n    tls:\n      mode: SIMPLE\n     sni: x\n", line: 6, msg: "did not find expected key"},
		{name: "key indented more than its siblings", yaml: "a: 1\nb: 2\n  c: 3\n", line: 3, msg: "mapping values are not allowed in this context"},
		{name: "two colons on a line", yaml: "a: 1\nb: c: d\n", line: 2, msg: "mapping values are not allowed in this context"},
		{name: "list item in a mapping", yaml: "a: 1\n- b\n", line: 2, msg: "did not find expected key"},
		{name: "key in a list", yaml: "- a\nb: 1\n", line: 2, msg: "did not find expected '-' indicator"},
		{name: "key in a nested list", yaml: "x:\n  a: 1\n  b:\n    - x\n    y: 2\n", line: 5, msg: "did not find expected '-' indicator"},
		{name: "key without colon", yaml: "a: 1\nb: 2\nc\nd: 3\n", line: 3, msg: "could not find expected ':'"},
		{name: "reserved character", yaml: "a: 1\nb: @x\n", line: 2, msg: "found character that cannot start any token"},
		{name: "empty anchor", yaml: "a: 1\nb: &\n", line: 2, msg: "did not find expected alphabetic or numeric character"},
		{name: "unknown anchor", yaml: "a: 1\nb: *nope\n", line: 2, msg: "unknown anchor 'nope' referenced"},
		{name: "undefined tag handle", yaml: "a: 1\nb: !x!y 1\n", line: 2, msg: "found undefined tag handle"},
		{name: "unclosed verbatim tag", yaml: "a: 1\nb: !<tag 1\n", line: 2, msg: "did not find the expected '>'"},
		{name: "zero block scalar indentation", yaml: "a: 1\nb: |0\n  x\n", line: 2, msg: "found an indentation indicator equal to 0"},
		{name: "control character", yaml: "a: 1\nb: 2\n\x01\n", line: 3, msg: "control characters are not allowed"},
		{name: "invalid UTF-8", yaml: "a: 1\nb: \xff\n", line: 2, msg: "invalid leading UTF-8 octet"},
		{name: "byte order mark", yaml: "\xef\xbb\xbfa: 1\nb: {\n", line: 2, msg: "did not find expected node content"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := Parse("f.yaml", []byte(tc.yaml))
			want := []string{fmt.Sprintf("f.yaml:%d: invalid YAML: %s", tc.line, tc.msg)}
			if diff := cmp.Diff(want, findingStrings(fs)); diff != "" {
				t.Errorf("first document (-want +got):\n%s", diff)
			}
			if strings.HasPrefix(tc.yaml, "\xef\xbb\xbf") {
				return // a byte order mark starts a stream
			}
			const before = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {}\n---\n"
			_, fs = Parse("f.yaml", []byte(before+tc.yaml))
			want = []string{fmt.Sprintf("f.yaml:%d: invalid YAML: %s", tc.line+5, tc.msg)}
			if diff := cmp.Diff(want, findingStrings(fs)); diff != "" {
				t.Errorf("second document (-want +got):\n%s", diff)
			}
		})
	}
}

// An enum written as a number that names no value of the enum is refused
// (protojson would keep an unknown number of an open enum).
func TestUnknownEnumNumber(t *testing.T) {
	for name, doc := range map[string]string{
		"PeerAuthentication mtls.mode":        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: 7}\n",
		"DestinationRule loadBalancer.simple": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy: {loadBalancer: {simple: 42}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			set, fs := Parse("x.yaml", []byte(doc))
			if len(fs) == 0 {
				t.Errorf("no finding; the resource was read as %v (invalid=%v); want an unknown value error on line 5 or 6", set.Resources[0].Spec, set.Resources[0].Invalid)
			}
		})
	}
}

// TestEnumNumbers: an enum may be written as the number of one of its
// values, as Istio reads it; any other number is an error on its field
// listing the names.
func TestEnumNumbers(t *testing.T) {
	dr := func(simple string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer: {simple: " + simple + "}\n"
	}
	const lbNames = "UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST"
	tests := []struct {
		name string
		yaml string
		want []string
		// simple is the value read when there is no finding.
		simple networking.LoadBalancerSettings_SimpleLB
	}{
		{name: "name", yaml: dr("RANDOM"), simple: networking.LoadBalancerSettings_RANDOM},
		{name: "known number", yaml: dr("2"), simple: networking.LoadBalancerSettings_RANDOM},
		{name: "known number in hex", yaml: dr("0x4"), simple: networking.LoadBalancerSettings_ROUND_ROBIN},
		{name: "zero", yaml: dr("0"), simple: networking.LoadBalancerSettings_UNSPECIFIED},
		{name: "unknown number", yaml: dr("42"), want: []string{"f.yaml:7: DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: unknown value 42; use one of " + lbNames}},
		{name: "negative number", yaml: dr("-1"), want: []string{"f.yaml:7: DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: unknown value -1; use one of " + lbNames}},
		{name: "number beyond int32", yaml: dr("4294967298"), want: []string{"f.yaml:7: DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: unknown value 4294967298; use one of " + lbNames}},
		{name: "quoted number is a name", yaml: dr(`"2"`), want: []string{`f.yaml:7: DestinationRule default/r: spec.trafficPolicy.loadBalancer.simple: unknown value "2"; use one of ` + lbNames}},
		{
			name: "unknown number in a map value",
			yaml: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: 3}\n  portLevelMtls:\n    8080: {mode: 7}\n",
			want: []string{"f.yaml:7: PeerAuthentication default/default: spec.portLevelMtls[8080].mode: unknown value 7; use one of UNSET, DISABLE, PERMISSIVE, STRICT"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, fs := Parse("f.yaml", []byte(tc.yaml))
			if diff := cmp.Diff(tc.want, findingStrings(fs)); diff != "" {
				t.Fatalf("findings (-want +got):\n%s", diff)
			}
			r := set.Resources[0]
			if len(tc.want) > 0 {
				if !r.Invalid || r.Spec != nil {
					t.Errorf("resource Invalid=%v Spec=%v; want it invalid", r.Invalid, r.Spec)
				}
				return
			}
			if r.Kind != KindDestinationRule {
				return
			}
			if got := r.Spec.(*networking.DestinationRule).GetTrafficPolicy().GetLoadBalancer().GetSimple(); got != tc.simple {
				t.Errorf("simple = %v, want %v", got, tc.simple)
			}
		})
	}
}

// A key written twice at the top level of a document (or in metadata) is
// an error, as it is inside spec.
func TestDuplicateTopLevelKey(t *testing.T) {
	for name, doc := range map[string]string{
		"spec twice":          "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\nspec:\n  host: s\n",
		"metadata.name twice": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, name: s}\nspec:\n  host: r\n",
	} {
		t.Run(name, func(t *testing.T) {
			set, fs := Parse("x.yaml", []byte(doc))
			if len(fs) == 0 {
				r := set.Resources[0]
				t.Errorf("no finding; read as %s with spec %v; want a duplicate key error", r.Key(), r.Spec)
			}
		})
	}
}

// TestDuplicateKeys: a key written twice in any mapping is an error at the
// second one, naming the first one's line, and makes the resource invalid.
// The first value names the resource.
func TestDuplicateKeys(t *testing.T) {
	const dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "spec",
			yaml: dr + "metadata: {name: r}\nspec:\n  host: r\nspec:\n  host: s\n",
			want: []string{`f.yaml:6: DestinationRule default/r: spec: duplicate field "spec" (first at line 4); remove one`},
		},
		{
			name: "kind",
			yaml: dr + "kind: ServiceEntry\nmetadata: {name: r}\nspec: {host: r}\n",
			want: []string{`f.yaml:3: DestinationRule default/r: kind: duplicate field "kind" (first at line 2); remove one`},
		},
		{
			name: "metadata.name",
			yaml: dr + "metadata: {name: r, name: s}\nspec:\n  host: r\n",
			want: []string{`f.yaml:3: DestinationRule default/r: metadata.name: duplicate field "name" (first at line 3); remove one`},
		},
		{
			name: "metadata.namespace",
			yaml: dr + "metadata:\n  name: r\n  namespace: a\n  namespace: b\nspec: {host: r}\n",
			want: []string{`f.yaml:6: DestinationRule a/r: metadata.namespace: duplicate field "namespace" (first at line 5); remove one`},
		},
		{
			name: "label",
			yaml: dr + "metadata:\n  name: r\n  labels:\n    app: a\n    app: b\nspec: {host: r}\n",
			want: []string{`f.yaml:7: DestinationRule default/r: metadata.labels[app]: duplicate key "app" (first at line 6); remove one`},
		},
		{
			name: "spec field",
			yaml: dr + "metadata: {name: r}\nspec:\n  host: r\n  host: s\n",
			want: []string{`f.yaml:6: DestinationRule default/r: spec.host: duplicate field "host" (first at line 5); remove one`},
		},
		{
			name: "spec field under its JSON and proto names",
			yaml: dr + "metadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n    load_balancer: {simple: ROUND_ROBIN}\n",
			want: []string{`f.yaml:8: DestinationRule default/r: spec.trafficPolicy.loadBalancer: duplicate field "load_balancer" (first at line 7); remove one`},
		},
		{
			name: "spec map key",
			yaml: dr + "metadata: {name: r}\nspec:\n  host: r\n  workloadSelector:\n    matchLabels:\n      app: a\n      app: b\n",
			want: []string{`f.yaml:9: DestinationRule default/r: spec.workloadSelector.matchLabels[app]: duplicate key "app" (first at line 8); remove one`},
		},
		{
			name: "Workload field and map key",
			yaml: "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec:\n  service: a\n  service: b\n  env: {A: x, A: y}\n",
			want: []string{
				`f.yaml:6: Workload default/w: spec.service: duplicate field "service" (first at line 5); remove one`,
				`f.yaml:7: Workload default/w: spec.env[A]: duplicate key "A" (first at line 7); remove one`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, fs := Parse("f.yaml", []byte(tc.yaml))
			if diff := cmp.Diff(tc.want, findingStrings(fs)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if len(set.Resources) != 1 || !set.Resources[0].Invalid || set.Resources[0].Spec != nil {
				t.Errorf("resources = %v; want one, invalid", metas(set))
			}
		})
	}
}

// TestMergeKeys: YAML merge keys (<<) merge anchored mappings, one or a
// list of them, under the mapping's own keys, in specs, metadata and
// Workloads; a merge of something else is an error on its line.
func TestMergeKeys(t *testing.T) {
	set, fs := Parse("m.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: &policy
    connectionPool: {tcp: {maxConnections: 100}}
    outlierDetection: &outlier {consecutive5xxErrors: 5, interval: 10s}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      <<: *policy
      outlierDetection:
        <<: *outlier
        interval: 30s
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      <<: [{loadBalancer: {simple: RANDOM}}, *policy, {loadBalancer: {simple: ROUND_ROBIN}}]
  - name: v3
    labels: {version: v3}
    trafficPolicy: &lr {<<: *policy, loadBalancer: {simple: LEAST_REQUEST}}
  - name: v4
    labels: {"<<": v4}
    trafficPolicy: {outlierDetection: {interval: 5s, <<: *outlier}, <<: *lr}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata:
  <<: {namespace: shop, labels: {team: a}}
  name: reviews-v1
spec:
  labels: &v1 {version: v1}
  env:
    <<: *v1
    MODE: fast
  command: [sleep, "1"]
`))
	if diff := cmp.Diff([]string(nil), findingStrings(fs)); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}
	dr := set.Get(KindDestinationRule, "shop", "reviews").Spec.(*networking.DestinationRule)
	v1, v2 := dr.GetSubsets()[0].GetTrafficPolicy(), dr.GetSubsets()[1].GetTrafficPolicy()
	if got := v1.GetConnectionPool().GetTcp().GetMaxConnections(); got != 100 {
		t.Errorf("v1 maxConnections = %d, want 100 (merged from the trafficPolicy)", got)
	}
	if od := v1.GetOutlierDetection(); od.GetConsecutive_5XxErrors().GetValue() != 5 || od.GetInterval().AsDuration() != 30*time.Second {
		t.Errorf("v1 outlierDetection = %v, want 5 errors (merged) and 30s (its own)", od)
	}
	if v2.GetLoadBalancer().GetSimple() != networking.LoadBalancerSettings_RANDOM || v2.GetConnectionPool().GetTcp().GetMaxConnections() != 100 {
		t.Errorf("v2 trafficPolicy = %v, want RANDOM (the earlier of two merged) and 100 connections", v2)
	}
	// v4 merges v3's policy, itself a merge, under keys of its own
	// written before the merge key.
	v4 := dr.GetSubsets()[3].GetTrafficPolicy()
	if v4.GetLoadBalancer().GetSimple() != networking.LoadBalancerSettings_LEAST_REQUEST || v4.GetConnectionPool().GetTcp().GetMaxConnections() != 100 ||
		v4.GetOutlierDetection().GetInterval().AsDuration() != 5*time.Second || v4.GetOutlierDetection().GetConsecutive_5XxErrors().GetValue() != 5 {
		t.Errorf("v4 trafficPolicy = %v, want LEAST_REQUEST and 100 connections merged through v3's, and outlierDetection's own 5s over the merged 10s", v4)
	}
	if got := dr.GetSubsets()[3].GetLabels(); got["<<"] != "v4" {
		t.Errorf("v4 labels = %v, want the quoted key \"<<\" kept as a label", got)
	}
	w := set.Get(KindWorkload, "shop", "reviews-v1")
	if w == nil {
		t.Fatal("Workload shop/reviews-v1 (namespace merged from an inline mapping) not read")
	}
	if diff := cmp.Diff(map[string]string{"version": "v1", "MODE": "fast"}, w.Spec.(*Workload).Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"team": "a"}, w.Labels); diff != "" {
		t.Errorf("metadata.labels (-want +got):\n%s", diff)
	}

	head := "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
	// A chain of mappings each merging the one before: n(n+1)/2 merged
	// pairs from n lines.
	var chain strings.Builder
	chain.WriteString(head + "  a0: &a0 {x0: 0}\n")
	for i := 1; i < 2000; i++ {
		fmt.Fprintf(&chain, "  a%d: &a%d {x%d: 0, <<: *a%d}\n", i, i, i, i-1)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"a scalar", head + "  a: &n 5\n  <<: *n\n", `bad.yaml:6: a merge key (<<) takes a mapping or a list of mappings, not "5"; merge an anchored mapping (<<: *name) or write the fields out`},
		{"nothing", head + "  <<:\n", `bad.yaml:5: a merge key (<<) takes a mapping or a list of mappings, not nothing; merge an anchored mapping (<<: *name) or write the fields out`},
		{"a scalar in a list", head + "  a: &m {x: 1}\n  <<: [*m,\n    7]\n", `bad.yaml:7: a merge key (<<) takes a mapping or a list of mappings, not "7"; merge an anchored mapping (<<: *name) or write the fields out`},
		{"an unknown anchor", head + "  <<: [*x]\n", "bad.yaml:5: invalid YAML: unknown anchor 'x' referenced"},
		{"the mapping that holds it", head + "  a: &s {b: {<<: *s}}\n", "bad.yaml:5: a merge key (<<) cannot merge a mapping that holds it"},
		{"two merge keys", head + "  a: &m {x: 1}\n  <<: *m\n  <<: *m\n", `bad.yaml:7: duplicate key "<<" (first at line 6); remove one`},
		{"a key twice in a merged mapping", head + "  <<: {x: 1,\n    x: 2}\n", `bad.yaml:6: duplicate key "x" (first at line 5); remove one`},
		{"past the budget", chain.String(), "bad.yaml:1453: document too large (merge keys expand to more than 1048576 entries)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := Parse("bad.yaml", []byte(tc.yaml))
			if diff := cmp.Diff([]string{tc.want}, findingStrings(fs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoaderParsesOnlyChangedFiles: a Loader keeps the parse of a file
// whose bytes did not change (the same spec), parses a changed file anew,
// and a resource once defined twice is valid again when the other
// definition goes: what the Set marks is never the kept parse.
func TestLoaderParsesOnlyChangedFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, host string) {
		t.Helper()
		doc := fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n  hosts: [%s]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n", host)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(set *Set, file string) *networking.ServiceEntry {
		t.Helper()
		for _, r := range set.Resources {
			if filepath.Base(r.File) == file {
				if r.Invalid {
					return nil
				}
				return r.Spec.(*networking.ServiceEntry)
			}
		}
		t.Fatalf("no resource from %s", file)
		return nil
	}
	var l Loader
	write("a.yaml", "a.example.com")
	first, _ := l.Load(dir)
	a1 := spec(first, "a.yaml")

	// b.yaml defines the same resource: refused there, a.yaml's kept.
	write("b.yaml", "b.example.com")
	second, fs := l.Load(dir)
	if spec(second, "a.yaml") != a1 {
		t.Errorf("a.yaml, unchanged, was parsed again")
	}
	if spec(second, "b.yaml") != nil || !strings.Contains(strings.Join(findingStrings(fs), "\n"), "defined twice") {
		t.Errorf("b.yaml's duplicate not refused: %v", findingStrings(fs))
	}

	// a.yaml goes; b.yaml, unchanged, comes from its kept parse, which
	// the Set that refused it did not mark.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	third, fs := l.Load(dir)
	b1 := spec(third, "b.yaml")
	if b1 == nil || len(fs) != 0 {
		t.Errorf("b.yaml alone: spec %v, findings %v; want it valid", b1, findingStrings(fs))
	}
	if fourth, _ := l.Load(dir); spec(fourth, "b.yaml") != b1 {
		t.Errorf("b.yaml, unchanged, was parsed again")
	}

	// b.yaml changes: parsed anew.
	write("b.yaml", "b2.example.com")
	fifth, _ := l.Load(dir)
	if got := spec(fifth, "b.yaml"); got == b1 || got.GetHosts()[0] != "b2.example.com" {
		t.Errorf("b.yaml, changed, not parsed anew: %v", got.GetHosts())
	}
}
