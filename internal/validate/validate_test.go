package validate

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// TestAnalyze has one case per kind of finding: each loads the valid mesh
// in testdata/mesh.yaml plus one file, and expects exactly these lines.
func TestAnalyze(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		want   []string
		wantRC int
	}{
		{name: "valid mesh", file: "", wantRC: 0},
		{
			name: "route to unknown host", file: "unknown-host.yaml", wantRC: 1,
			want: []string{
				"testdata/unknown-host.yaml:10: VirtualService default/reviews: spec.http[0].route[0].destination.host: no Workload or ServiceEntry serves host reviewz.default.svc.cluster.local; fix the name or declare the service",
				"testdata/unknown-host.yaml:21: VirtualService default/external: spec.tls[0].route[0].destination.host: host other.example.com is not in the registry; declare it with a ServiceEntry to reach it",
			},
		},
		{
			name: "undefined subset", file: "subset.yaml", wantRC: 1,
			want: []string{
				`testdata/subset.yaml:11: VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset "v3" is not defined in DestinationRule default/reviews (testdata/mesh.yaml:35); its subsets are: v1, v2`,
				`testdata/subset.yaml:21: VirtualService default/ratings: spec.http[0].route[0].destination.subset: subset "v1" is not defined: no DestinationRule has host ratings.default.svc.cluster.local; add one with a subset named "v1"`,
			},
		},
		{
			name: "weights not 100", file: "weights.yaml", wantRC: 1,
			want: []string{"testdata/weights.yaml:8: VirtualService default/reviews: spec.http[0].route: weights add up to 90, not 100; adjust them so they total 100"},
		},
		{
			name: "fault injection out of range, CORS", file: "fault.yaml", wantRC: 1,
			want: []string{
				"testdata/fault.yaml:9: VirtualService default/ratings: spec.http[0].fault.abort.httpStatus: httpStatus 99 is not an HTTP status from 200 to 599",
				"testdata/fault.yaml:10: VirtualService default/ratings: spec.http[0].fault.delay.fixedDelay: fixedDelay 0s is less than 1ms",
				"testdata/fault.yaml:10: VirtualService default/ratings: spec.http[0].fault.delay.percentage: percentage 120 is not from 0 to 100",
				`testdata/fault.yaml:13: VirtualService default/ratings: spec.http[1].fault.abort.grpcStatus: grpcStatus "BOGUS" is not a gRPC status; use a name such as UNAVAILABLE or a number from 0 to 16`,
				"testdata/fault.yaml:18: VirtualService default/ratings: spec.http[2].mirrorPercentage: percentage 101 is not from 0 to 100",
				"testdata/fault.yaml:19: VirtualService default/ratings: spec.http[2].corsPolicy.allowOrigins[1]: regex \"(\" does not compile (RE2 syntax): error parsing regexp: missing closing ): `(`",
			},
		},
		{
			name: "unknown destination port", file: "port.yaml", wantRC: 1,
			want: []string{"testdata/port.yaml:12: VirtualService default/ratings: spec.http[0].route[0].destination.port.number: service ratings.default.svc.cluster.local has no port 8080; its ports are 9080 (http), 9090 (grpc-api)"},
		},
		{
			name: "two VirtualServices for one host", file: "host-conflict.yaml", wantRC: 1,
			want: []string{"testdata/host-conflict.yaml:17: VirtualService default/reviews-b: spec.hosts[0]: host reviews.default.svc.cluster.local on gateway mesh is already routed by VirtualService default/reviews-a (testdata/host-conflict.yaml:1); merge the two VirtualServices into one"},
		},
		{
			name: "match behind a catch-all", file: "unreachable.yaml", wantRC: 0,
			want: []string{"testdata/unreachable.yaml:12: VirtualService default/reviews: spec.http[1]: this route can never match: http[0] above it matches every request; move it above http[0] or remove it (warning)"},
		},
		{
			name: "DestinationRule for no service", file: "dr-unknown.yaml", wantRC: 0,
			want: []string{"testdata/dr-unknown.yaml:6: DestinationRule default/details: spec.host: no service has host details.default.svc.cluster.local, so this rule applies to nothing; declare the service with a Workload or ServiceEntry, or fix the name (warning)"},
		},
		{
			name: "two DestinationRules for one host", file: "dr-twice.yaml", wantRC: 1,
			want: []string{"testdata/dr-twice.yaml:6: DestinationRule default/reviews-again: spec.host: DestinationRule default/reviews (testdata/mesh.yaml:35) already applies to host reviews.default.svc.cluster.local; merge the two into one DestinationRule"},
		},
		{
			name: "missing Gateway", file: "gateway-missing.yaml", wantRC: 1,
			want: []string{`testdata/gateway-missing.yaml:9: VirtualService default/frontend: spec.gateways[1]: Gateway default/shop-gateway does not exist; create it or fix the name ("mesh" means the sidecars)`},
		},
		{
			name: "malformed Sidecar egress hosts", file: "sidecar.yaml", wantRC: 1,
			want: []string{
				`testdata/sidecar.yaml:10: Sidecar default/default: spec.egress[0].hosts[2]: "reviews" is not namespace/host; write "./reviews" for this namespace or "*/reviews" for any`,
				`testdata/sidecar.yaml:11: Sidecar default/default: spec.egress[0].hosts[3]: "Bad_NS/ratings": "Bad_NS" is not a namespace; use a namespace name, "." (this one), "*" (any) or "~" (none)`,
			},
		},
		{
			name: "unsupported fields", file: "unsupported.yaml", wantRC: 1,
			want: []string{
				"testdata/unsupported.yaml:7: VirtualService default/reviews: spec.exportTo: exportTo is ignored: in Weft every resource is visible to every namespace; remove it to silence this warning (warning)",
				"testdata/unsupported.yaml:9: VirtualService default/reviews: spec.http[0].delegate: VirtualService default/reviews-delegate is not a delegate in force: create it without hosts, or fix its errors",
				"testdata/unsupported.yaml:19: DestinationRule default/ratings: spec.trafficPolicy.tunnel: tunnel is not supported by Weft yet; remove it",
				"testdata/unsupported.yaml:24: DestinationRule default/ratings: spec.trafficPolicy.loadBalancer.consistentHash.httpCookie: httpCookie needs a name; set httpCookie.name to the cookie to hash on",
				"testdata/unsupported.yaml:32: DestinationRule default/ratings: spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.failoverPriority: failoverPriority has no effect without outlierDetection, which tells the sidecars that endpoints are failing; add outlierDetection to this traffic policy (warning)",
				`testdata/unsupported.yaml:32: DestinationRule default/ratings: spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]: "bad key!" is not a label key (or key=value); write a label such as topology.istio.io/network or version`,
				"testdata/unsupported.yaml:44: Gateway default/tls-gateway: spec.servers[0].tls.credentialName: credentialName is not supported by Weft yet; Weft reads certificates from files; set serverCertificate and privateKey",
				`testdata/unsupported.yaml:45: Gateway default/tls-gateway: spec.servers[1].port.protocol: protocol "TCP" is not supported on a gateway yet; use HTTP, HTTPS to terminate TLS, or TLS to pass it through`,
			},
		},
		{
			name: "schema errors and unsupported kinds from config", file: "schema.yaml", wantRC: 1,
			want: []string{
				`testdata/schema.yaml:8: VirtualService default/reviews: spec.http[0].rout: unknown field "rout"; did you mean "route"?`,
				"testdata/schema.yaml:12: EnvoyFilter default/deny-all: kind: kind EnvoyFilter (networking.istio.io/v1alpha3) is not supported by Weft yet; remove it or keep it out of Weft's config folder",
			},
		},
		{
			name: "Workload checks", file: "workload.yaml", wantRC: 1,
			want: []string{
				`testdata/workload.yaml:6: Workload default/details: spec.service: "Details" is not a valid service name; use lowercase letters, digits and '-'`,
				"testdata/workload.yaml:7: Workload default/details: spec.replicas: replicas is -1; use 0 or more",
				`testdata/workload.yaml:11: Workload default/details: spec.ports[0].protocol: unknown protocol "HTTPX"; use HTTP, HTTP2, GRPC, TCP, TLS or HTTPS`,
				`testdata/workload.yaml:12: Workload default/details: spec.ports[1].name: port name "http" is used twice; port names must be unique`,
				"testdata/workload.yaml:13: Workload default/details: spec.ports[1].number: port 0 is out of range; use 1-65535",
				"testdata/workload.yaml:14: Workload default/details: spec.command[1]: ${PORT_ADMIN} names no port of this Workload; use ${PORT_<NAME>} with one of its port names, upper-cased",
				`testdata/workload.yaml:24: Workload default/reviews-v3: spec.ports[0]: port 9080 is "http" (HTTP) in Workload default/reviews-v1 (testdata/mesh.yaml:2); give it the same name and protocol in every Workload of service reviews`,
			},
		},
		{
			name: "locality balancing", file: "locality.yaml", wantRC: 1,
			want: []string{
				`testdata/locality.yaml:6: Workload default/edge: spec.locality: locality "us-east//rack1": every part must be a non-empty name without '*' or spaces; write region/zone/subzone`,
				"testdata/locality.yaml:15: DestinationRule default/reviews-locality: spec.host: no service has host edge.default.svc.cluster.local, so this rule applies to nothing; declare the service with a Workload or ServiceEntry, or fix the name (warning)",
				"testdata/locality.yaml:22: DestinationRule default/reviews-locality: spec.trafficPolicy.loadBalancer.localityLbSetting: set only one of distribute, failover and failoverPriority",
				`testdata/locality.yaml:24: DestinationRule default/reviews-locality: spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: locality "*/zone1": "*" may only be the last part ("us-east/*", not "*/zone1")`,
				"testdata/locality.yaml:25: DestinationRule default/reviews-locality: spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: the weights add up to 90; they must add up to 100",
				"testdata/locality.yaml:29: DestinationRule default/reviews-locality: spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: from and to are both \"us-east\"; failover goes to another region",
				`testdata/locality.yaml:31: DestinationRule default/reviews-locality: spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1].to: "us-west/zone1" is not a region: failover goes from region to region, without zones or "*"`,
				"testdata/locality.yaml:42: DestinationRule default/ratings: spec.trafficPolicy.loadBalancer.localityLbSetting.failover: failover has no effect without outlierDetection, which tells the sidecars that a locality's endpoints are failing; add outlierDetection to this traffic policy (warning)",
			},
		},
		{
			name: "Workload upstreams", file: "upstreams.yaml", wantRC: 1,
			want: []string{
				"testdata/upstreams.yaml:8: Workload default/web: spec.upstreams[0].service: no Workload or ServiceEntry serves host reviewz.default.svc.cluster.local; fix the name or declare the service",
				"testdata/upstreams.yaml:11: Workload default/web: spec.upstreams[1].port: service ratings.default.svc.cluster.local has no port 8080; its ports are 9080 (http), 9090 (grpc-api)",
				"testdata/upstreams.yaml:14: Workload default/web: spec.upstreams[4].env: RATINGS_ADDR is also set by spec.upstreams[3]; give each upstream its own variable",
				"testdata/upstreams.yaml:14: Workload default/web: spec.upstreams[4]: reviews.default.svc.cluster.local:9080 is already listed as spec.upstreams[2]; list each service port once",
				`testdata/upstreams.yaml:15: Workload default/web: spec.upstreams[5].env: "1-BAD" is not a valid environment variable name; use letters, digits and '_', not starting with a digit`,
				"testdata/upstreams.yaml:26: Workload default/cache: spec.upstreams: upstreams are served by the sidecar, and this Workload has sidecar: false, so they are ignored; remove them or enable the sidecar (warning)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			paths := []string{"testdata/mesh.yaml"}
			if tc.file != "" {
				paths = append(paths, filepath.Join("testdata", tc.file))
			}
			var out bytes.Buffer
			rc := Analyze(&out, paths)
			var got []string
			if s := strings.TrimSuffix(out.String(), "\n"); s != "" {
				got = strings.Split(s, "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if rc != tc.wantRC {
				t.Errorf("exit code = %d, want %d", rc, tc.wantRC)
			}
		})
	}
}

func parse(t *testing.T, file, yaml string) *config.Set {
	t.Helper()
	set, _ := config.Parse(file, []byte(yaml))
	return set
}

const registryYAML = `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: 10.0.0.2
  labels: {app: legacy}
  ports: {http: 8081}
  serviceAccount: legacy
  locality: eu/west-1/a
  network: vms
  weight: 3
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-other, namespace: other}
spec:
  address: 10.0.0.9
  labels: {app: legacy}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy}
spec:
  hosts: [legacy]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, targetPort: 8080}
  workloadSelector:
    labels: {app: legacy}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  addresses: [240.0.0.1]
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
  - {number: 80, name: http-plain}
  endpoints:
  - {address: pay1.example.com}
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v2}
spec:
  service: reviews
  labels: {app: reviews, version: v2}
  ports:
  - {name: grpc, number: 9090}
  - {name: http, number: 9080}
`

func TestRegistry(t *testing.T) {
	instances := []*model.Instance{
		{
			Name: "reviews-v2-0", Namespace: "default", Workload: "reviews-v2", Service: "reviews",
			Labels: map[string]string{"app": "reviews", "version": "v2"}, Address: "127.0.0.1",
			Ports: []model.InstancePort{
				{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP, AppPort: 30001, InboundPort: 30002},
				{Name: "grpc", Number: 9090, Protocol: model.ProtocolGRPC, AppPort: 30003, InboundPort: 30004},
			},
		},
		{Name: "unrelated-0", Namespace: "default", Workload: "unrelated", Address: "127.0.0.1"},
	}
	snap := NewBuilder().Build(parse(t, "r.yaml", registryYAML), instances)
	if fs := Findings(snap); len(fs) != 0 {
		t.Fatalf("findings: %v", fs)
	}
	want := map[string]*model.Service{
		"legacy.default.svc.cluster.local": {
			Hostname: "legacy.default.svc.cluster.local", Namespace: "default",
			Ports:      []model.Port{{Name: "http", Number: 80, Protocol: model.ProtocolHTTP}},
			Resolution: model.ResolutionStatic,
			Endpoints: []*model.Endpoint{{
				Address: "10.0.0.2", Ports: map[string]uint32{"http": 8081}, Labels: map[string]string{"app": "legacy"},
				ServiceAccount: "legacy", Namespace: "default", Workload: "vm-1", Weight: 3, Locality: "eu/west-1/a", Network: "vms",
			}},
			Source: "ServiceEntry default/legacy",
		},
		"payments.example.com": {
			Hostname: "payments.example.com", Namespace: "default", Addresses: []string{"240.0.0.1"},
			Ports: []model.Port{
				{Name: "http-plain", Number: 80, Protocol: model.ProtocolHTTP},
				{Name: "tls", Number: 443, Protocol: model.ProtocolTLS},
			},
			Resolution: model.ResolutionDNS, MeshExternal: true,
			Endpoints: []*model.Endpoint{{Address: "pay1.example.com", Ports: map[string]uint32{}, Labels: map[string]string{}, Namespace: "default"}},
			Source:    "ServiceEntry default/payments",
		},
		"reviews.default.svc.cluster.local": {
			Hostname: "reviews.default.svc.cluster.local", Namespace: "default",
			Ports: []model.Port{
				{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP},
				{Name: "grpc", Number: 9090, Protocol: model.ProtocolGRPC},
			},
			Resolution: model.ResolutionStatic,
			Endpoints: []*model.Endpoint{{
				Address: "127.0.0.1", Ports: map[string]uint32{"http": 30002, "grpc": 30004},
				Labels: map[string]string{"app": "reviews", "version": "v2"}, Namespace: "default", Workload: "reviews-v2", Sidecar: true,
			}},
			Source: "Workload default/reviews-v2",
		},
	}
	if diff := cmp.Diff(want, snap.Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"reviews-v2-0.default", "unrelated-0.default"}, slices.Sorted(maps.Keys(snap.Instances))); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}

	// Offline (no instances), the Workload's service has no endpoints.
	offline := NewBuilder().Build(parse(t, "r.yaml", registryYAML), nil)
	if got := offline.Services["reviews.default.svc.cluster.local"].Endpoints; len(got) != 0 {
		t.Errorf("offline endpoints = %v, want none", got)
	}
}

const shortNamesYAML = `
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews, namespace: shop}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings, namespace: data}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route:
    - destination: {host: reviews}
  - route:
    - destination: {host: ratings.data}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings.data.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./reviews", "data/ratings", "*/*.example.com", "istio-system/*"]
`

func TestShortNames(t *testing.T) {
	set := parse(t, "s.yaml", shortNamesYAML)
	snap := NewBuilder().Build(set, nil)
	if fs := Findings(snap); len(fs) != 0 {
		t.Fatalf("findings: %v", fs)
	}
	wantVS := &networking.VirtualService{
		Hosts: []string{"reviews.shop.svc.cluster.local"},
		Http: []*networking.HTTPRoute{
			{
				Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews.shop.svc.cluster.local"}}},
			},
			{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings.data.svc.cluster.local"}}}},
		},
	}
	if diff := cmp.Diff(wantVS, snap.VirtualServices[0].Spec, protocmp.Transform()); diff != "" {
		t.Errorf("VirtualService (-want +got):\n%s", diff)
	}
	// A short name in "./" stays short: the translation qualifies it with
	// the namespace "." means for each proxy (the proxy's own, for a
	// Sidecar of the root namespace).
	wantHosts := []string{"./reviews", "data/ratings.data.svc.cluster.local", "*/*.example.com", "istio-system/*"}
	if diff := cmp.Diff(wantHosts, snap.Sidecars[0].Spec.GetEgress()[0].GetHosts()); diff != "" {
		t.Errorf("Sidecar hosts (-want +got):\n%s", diff)
	}
	// The loaded spec is untouched.
	if got := set.Get(config.KindVirtualService, "shop", "reviews").Spec.(*networking.VirtualService).GetHosts(); !cmp.Equal(got, []string{"reviews"}) {
		t.Errorf("loaded spec mutated: hosts = %v", got)
	}
}

func TestLastGood(t *testing.T) {
	const base = `
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
`
	vs := func(subset string) string {
		return base + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: ` + subset + `}
`
	}
	vsMeta := model.Meta{Kind: "VirtualService", Namespace: "default", Name: "reviews", File: "c.yaml", Line: 15}
	subsetOf := func(s *model.Snapshot) string {
		if len(s.VirtualServices) != 1 {
			return "<none>"
		}
		return s.VirtualServices[0].Spec.GetHttp()[0].GetRoute()[0].GetDestination().GetSubset()
	}
	statusOf := func(s *model.Snapshot) model.ResourceStatus {
		for _, st := range s.Status {
			if st.Meta == vsMeta {
				st.Findings = nil
				return st
			}
		}
		return model.ResourceStatus{}
	}
	steps := []struct {
		name       string
		yaml       string
		wantSubset string
		wantStatus model.ResourceStatus
	}{
		{name: "valid", yaml: vs("v1"), wantSubset: "v1", wantStatus: model.ResourceStatus{Meta: vsMeta, State: model.StateValid}},
		{name: "broken keeps last good", yaml: vs("v9"), wantSubset: "v1", wantStatus: model.ResourceStatus{Meta: vsMeta, State: model.StateInvalid, ServingLastGood: true}},
		{name: "schema error keeps last good", yaml: strings.Replace(vs("v2"), "route:", "rout:", 1), wantSubset: "v1", wantStatus: model.ResourceStatus{Meta: vsMeta, State: model.StateInvalid, ServingLastGood: true}},
		{name: "fixed recovers", yaml: vs("v2"), wantSubset: "v2", wantStatus: model.ResourceStatus{Meta: vsMeta, State: model.StateValid}},
		{name: "deleted is forgotten", yaml: base},
		{name: "broken with no history", yaml: vs("v9"), wantSubset: "<none>", wantStatus: model.ResourceStatus{Meta: vsMeta, State: model.StateInvalid}},
	}
	b := NewBuilder()
	var prev *model.Snapshot
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			snap := b.Build(parse(t, "c.yaml", st.yaml), nil)
			if snap.Version != uint64(i+1) {
				t.Errorf("version = %d, want %d", snap.Version, i+1)
			}
			// The one-shot form, from the previous snapshot, agrees.
			one := Build(parse(t, "c.yaml", st.yaml), nil, prev)
			prev = snap
			if st.yaml == base {
				if len(snap.VirtualServices) != 0 {
					t.Errorf("deleted VirtualService still in force")
				}
				return
			}
			for _, s := range []*model.Snapshot{snap, one} {
				if got := subsetOf(s); got != st.wantSubset {
					t.Errorf("subset in force = %q, want %q", got, st.wantSubset)
				}
				if diff := cmp.Diff(st.wantStatus, statusOf(s)); diff != "" {
					t.Errorf("status (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestLastGoodRegistry(t *testing.T) {
	good := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [api.example.com]\n  resolution: DNS\n  ports: [{number: 443, name: tls}]\n"
	bad := strings.Replace(good, "resolution: DNS", "resolution: DNS\n  subjectAltNames: [\"\"]", 1)
	b := NewBuilder()
	b.Build(parse(t, "se.yaml", good), nil)
	snap := b.Build(parse(t, "se.yaml", bad), nil)
	if snap.Services["api.example.com"] == nil {
		t.Fatalf("last good ServiceEntry not in force")
	}
	if !snap.Status[0].ServingLastGood || snap.Status[0].State != model.StateInvalid {
		t.Errorf("status = %+v, want Invalid serving last good", snap.Status[0])
	}
}

func TestStatus(t *testing.T) {
	set, _ := config.Load("testdata/mesh.yaml", "testdata/schema.yaml", "testdata/dr-unknown.yaml")
	snap := NewBuilder().Build(set, nil)
	type row struct {
		Key   string
		State model.State
		N     int
	}
	var got []row
	for _, st := range snap.Status {
		got = append(got, row{st.Key(), st.State, len(st.Findings)})
	}
	want := []row{
		{"DestinationRule default/details", model.StateValid, 1},
		{"DestinationRule default/reviews", model.StateValid, 0},
		{"EnvoyFilter default/deny-all", model.StateInvalid, 1},
		{"Gateway default/bookinfo-gateway", model.StateValid, 0},
		{"ServiceEntry default/example-api", model.StateValid, 0},
		{"VirtualService default/reviews", model.StateInvalid, 1},
		{"Workload default/ratings", model.StateValid, 0},
		{"Workload default/reviews-v1", model.StateValid, 0},
		{"Workload default/reviews-v2", model.StateValid, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// TestFieldRulesResolve keeps the table of unsupported fields honest:
// every path names real fields of its kind.
func TestFieldRulesResolve(t *testing.T) {
	for kind, rules := range rulesByKind {
		for _, r := range rules {
			t.Run(kind+" "+r.path, func(t *testing.T) {
				m := istioSpecs[kind]
				if m == nil {
					t.Fatalf("no spec type for kind %s", kind)
				}
				if !resolves(m.ProtoReflect().Descriptor(), r.steps) {
					t.Errorf("path %s does not resolve in %s", r.path, kind)
				}
			})
		}
	}
}

func FuzzAnalyze(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	var mesh []byte
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if strings.HasSuffix(p, "mesh.yaml") {
			mesh = data
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, _ := config.Parse("fuzz.yaml", append(append(append([]byte(nil), mesh...), "\n---\n"...), data...))
		inst := []*model.Instance{{Name: "reviews-v1-0", Namespace: "default", Workload: "reviews-v1", Address: "127.0.0.1",
			Ports: []model.InstancePort{{Name: "http", Number: 9080, InboundPort: 1}}}}
		b := NewBuilder()
		// Twice: the second build runs the last-good paths.
		for _, fd := range Findings(b.Build(set, inst)) {
			_ = fd.String()
		}
		snap := b.Build(set, inst)
		for _, fd := range Findings(snap) {
			_ = fd.String()
		}
	})
}
