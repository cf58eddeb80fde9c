package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"weft.dev/weft/internal/local"
	"weft.dev/weft/internal/proxy/admin"
)

// TestProxyConfig runs `weft proxy-config` against a mesh admin API and a
// sidecar admin API on real sockets: the instance is found by name or by
// its only workload's, the sidecar's clusters are read and printed, and
// ambiguous or unknown targets are refused with the choices.
func TestProxyConfig(t *testing.T) {
	sidecar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/clusters" || r.URL.Query().Get("format") != "json" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"clusters": []admin.ClusterStatus{
			{Name: "outbound|9080||reviews.default.svc.cluster.local", LBPolicy: "ROUND_ROBIN", ActiveConnections: 1,
				PriorityLoads: []admin.PriorityLoad{{Priority: 0}, {Priority: 1, Healthy: 100}},
				Hosts: []admin.HostStatus{
					{Address: "127.0.0.1:1001", Health: "/failed_outlier_check", Locality: "us-east/zone-a", Priority: 0, Weight: 1, Total: 3, Failures: 1},
					{Address: "127.0.0.1:1002", Health: "healthy", Locality: "us-east/zone-b", Priority: 1, Weight: 1, Total: 9},
				}},
			{Name: "outbound|9080||ratings.default.svc.cluster.local", LBPolicy: "LEAST_REQUEST", Hosts: []admin.HostStatus{}},
		}})
	}))
	t.Cleanup(sidecar.Close)
	mesh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(local.MeshStatus{Instances: []local.InstanceStatus{
			{Service: "productpage", Instance: "productpage-v1-0", Workload: "productpage-v1", Sidecar: strings.TrimPrefix(sidecar.URL, "http://")},
			{Service: "reviews", Namespace: "default", Instance: "reviews-v1-0", Workload: "reviews-v1"},
			{Service: "reviews", Namespace: "default", Instance: "reviews-v2-0", Workload: "reviews-v2"},
			{Service: "reviews", Namespace: "staging", Instance: "reviews-v1-0", Workload: "reviews-v1", Sidecar: "127.0.0.1:1"},
		}})
	}))
	t.Cleanup(mesh.Close)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		root := newRoot(&out, &errOut)
		root.SetArgs(append([]string{"--admin", mesh.URL}, args...))
		root.SetOut(&out)
		root.SetErr(&errOut)
		err := root.ExecuteContext(t.Context())
		return out.String(), err
	}
	out, err := run("proxy-config", "endpoints", "productpage-v1", "--cluster", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ENDPOINT        STATUS   OUTLIER CHECK  LOCALITY        PRIORITY  WEIGHT  ACTIVE  REQUESTS  ERRORS  CLUSTER",
		"127.0.0.1:1001  HEALTHY  FAILED         us-east/zone-a  0         1       0       3         1       outbound|9080||reviews.default.svc.cluster.local",
		"127.0.0.1:1002  HEALTHY  OK             us-east/zone-b  1         1       0       9         0       outbound|9080||reviews.default.svc.cluster.local",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("endpoints:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	out, err = run("proxy-config", "clusters", "productpage-v1-0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "outbound|9080||reviews.default.svc.cluster.local  ROUND_ROBIN    2          0       1            0          p0 0%, p1 100%") ||
		!strings.Contains(out, "ratings") {
		t.Errorf("clusters:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy-config", "endpoints", "reviews", "-n", "default"}, `"reviews" has 2 instances (default/reviews-v1-0, default/reviews-v2-0); name one`},
		{[]string{"proxy-config", "endpoints", "reviews-v1-0"}, `there is an instance "reviews-v1-0" in more than one namespace (default/reviews-v1-0, staging/reviews-v1-0); pass --namespace`},
		{[]string{"proxy-config", "endpoints", "reviews-v1-0", "-n", "staging"}, "cannot reach reviews-v1-0's sidecar admin at 127.0.0.1:1"},
		{[]string{"proxy-config", "endpoints", "nosuch"}, `no running instance, workload or service "nosuch"; see weft status`},
		{[]string{"proxy-config", "endpoints", "reviews-v1-0", "-n", "default"}, "reviews-v1-0 has no sidecar"},
		{[]string{"proxy-config", "routes", "reviews-v1-0"}, `"routes": say clusters or endpoints`},
	} {
		if _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.args, err, tc.want)
		}
	}
}
