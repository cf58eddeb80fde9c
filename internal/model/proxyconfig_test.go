package model

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func TestProxySettingsFor(t *testing.T) {
	pc := func(ns, name string, selector map[string]string, concurrency *int32, env map[string]string) *ProxyConfig {
		spec := &networkingv1beta1.ProxyConfig{EnvironmentVariables: env}
		if selector != nil {
			spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
		}
		if concurrency != nil {
			spec.Concurrency = wrapperspb.Int32(*concurrency)
		}
		return &ProxyConfig{Meta: Meta{Kind: "ProxyConfig", Namespace: ns, Name: name}, Spec: spec}
	}
	n := func(v int32) *int32 { return &v }
	// Sorted by namespace, then name, as validation leaves them.
	configs := []*ProxyConfig{
		pc("istio-system", "gateway", map[string]string{"istio": "ingressgateway"}, n(4), nil),
		pc("istio-system", "mesh", nil, n(0), map[string]string{"GOGC": "200", "A": "mesh", "GOMAXPROCS": "8"}),
		pc("shop", "a-reviews", map[string]string{"app": "reviews"}, nil, map[string]string{"A": "reviews"}),
		pc("shop", "b-reviews", map[string]string{"app": "reviews"}, n(3), nil),
		pc("shop", "empty-selector", map[string]string{}, n(5), nil),
		pc("shop", "shop", nil, n(2), map[string]string{"A": "shop", "B": "shop"}),
		pc("web", "ratings", map[string]string{"app": "ratings"}, n(1), map[string]string{"GOMAXPROCS": "1"}),
	}
	tests := []struct {
		name      string
		root      string
		namespace string
		labels    map[string]string
		want      ProxySettings
	}{
		{
			name:      "mesh, namespace, then the first workload's own by name; a more specific concurrency drops a less specific GOMAXPROCS",
			namespace: "shop", labels: map[string]string{"app": "reviews", "version": "v1"},
			want: ProxySettings{Concurrency: n(2), Env: map[string]string{"GOGC": "200", "A": "reviews", "B": "shop"},
				From: []string{"istio-system/mesh", "shop/shop", "shop/a-reviews"}},
		},
		{
			name:      "no selector matches, and an empty selector selects nothing: the namespace's",
			namespace: "shop", labels: map[string]string{"app": "ratings"},
			want: ProxySettings{Concurrency: n(2), Env: map[string]string{"GOGC": "200", "A": "shop", "B": "shop"},
				From: []string{"istio-system/mesh", "shop/shop"}},
		},
		{
			name:      "a selector in another namespace does not apply",
			namespace: "web", labels: map[string]string{"app": "reviews"},
			want: ProxySettings{Concurrency: n(0), Env: map[string]string{"GOGC": "200", "A": "mesh", "GOMAXPROCS": "8"}, From: []string{"istio-system/mesh"}},
		},
		{
			name:      "a GOMAXPROCS beside a concurrency stays",
			namespace: "web", labels: map[string]string{"app": "ratings"},
			want: ProxySettings{Concurrency: n(1), Env: map[string]string{"GOGC": "200", "A": "mesh", "GOMAXPROCS": "1"}, From: []string{"istio-system/mesh", "web/ratings"}},
		},
		{
			name:      "in the root namespace the mesh-wide one counts once, a selector there selects its own workloads",
			namespace: "istio-system", labels: map[string]string{"istio": "ingressgateway"},
			want: ProxySettings{Concurrency: n(4), Env: map[string]string{"GOGC": "200", "A": "mesh"}, From: []string{"istio-system/mesh", "istio-system/gateway"}},
		},
		{
			name: "another root namespace: nothing mesh-wide",
			root: "mesh-root", namespace: "web", labels: map[string]string{"app": "ratings"},
			want: ProxySettings{Concurrency: n(1), Env: map[string]string{"GOMAXPROCS": "1"}, From: []string{"web/ratings"}},
		},
		{
			name: "nothing applies: the proxy's defaults",
			root: "mesh-root", namespace: "other",
			want: ProxySettings{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Snapshot{ProxyConfigs: configs, MeshTelemetry: MeshTelemetry{RootNamespace: tc.root}}
			if diff := cmp.Diff(tc.want, s.ProxySettingsFor(tc.namespace, tc.labels)); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}
