package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/tap"
)

func TestTapTargets(t *testing.T) {
	ins := []*model.Instance{
		{Name: "reviews-v1-0", Namespace: "default", Workload: "reviews-v1", Service: "reviews", AdminPort: 1},
		{Name: "reviews-v2-0", Namespace: "default", Workload: "reviews-v2", Service: "reviews", AdminPort: 2},
		{Name: "ratings-v1-0", Namespace: "default", Workload: "ratings-v1", Service: "ratings", AdminPort: 3},
		{Name: "nosidecar-0", Namespace: "default", Workload: "nosidecar", Service: "reviews"},
		{Name: "reviews-v1-0", Namespace: "staging", Workload: "reviews-v1", Service: "reviews", AdminPort: 4},
	}
	tests := []struct {
		target string
		want   []string
	}{
		{"reviews", []string{"default/reviews-v1-0", "default/reviews-v2-0", "staging/reviews-v1-0"}},
		{"reviews.default", []string{"default/reviews-v1-0", "default/reviews-v2-0"}},
		{"reviews.staging.svc.cluster.local", []string{"staging/reviews-v1-0"}},
		{"reviews-v2", []string{"default/reviews-v2-0"}},
		{"reviews-v1.staging", []string{"staging/reviews-v1-0"}},
		{"ratings-v1-0", []string{"default/ratings-v1-0"}},
		{"ratings-v1-0.default", []string{"default/ratings-v1-0"}},
		{"ratings-v1-0.staging", nil},
		{"nosidecar", nil},
		{"nosuch", nil},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			var got []string
			for _, in := range tapTargets(ins, tc.target) {
				got = append(got, in.Namespace+"/"+in.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// fakeSidecar serves a real tap hub on a loopback admin port.
func fakeSidecar(t *testing.T, name, workload string) (*tap.Hub, uint32) {
	t.Helper()
	hub := tap.NewHub(name, peermeta.Workload{Name: workload, Namespace: "default"})
	srv := httptest.NewServer(tap.Handler(hub))
	t.Cleanup(func() { hub.Close(); srv.Close() })
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	return hub, uint32(port)
}

func waitActive(t *testing.T, ctx context.Context, want bool, hubs ...*tap.Hub) {
	t.Helper()
	for _, h := range hubs {
		for h.Active() != want {
			select {
			case <-ctx.Done():
				t.Fatalf("hub never became active=%v", want)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// TestTapMergesSidecarStreams registers two instances of reviews with
// fake sidecars, taps the service through the admin API, and checks the
// merged stream: events from both, the filters passed on, max honoured,
// and every sidecar subscription closed at the end.
func TestTapMergesSidecarStreams(t *testing.T) {
	cp := startCP(t, t.TempDir())
	h1, p1 := fakeSidecar(t, "reviews-v1-0", "reviews-v1")
	h2, p2 := fakeSidecar(t, "reviews-v2-0", "reviews-v2")
	h3, p3 := fakeSidecar(t, "ratings-v1-0", "ratings-v1")
	cp.Instances().Set(
		&model.Instance{Name: "reviews-v1-0", Namespace: "default", Workload: "reviews-v1", Service: "reviews", AdminPort: p1},
		&model.Instance{Name: "reviews-v2-0", Namespace: "default", Workload: "reviews-v2", Service: "reviews", AdminPort: p2},
		&model.Instance{Name: "ratings-v1-0", Namespace: "default", Workload: "ratings-v1", Service: "ratings", AdminPort: p3},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+cp.AdminAddr()+"/api/v1/tap?target=reviews&method=GET&path_prefix=/reviews&max=4", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %s: %s", resp.Status, b)
	}
	waitActive(t, ctx, true, h1, h2)
	if h3.Active() {
		t.Error("ratings' sidecar is tapped for target reviews")
	}
	ev := func(h *tap.Hub, method, path string) {
		e := &tap.Event{Kind: tap.KindHTTP, Method: method, Path: path, Status: 200}
		h.Ends(e, true, peermeta.Workload{Name: "productpage-v1", Namespace: "default"}, "reviews.default.svc.cluster.local")
		h.Publish(e)
	}
	ev(h1, "POST", "/reviews/0") // filtered by the sidecar
	ev(h1, "GET", "/health")     // filtered by the sidecar
	ev(h1, "GET", "/reviews/1")
	ev(h2, "GET", "/reviews/2")
	ev(h1, "GET", "/reviews/3")
	ev(h2, "GET", "/reviews/4")

	seen := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		var e tap.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if e.Kind == tap.KindNote {
			t.Errorf("unexpected note %+v", e)
			continue
		}
		n++
		seen[e.Proxy] = true
		if !strings.HasPrefix(e.Path, "/reviews/") || e.Method != "GET" || e.Source.Workload != "productpage-v1" {
			t.Errorf("event %+v", e)
		}
	}
	if n != 4 {
		t.Errorf("got %d events, want 4", n)
	}
	if !seen["reviews-v1-0"] || !seen["reviews-v2-0"] {
		t.Errorf("events came from %v, want both reviews sidecars", seen)
	}
	waitActive(t, ctx, false, h1, h2)
}

// TestTapCallerGoneEndsSidecarStreams cancels the caller: the sidecar
// subscriptions end.
func TestTapCallerGoneEndsSidecarStreams(t *testing.T) {
	cp := startCP(t, t.TempDir())
	h, p := fakeSidecar(t, "details-v1-0", "details-v1")
	cp.Instances().Set(&model.Instance{Name: "details-v1-0", Namespace: "default", Workload: "details-v1", Service: "details", AdminPort: p})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rctx, rcancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "GET", "http://"+cp.AdminAddr()+"/api/v1/tap?target=details-v1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, ctx, true, h)
	rcancel()
	resp.Body.Close()
	waitActive(t, ctx, false, h)
}

func TestTapErrors(t *testing.T) {
	cp := startCP(t, t.TempDir())
	tests := []struct {
		name, query string
		status      int
		want        string
	}{
		{"no match", "target=nosuch", 404, `no running instance of service or workload "nosuch"; see weft status`},
		{"no target", "", 400, "missing ?target="},
		{"bad max", "target=x&max=lots", 400, `max "lots"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get("http://" + cp.AdminAddr() + "/api/v1/tap?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e errorBody
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tc.status || !strings.Contains(e.Error, tc.want) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, e.Error, tc.status, tc.want)
			}
		})
	}
}
