package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

const ratingsSE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  ports: [{name: http, number: 9080, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}, ports: {http: 19080}}
  - {address: 127.0.0.2, labels: {version: v2}, ports: {http: 19080}}
`

const ratingsDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// brokenDR has an unknown field: it must be reported and left out, and
// the previous version of the rule must stay in force.
const brokenDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsetz:
  - {name: v3, labels: {version: v3}}
`

func startCP(t *testing.T, dir string) *Server {
	t.Helper()
	return startCPWith(t, Options{ConfigDir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
}

// startCPWith runs a control plane with opts (logs discarded) until the
// test ends.
func startCPWith(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("control plane: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("control plane did not stop")
		}
	})
	select {
	case <-cp.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("control plane not ready")
	}
	return cp
}

// adsClient is a bare ADS client: it asks for every cluster and ACKs.
type adsClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
}

func newADSClient(t *testing.T, addr string) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{
		xdsmeta.MetaNamespace: "default", xdsmeta.MetaName: "tester-0", xdsmeta.MetaProxyType: xdsmeta.ProxyTypeSidecar,
	})
	c := &adsClient{t: t, stream: stream, node: &corev3.Node{Id: xdsmeta.NodeID("sidecar", "127.0.0.1", "tester-0", "default"), Metadata: md}}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	return c
}

// clusters waits for the next CDS response, ACKs it and returns the
// cluster names.
func (c *adsClient) clusters() []string {
	c.t.Helper()
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.t.Fatalf("ADS stream: %v", err)
		}
		if err := c.stream.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
			c.t.Fatal(err)
		}
		if resp.TypeUrl != resourcev3.ClusterType {
			continue
		}
		var names []string
		for _, a := range resp.Resources {
			var cl clusterv3.Cluster
			if err := a.UnmarshalTo(&cl); err != nil {
				c.t.Fatal(err)
			}
			if strings.HasPrefix(cl.Name, "outbound|") {
				names = append(names, cl.Name)
			}
		}
		sort.Strings(names)
		return names
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := writeAtomic(path, []byte(text)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigChangesReachProxiesAndBadFilesKeepLastGood(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ratings.yaml"), ratingsSE)
	cp := startCP(t, dir)
	ads := newADSClient(t, cp.XDSAddr())

	if diff := cmp.Diff([]string{"outbound|9080||ratings.default.svc.cluster.local"}, ads.clusters()); diff != "" {
		t.Fatalf("clusters before the DestinationRule (-want +got):\n%s", diff)
	}

	withSubsets := []string{
		"outbound|9080|v1|ratings.default.svc.cluster.local",
		"outbound|9080|v2|ratings.default.svc.cluster.local",
		"outbound|9080||ratings.default.svc.cluster.local",
	}
	writeFile(t, filepath.Join(dir, "dr.yaml"), ratingsDR)
	if diff := cmp.Diff(withSubsets, ads.clusters()); diff != "" {
		t.Fatalf("clusters after adding the DestinationRule (-want +got):\n%s", diff)
	}

	// Break the rule: it is reported, and its last good version stays.
	v := cp.Snapshot().Version
	writeFile(t, filepath.Join(dir, "dr.yaml"), brokenDR)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := cp.WaitNewer(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	st := findStatus(t, snap, "DestinationRule", "ratings")
	if st.State != model.StateInvalid || !st.ServingLastGood {
		t.Errorf("broken rule: state %s, serving last good %v; want Invalid and true", st.State, st.ServingLastGood)
	}
	if len(st.Findings) == 0 || !strings.Contains(st.Findings[0].String(), "dr.yaml:6: DestinationRule default/ratings: spec.subsetz") {
		t.Errorf("broken rule findings = %v, want one naming dr.yaml:6 and spec.subsetz", st.Findings)
	}
	var cfg ConfigView
	getJSON(t, "http://"+cp.AdminAddr()+"/debug/config", &cfg)
	found := false
	for _, r := range cfg.Resources {
		if r.Kind == "DestinationRule" && r.Name == "ratings" {
			found = r.State == "Invalid" && r.ServingLastGood && len(r.Findings) > 0
		}
	}
	if !found {
		t.Errorf("/debug/config does not show the broken rule as Invalid, serving last good: %+v", cfg.Resources)
	}
	metrics := getText(t, "http://"+cp.AdminAddr()+"/metrics")
	if !strings.Contains(metrics, "weft_config_invalid_resources 1") {
		t.Errorf("/metrics lacks weft_config_invalid_resources 1")
	}

	// A later valid change elsewhere reaches the proxy with the last
	// good subsets still in force.
	writeFile(t, filepath.Join(dir, "details.yaml"), strings.ReplaceAll(strings.ReplaceAll(ratingsSE, "ratings", "details"), "9080", "9081"))
	want := append([]string{"outbound|9081||details.default.svc.cluster.local"}, withSubsets...)
	sort.Strings(want)
	if diff := cmp.Diff(want, ads.clusters()); diff != "" {
		t.Fatalf("clusters while the rule is broken (-want +got):\n%s", diff)
	}

	// Fix the rule: it recovers, with its new content.
	writeFile(t, filepath.Join(dir, "dr.yaml"), strings.ReplaceAll(ratingsDR, "- {name: v2, labels: {version: v2}}", ""))
	want = []string{
		"outbound|9080|v1|ratings.default.svc.cluster.local",
		"outbound|9080||ratings.default.svc.cluster.local",
		"outbound|9081||details.default.svc.cluster.local",
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, ads.clusters()); diff != "" {
		t.Fatalf("clusters after fixing the rule (-want +got):\n%s", diff)
	}
}

func TestApplyValidatesBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mesh.yaml"), ratingsSE+"---\n"+ratingsDR)
	cp := startCP(t, dir)
	base := "http://" + cp.AdminAddr()

	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - {destination: {host: ratings, subset: v1}, weight: 80}
    - {destination: {host: ratings, subset: v2}, weight: 20}
`
	tests := []struct {
		name       string
		body       string
		wantCode   int
		wantInBody []string
	}{
		{
			name:       "unknown subset is refused",
			body:       strings.ReplaceAll(vs, "subset: v2", "subset: v9"),
			wantCode:   http.StatusUnprocessableEntity,
			wantInBody: []string{"rejected: nothing was changed", "<apply>:9: VirtualService default/ratings: spec.http[0].route[1].destination.subset"},
		},
		{
			name:       "unknown field is refused with its line",
			body:       strings.ReplaceAll(vs, "hosts:", "hostz:"),
			wantCode:   http.StatusUnprocessableEntity,
			wantInBody: []string{"<apply>:5: VirtualService default/ratings: spec.hostz"},
		},
		{
			name:       "valid route is applied",
			body:       vs,
			wantCode:   http.StatusOK,
			wantInBody: []string{"VirtualService default/ratings"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(base+"/api/v1/apply", "application/yaml", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantCode, body)
			}
			for _, w := range tc.wantInBody {
				if !bytes.Contains(body, []byte(w)) {
					t.Errorf("answer lacks %q: %s", w, body)
				}
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if diff := cmp.Diff([]string{filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "virtualservice-default-ratings.yaml")}, files); diff != "" {
		t.Errorf("files after the applies (-want +got):\n%s", diff)
	}
	if st := findStatus(t, cp.Snapshot(), "VirtualService", "ratings"); st.State != model.StateValid {
		t.Errorf("applied VirtualService state %s, want Valid", st.State)
	}

	// Deleting the DestinationRule would break the VirtualService's
	// subsets: refused.
	req, _ := http.NewRequest("DELETE", base+"/api/v1/resources/DestinationRule/default/ratings", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte("subset")) {
		t.Errorf("delete of a rule in use: status %d: %s", resp.StatusCode, body)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	if !strings.Contains(string(data), "kind: DestinationRule") {
		t.Error("a refused delete changed mesh.yaml")
	}

	// Deleting the VirtualService is fine and removes its file.
	req, _ = http.NewRequest("DELETE", base+"/api/v1/resources/virtualservice/default/ratings", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: status %d: %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "virtualservice-default-ratings.yaml")); !os.IsNotExist(err) {
		t.Errorf("the deleted VirtualService's file is still there: %v", err)
	}
}

func findStatus(t *testing.T, snap *model.Snapshot, kind, name string) model.ResourceStatus {
	t.Helper()
	for _, st := range snap.Status {
		if st.Kind == kind && st.Name == name {
			return st
		}
	}
	t.Fatalf("no status for %s %s", kind, name)
	return model.ResourceStatus{}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(getText(t, url)), v); err != nil {
		t.Fatal(err)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// TestServedStaysBehindAFailedUpdate: a snapshot whose xDS update fails
// is published (the admin API shows what was read) but not reported as
// served, so that weft up does not start a sidecar for a model its
// proxies are not given; the next successful update catches Served up.
func TestServedStaysBehindAFailedUpdate(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ratings.yaml"), ratingsSE)
	cp, err := New(Options{ConfigDir: dir, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	update := cp.update
	cp.update = func(s *model.Snapshot) error {
		if fail.Load() {
			return errors.New("injected failure")
		}
		return update(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-cp.Ready()
	if v := cp.Snapshot().Version; cp.Served() != v {
		t.Fatalf("after a good build Served() = %d, want the snapshot's %d", cp.Served(), v)
	}
	good := cp.Served()

	// wait waits for a snapshot newer than v, read before the change
	// that makes it (the rebuild may be quicker than the caller).
	wait := func(v uint64) *model.Snapshot {
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		snap, err := cp.WaitNewer(wctx, v)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	fail.Store(true)
	v := cp.Snapshot().Version
	writeFile(t, filepath.Join(dir, "dr.yaml"), ratingsDR)
	snap := wait(v)
	if cp.Served() != good || snap.Version <= good {
		t.Errorf("after a failed update: snapshot %d, Served() = %d; want Served() to stay at %d", snap.Version, cp.Served(), good)
	}
	fail.Store(false)
	v = snap.Version
	cp.Rebuild()
	snap = wait(v)
	if cp.Served() != snap.Version {
		t.Errorf("after a good update: Served() = %d, want %d", cp.Served(), snap.Version)
	}
}
