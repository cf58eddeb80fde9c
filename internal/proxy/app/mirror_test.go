package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMirroring runs a gateway proxy whose config is Weft's translation
// of a VirtualService that mirrors (Istio's mirror and mirrorPercentage)
// to a second real backend: the mirror gets a copy of each mirrored
// request, body and headers included, with "-shadow" appended to its
// host; the client gets the primary's answer even while the mirror has
// not answered; a percentage mirrors about that share; and a body too
// large to keep is not mirrored, while the request itself goes through.
func TestMirroring(t *testing.T) {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "primary got %d bytes", len(b))
	}))
	t.Cleanup(primary.Close)
	type copyReq struct{ method, host, path, body, user string }
	copies := make(chan copyReq, 1000)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	var bigCopies atomic.Int64
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/all/big" {
			bigCopies.Add(1)
		}
		copies <- copyReq{r.Method, r.Host, r.URL.Path, string(b), r.Header.Get("X-User")}
		if r.URL.Path == "/all/slow" {
			<-release // answers only when the test says so
		}
		io.WriteString(w, "mirror ok")
	}))
	t.Cleanup(mirror.Close)
	t.Cleanup(unblock) // runs first: Close waits for the blocked handler
	snap := meshModel(t, "mirror.yaml", gatewayYAML+serviceEntryYAML("shop", serverPort(primary))+serviceEntryYAML("shop-next", serverPort(mirror))+shopVirtualService+`  - match: [{uri: {prefix: /all}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    mirror: {host: shop-next.default.svc.cluster.local}
  - match: [{uri: {prefix: /half}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    mirror: {host: shop-next.default.svc.cluster.local}
    mirrorPercentage: {value: 50}
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
`)
	gw := startEnforcingGateway(t, snap)
	base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(t *testing.T, path, body string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Host = "shop.example.com:8080"
		req.Header.Set("X-User", "alice")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
		return string(b)
	}
	next := func(t *testing.T) copyReq {
		t.Helper()
		select {
		case c := <-copies:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("the mirror got no copy")
			return copyReq{}
		}
	}

	t.Run("a copy with body, headers and the shadow host", func(t *testing.T) {
		if got := post(t, "/all/items", "hello mirror"); got != "primary got 12 bytes" {
			t.Errorf("client got %q, want the primary's answer", got)
		}
		c := next(t)
		want := copyReq{"POST", "shop.example.com-shadow:8080", "/all/items", "hello mirror", "alice"}
		if c != want {
			t.Errorf("mirror got %+v, want %+v", c, want)
		}
	})
	t.Run("the client does not wait for the mirror", func(t *testing.T) {
		// The mirror holds this copy until released; the primary's
		// answer comes back meanwhile.
		if got := post(t, "/all/slow", "x"); got != "primary got 1 bytes" {
			t.Errorf("client got %q", got)
		}
		if c := next(t); c.path != "/all/slow" {
			t.Errorf("mirror got %+v", c)
		}
		unblock()
	})
	t.Run("a percentage", func(t *testing.T) {
		const n = 200
		for range n {
			post(t, "/half", "")
		}
		// Copies are sent after each answer: wait for the stragglers.
		got := 0
		for deadline := time.After(3 * time.Second); ; {
			select {
			case c := <-copies:
				if c.path == "/half" {
					got++
				}
				continue
			case <-deadline:
			}
			break
		}
		// Binomial(200, 0.5): 60 and 140 are 5.7 standard deviations out.
		if got < 60 || got > 140 {
			t.Errorf("%d of %d requests mirrored; want about half", got, n)
		}
	})
	t.Run("a body too large to keep", func(t *testing.T) {
		big := strings.Repeat("x", 200<<10)
		if got := post(t, "/all/big", big); got != fmt.Sprintf("primary got %d bytes", len(big)) {
			t.Errorf("client got %q", got)
		}
		// Two small ones after it are mirrored; by the second copy, a
		// copy of the large one would have arrived too.
		for _, p := range []string{"/all/small", "/all/small2"} {
			post(t, p, "s")
			for c := next(t); c.path != p; c = next(t) {
				if c.path != "/all/big" {
					t.Fatalf("mirror got %q, want %q", c.path, p)
				}
			}
		}
		if n := bigCopies.Load(); n != 0 {
			t.Errorf("the mirror got %d copies of a body too large to keep", n)
		}
	})
	t.Run("routes without a mirror", func(t *testing.T) {
		post(t, "/other", "o")
		post(t, "/all/marker", "m")
		if c := next(t); c.path != "/all/marker" {
			t.Errorf("mirror got %q; /other has no mirror", c.path)
		}
	})
	t.Run("copies end their requests", func(t *testing.T) {
		// Every copy has been answered: the mirror cluster's circuit
		// breaker counts no request in flight.
		const active = "outbound|80||shop-next.default.svc.cluster.local::rq_active::"
		deadline := time.Now().Add(5 * time.Second)
		for {
			var line string
			for _, l := range strings.Split(adminGet(t, gw, "/clusters"), "\n") {
				if strings.HasPrefix(l, active) {
					line = l
				}
			}
			if line == active+"0" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("mirror cluster: %q, want %s0", line, active)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
