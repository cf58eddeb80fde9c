package upstream

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
)

func endpoints(weights ...uint32) *proxyconfig.Endpoints {
	loc := proxyconfig.Locality{Weight: 1}
	for i, w := range weights {
		loc.Endpoints = append(loc.Endpoints, proxyconfig.Endpoint{Address: fmt.Sprintf("10.0.0.%d:80", i), Weight: w})
	}
	return &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{loc}}
}

func cluster(lb proxyconfig.LBPolicy) *proxyconfig.Cluster {
	return &proxyconfig.Cluster{Name: "c", Type: proxyconfig.DiscoveryEDS, EDSServiceName: "c", LB: lb, Thresholds: proxyconfig.DefaultThresholds,
		ConnectTimeout: 1e9, IdleTimeout: 1e9, RingMinSize: 1024, RingMaxSize: 8 << 20, MaglevTableSize: 65537, LeastRequestChoices: 2}
}

func pickCounts(t *testing.T, c *Cluster, n int, hash func(i int) (uint64, bool)) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := range n {
		h, ok := hash(i)
		host, err := c.Pick("", h, ok)
		if err != nil {
			t.Fatal(err)
		}
		out[host.Addr]++
	}
	return out
}

func noHash(int) (uint64, bool) { return 0, false }

func TestWeightedPolicies(t *testing.T) {
	tests := []struct {
		name    string
		lb      proxyconfig.LBPolicy
		weights []uint32
		check   func(t *testing.T, got map[string]int)
	}{
		{"round robin weighted exactly", proxyconfig.LBRoundRobin, []uint32{1, 3}, func(t *testing.T, got map[string]int) {
			if diff := cmp.Diff(map[string]int{"10.0.0.0:80": 1000, "10.0.0.1:80": 3000}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
		{"random weighted", proxyconfig.LBRandom, []uint32{1, 3}, share("10.0.0.1:80", 0.70, 0.80)},
		{"least request weighted", proxyconfig.LBLeastRequest, []uint32{1, 3}, share("10.0.0.1:80", 0.60, 0.90)},
		{"ring hash weighted", proxyconfig.LBRingHash, []uint32{1, 3}, share("10.0.0.1:80", 0.60, 0.90)},
		{"maglev weighted", proxyconfig.LBMaglev, []uint32{1, 3}, share("10.0.0.1:80", 0.65, 0.85)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManager()
			c := m.Update(map[string]*proxyconfig.Cluster{"c": cluster(tc.lb)}, map[string]*proxyconfig.Endpoints{"c": endpoints(tc.weights...)})["c"]
			tc.check(t, pickCounts(t, c, 4000, func(i int) (uint64, bool) { return router.HashString(fmt.Sprint(i)), true }))
		})
	}
}

func share(addr string, lo, hi float64) func(*testing.T, map[string]int) {
	return func(t *testing.T, got map[string]int) {
		total := 0
		for _, n := range got {
			total += n
		}
		if s := float64(got[addr]) / float64(total); s < lo || s > hi {
			t.Errorf("%s got %.2f of picks, want [%.2f, %.2f]: %v", addr, s, lo, hi, got)
		}
	}
}

func TestConsistentHashingIsStableAcrossUpdates(t *testing.T) {
	for _, lb := range []proxyconfig.LBPolicy{proxyconfig.LBRingHash, proxyconfig.LBMaglev} {
		t.Run(lb.String(), func(t *testing.T) {
			m := NewManager()
			c := m.Update(map[string]*proxyconfig.Cluster{"c": cluster(lb)}, map[string]*proxyconfig.Endpoints{"c": endpoints(1, 1, 1, 1)})["c"]
			before := map[int]string{}
			for i := range 1000 {
				h, _ := c.Pick("", router.HashString(fmt.Sprint(i)), true)
				before[i] = h.Addr
			}
			// Adding a fifth host moves only a fraction of the keys.
			m.Update(map[string]*proxyconfig.Cluster{"c": cluster(lb)}, map[string]*proxyconfig.Endpoints{"c": endpoints(1, 1, 1, 1, 1)})
			moved := 0
			for i := range 1000 {
				h, _ := c.Pick("", router.HashString(fmt.Sprint(i)), true)
				if h.Addr != before[i] {
					moved++
				}
			}
			if moved > 350 {
				t.Errorf("%d of 1000 keys moved after adding one host of five", moved)
			}
		})
	}
}

func TestHealthPrioritiesAndLocalities(t *testing.T) {
	eps := &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{
		{Name: "a", Weight: 1, Priority: 0, Endpoints: []proxyconfig.Endpoint{{Address: "p0:80", Weight: 1, Health: proxyconfig.HealthUnhealthy}}},
		{Name: "b", Weight: 3, Priority: 1, Endpoints: []proxyconfig.Endpoint{{Address: "b1:80", Weight: 1}, {Address: "b2:80", Weight: 1, Health: proxyconfig.HealthDraining}}},
		{Name: "c", Weight: 1, Priority: 1, Endpoints: []proxyconfig.Endpoint{{Address: "c1:80", Weight: 5}}},
	}}
	m := NewManager()
	c := m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBRoundRobin)}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	got := pickCounts(t, c, 400, noHash)
	if diff := cmp.Diff(map[string]int{"b1:80": 300, "c1:80": 100}, got); diff != "" {
		t.Errorf("priority 0 is unhealthy: traffic should follow locality weights 3:1 in priority 1 (-want +got):\n%s", diff)
	}
	m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBRoundRobin)}, map[string]*proxyconfig.Endpoints{"c": {ClusterName: "c"}})
	if _, err := c.Pick("", 0, false); err != ErrNoHealthyUpstream {
		t.Errorf("empty cluster: %v, want ErrNoHealthyUpstream", err)
	}
}

func TestCircuitBreakers(t *testing.T) {
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.Thresholds = proxyconfig.Thresholds{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 2, MaxRetries: 1}
	c := NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": endpoints(1)})["c"]
	if err := c.StartRequest(true); err != nil {
		t.Fatal(err)
	}
	if err := c.StartRequest(true); err != nil {
		t.Fatal(err)
	}
	if err := c.StartRequest(true); err != ErrOverflow {
		t.Errorf("third request: %v, want overflow", err)
	}
	c.EndRequest()
	c.EndRequest()
	if !c.StartRetry() || c.StartRetry() {
		t.Errorf("max_retries 1 not enforced")
	}
	c.EndRetry()
	// With the only connection busy, one request may wait; the next overflows.
	c.conns.Store(1)
	if err := c.StartRequest(false); err != nil {
		t.Fatal(err)
	}
	if err := c.StartRequest(false); err != nil {
		t.Fatal(err)
	}
	if err := c.StartRequest(false); err != ErrOverflow {
		t.Errorf("pending overflow: %v", err)
	}
	if c.Overflows.Load() != 3 {
		t.Errorf("overflows = %d, want 3", c.Overflows.Load())
	}
}

func TestOriginalDst(t *testing.T) {
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.Type = proxyconfig.DiscoveryOriginalDst
	c := NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, nil)["c"]
	h, err := c.Pick("example.com:8080", 0, false)
	if err != nil || h.Addr != "example.com:8080" {
		t.Fatalf("Pick = %v, %v", h, err)
	}
	if _, err := c.Pick("", 0, false); err != ErrNoHealthyUpstream {
		t.Errorf("no target: %v", err)
	}
}

// TestDialRefusesOwnAddresses: a cluster of a manager that knows the
// proxy's own listeners refuses to connect to one, by address or by a
// name that resolves to it (ErrLoop), and connects elsewhere.
func TestDialRefusesOwnAddresses(t *testing.T) {
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ownAP := netip.MustParseAddrPort(own.Addr().String())
	m := NewManager()
	m.SetOwnAddresses(func(ap netip.AddrPort) bool { return ap == ownAP })
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.Type = proxyconfig.DiscoveryOriginalDst
	c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, nil)["c"]
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, addr := range []string{own.Addr().String(), net.JoinHostPort("localhost", fmt.Sprint(ownAP.Port()))} {
		if conn, err := c.Dial(ctx, addr); !errors.Is(err, ErrLoop) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("Dial(%s) = %v; want ErrLoop", addr, err)
		}
	}
	conn, err := c.Dial(ctx, other.Addr().String())
	if err != nil {
		t.Fatalf("Dial(another address): %v", err)
	}
	conn.Close()
	// The same through TLS origination (a DestinationRule's SIMPLE
	// tls on a passthrough cluster): the raw dial refuses it too.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsCfg := cluster(proxyconfig.LBRoundRobin)
	tlsCfg.Type = proxyconfig.DiscoveryOriginalDst
	tlsCfg.TLS = &proxyconfig.UpstreamTLS{TLSCommon: proxyconfig.TLSCommon{CAFile: ca}, SNI: "example.com"}
	withTLS := m.Update(map[string]*proxyconfig.Cluster{"c": cfg, "t": tlsCfg}, nil)["t"]
	if conn, err := withTLS.Dial(ctx, own.Addr().String()); !errors.Is(err, ErrLoop) {
		if conn != nil {
			conn.Close()
		}
		t.Errorf("TLS Dial(%s) = %v; want ErrLoop", own.Addr(), err)
	}
	if conn, err := withTLS.Dial(ctx, srv.Listener.Addr().String()); err != nil {
		t.Errorf("TLS Dial(another address): %v", err)
	} else {
		conn.Close()
	}
	// A cluster whose endpoints the control plane gives may dial the
	// proxy's own listener (an app calling its own service).
	static := m.Update(map[string]*proxyconfig.Cluster{"c": cfg, "s": cluster(proxyconfig.LBRoundRobin)}, nil)["s"]
	if conn, err := static.Dial(ctx, own.Addr().String()); err != nil {
		t.Errorf("a STATIC cluster's Dial to the proxy's own address: %v", err)
	} else {
		conn.Close()
	}
}

// TestHostsPersistAcrossUpdates: an address that stays keeps its Host
// (and counters) through endpoint updates, one that goes is no longer
// kept in the pools, and an address in two localities is one Host; for
// clusters of few hosts (scanned) and of many (indexed).
func TestHostsPersistAcrossUpdates(t *testing.T) {
	for _, n := range []int{3, manyHosts + 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			eps := func(addrs ...string) *proxyconfig.Endpoints {
				loc := proxyconfig.Locality{Weight: 1}
				for _, a := range addrs {
					loc.Endpoints = append(loc.Endpoints, proxyconfig.Endpoint{Address: a, Weight: 1})
				}
				return &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{loc}}
			}
			var addrs []string
			for i := range n {
				addrs = append(addrs, fmt.Sprintf("10.0.0.%d:80", i))
			}
			m := NewManager()
			c := m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBRoundRobin)}, map[string]*proxyconfig.Endpoints{"c": eps(addrs...)})["c"]
			before := map[string]*Host{}
			for _, hs := range c.Hosts() {
				hs.Host.Start()
				hs.Host.Done(false)
				before[hs.Host.Addr] = hs.Host
			}
			// The first address goes, a new one comes, and the second is
			// also listed in another locality.
			next := eps(append(append([]string{}, addrs[1:]...), "10.0.1.1:80")...)
			next.Localities = append(next.Localities, proxyconfig.Locality{Weight: 1, Name: "b", Endpoints: []proxyconfig.Endpoint{{Address: addrs[1], Weight: 1}}})
			if c2 := m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBRoundRobin)}, map[string]*proxyconfig.Endpoints{"c": next})["c"]; c2 != c {
				t.Fatal("the cluster was replaced, not updated")
			}
			hosts := c.Hosts()
			if len(hosts) != n+1 {
				t.Fatalf("%d host statuses, want %d", len(hosts), n+1)
			}
			byAddr := map[string]*Host{}
			for _, hs := range hosts {
				if h := byAddr[hs.Host.Addr]; h != nil && h != hs.Host {
					t.Fatalf("%s is two hosts", hs.Host.Addr)
				}
				byAddr[hs.Host.Addr] = hs.Host
			}
			for _, a := range addrs[1:] {
				if byAddr[a] != before[a] || byAddr[a].Total() != 1 {
					t.Fatalf("%s: host not kept across the update (total %d)", a, byAddr[a].Total())
				}
			}
			if h := byAddr["10.0.1.1:80"]; h == nil || h.Total() != 0 {
				t.Fatalf("new host: %+v", h)
			}
			st := c.st.Load()
			if st.keeps(addrs[0]) || !st.keeps(addrs[1]) || !st.keeps("10.0.1.1:80") {
				t.Fatalf("keeps: removed %v, kept %v, new %v", st.keeps(addrs[0]), st.keeps(addrs[1]), st.keeps("10.0.1.1:80"))
			}
			for range 4 * n {
				h, err := c.Pick("", 0, false)
				if err != nil {
					t.Fatal(err)
				}
				if h.Addr == addrs[0] {
					t.Fatalf("picked the removed host %s", h.Addr)
				}
				if byAddr[h.Addr] != h {
					t.Fatalf("picked %s, not the cluster's host for it", h.Addr)
				}
			}
		})
	}
}

// TestTLSContextErrorAtFirstUse: a cluster's TLS pools are made on first
// use; a context that cannot be built (a CA file that is not there) fails
// each request and TCP dial with a DialError that names the cause, and
// leaves the cluster's other state alone.
func TestTLSContextErrorAtFirstUse(t *testing.T) {
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.TLS = &proxyconfig.UpstreamTLS{TLSCommon: proxyconfig.TLSCommon{CAFile: filepath.Join(t.TempDir(), "missing-ca.pem")}}
	m := NewManager()
	c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": endpoints(1)})["c"]
	if b := c.tls.Load().all.built.Load(); b != nil {
		t.Fatal("TLS pools made before first use")
	}
	for _, http2 := range []bool{false, true} {
		req, _ := http.NewRequest("GET", "http://10.0.0.0:80/", nil)
		_, err := c.Transport(http2).RoundTrip(req)
		var de *DialError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "missing-ca.pem") {
			t.Fatalf("http2=%v: RoundTrip error %v, want a DialError naming the CA file", http2, err)
		}
	}
	_, err := c.Dial(t.Context(), "10.0.0.0:80")
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "missing-ca.pem") {
		t.Fatalf("Dial error %v, want a DialError naming the CA file", err)
	}
	if c.ActiveConnections() != 0 {
		t.Fatalf("%d connections counted after failed dials", c.ActiveConnections())
	}
	c.CloseIdle() // must not panic on pools that failed
	m.Update(nil, nil)
}

// TestTLSContextRetiredBeforeFirstUse: a request that found a TLS context
// before an update retired it, and makes the context's pools only then,
// does not leave its connection pooled (holding a max_connections slot
// with settings that are gone): it closes when the request ends.
func TestTLSContextRetiredBeforeFirstUse(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := srv.Listener.Addr().String()
	eps := &proxyconfig.Endpoints{ClusterName: "c", Localities: []proxyconfig.Locality{{Weight: 1, Endpoints: []proxyconfig.Endpoint{{Address: addr, Weight: 1}}}}}
	withTLS := cluster(proxyconfig.LBRoundRobin)
	withTLS.TLS = &proxyconfig.UpstreamTLS{TLSCommon: proxyconfig.TLSCommon{CAFile: ca}}
	m := NewManager()
	c := m.Update(map[string]*proxyconfig.Cluster{"c": withTLS}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	p := c.tls.Load().poolsFor(addr) // what a request in flight holds
	if p == nil || p.built.Load() != nil {
		t.Fatal("want a TLS context not made yet")
	}
	m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBRoundRobin)}, map[string]*proxyconfig.Endpoints{"c": eps}) // plaintext now
	b := p.pools()
	if b.err != nil {
		t.Fatal(b.err)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	resp, err := b.h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	resp.Body.Close()
	if n := c.ActiveConnections(); n != 0 {
		t.Fatalf("%d connections open after the request on a retired context, want 0", n)
	}
}

// An ORIGINAL_DST cluster makes a host for every destination it is asked
// for; hosts unused for the cleanup interval are forgotten (a host with
// a request in flight is kept), so the map does not grow with every
// destination ever seen.
func TestOriginalDstHostsAreForgotten(t *testing.T) {
	cfg := cluster(proxyconfig.LBRoundRobin)
	cfg.Type, cfg.CleanupInterval = proxyconfig.DiscoveryOriginalDst, 50*time.Millisecond
	c := NewManager().Update(map[string]*proxyconfig.Cluster{"passthrough": cfg}, nil)["passthrough"]
	busy, err := c.Pick("192.0.2.1:443", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	busy.Start()
	for i := range 1000 {
		if _, err := c.Pick(fmt.Sprintf("203.0.%d.%d:443", i/256, i%256), 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.Hosts()); n != 1001 {
		t.Fatalf("%d hosts, want 1001 while in use", n)
	}
	time.Sleep(200 * time.Millisecond) // past the cleanup interval
	if _, err := c.Pick("198.51.100.1:443", 0, false); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range c.Hosts() {
		got = append(got, h.Host.Addr)
	}
	slices.Sort(got)
	if want := []string{"192.0.2.1:443", "198.51.100.1:443"}; !slices.Equal(got, want) {
		t.Errorf("%d hosts after the cleanup interval (%v...), want %v (the one with a request in flight, and the one just picked)", len(got), got[:min(len(got), 3)], want)
	}
	busy.Done(false)
}

// An update with the config and endpoints a cluster already has (the same
// parsed objects) leaves its state as it is; new endpoints, a new config
// or a new identity rebuild it.
func TestUpdateSkipsUnchangedClusters(t *testing.T) {
	m := NewManager()
	cfg, eps := cluster(proxyconfig.LBRoundRobin), endpoints(1, 1)
	c := m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"]
	st := c.st.Load()
	if m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": eps})["c"] != c || c.st.Load() != st {
		t.Fatal("an update with the same config and endpoints rebuilt the cluster's state")
	}
	m.Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": endpoints(1, 1, 1)})
	if c.st.Load() == st || len(c.st.Load().hosts) != 3 {
		t.Fatalf("new endpoints: %d hosts, state rebuilt %v; want 3, rebuilt", len(c.st.Load().hosts), c.st.Load() != st)
	}
	st = c.st.Load()
	m.Update(map[string]*proxyconfig.Cluster{"c": cluster(proxyconfig.LBLeastRequest)}, map[string]*proxyconfig.Endpoints{"c": c.applied.eps})
	if c.st.Load() == st || c.st.Load().cfg.LB != proxyconfig.LBLeastRequest {
		t.Fatal("a new config did not rebuild the cluster's state")
	}
	st = c.st.Load()
	m.SetIdentity(noIdentity{})
	m.Update(map[string]*proxyconfig.Cluster{"c": c.applied.cfg}, map[string]*proxyconfig.Endpoints{"c": c.applied.eps})
	if c.st.Load() == st {
		t.Fatal("a new identity did not rebuild the cluster's state")
	}
}
