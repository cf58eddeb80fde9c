package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/proxy/tap"
)

// openTap starts GET /tap on a sidecar's admin port; the subscription is
// in place once the response headers arrived.
func openTap(t *testing.T, p *proxytest.Proxy, query string) (*bufio.Scanner, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.AdminAddr()+"/tap?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("GET /tap: %s", resp.Status)
	}
	return bufio.NewScanner(resp.Body), func() { cancel(); resp.Body.Close() }
}

func readEvents(t *testing.T, sc *bufio.Scanner) []tap.Event {
	t.Helper()
	var out []tap.Event
	for sc.Scan() {
		var e tap.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the tap: %v", err)
	}
	return out
}

// TestTapWhileRequestsFlow taps both sidecars of client -> server ->
// go-httpbin while requests flow: each sees its side (outbound with the
// server's workload from the peer header, inbound with the client's), the
// filters apply, credentials are redacted, the trace ID is read from
// traceparent, and each stream ends after max.
func TestTapWhileRequestsFlow(t *testing.T) {
	m := startMesh(t, nil)
	c := m.client.HTTPClient(t)
	inSc, closeIn := openTap(t, m.server, "path_prefix=/anything&method=GET&max=2")
	defer closeIn()
	outSc, closeOut := openTap(t, m.client, "max=3")
	defer closeOut()

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hdr := map[string]string{"Authorization": "Bearer s3cr3t", "X-Auth-Token": "t0k3n", "Traceparent": traceparent, "X-Request-Id": "req-1"}
	if resp, body := get(t, c, "http://httpbin:8000/anything/1", hdr); resp.StatusCode != 200 {
		t.Fatalf("GET /anything/1: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, "http://httpbin:8000/status/418", nil); resp.StatusCode != 418 { // not /anything
		t.Fatalf("GET /status/418: %d", resp.StatusCode)
	}
	req, _ := http.NewRequestWithContext(ctxT(t), "POST", "http://httpbin:8000/anything/post", strings.NewReader("body"))
	resp, err := c.Do(req) // not GET
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, _ := get(t, c, "http://httpbin:8000/anything/2", nil); resp.StatusCode != 200 {
		t.Fatalf("GET /anything/2: %d", resp.StatusCode)
	}

	in := readEvents(t, inSc)
	if len(in) != 3 || in[2].Kind != tap.KindNote {
		t.Fatalf("inbound tap: want 2 events and a note, got %+v", in)
	}
	e := in[0]
	if e.Kind != tap.KindHTTP || e.Direction != tap.Inbound || e.Method != "GET" || e.Path != "/anything/1" || e.Status != 200 ||
		e.Source.Workload != "sleep" || e.Destination.Workload != "httpbin" || // no service: startMesh's inbound cluster has no metadata
		e.Source.Principal != tap.Unknown || e.ResponseFlags != "-" ||
		e.RequestID != "req-1" || e.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || e.UpstreamHost != m.appAddr || e.BytesSent == 0 {
		t.Errorf("inbound event: %+v src=%+v dst=%+v", e, e.Source, e.Destination)
	}
	if e.Headers["authorization"] != tap.Redacted || e.Headers["x-auth-token"] != tap.Redacted {
		t.Errorf("credentials not redacted: %v", e.Headers)
	}
	if _, ok := e.Headers["x-weft-peer"]; ok {
		t.Errorf("peer header in the event: %v", e.Headers)
	}
	if in[1].Path != "/anything/2" {
		t.Errorf("second inbound event: %+v", in[1])
	}

	out := readEvents(t, outSc)
	var paths []string
	for _, e := range out {
		if e.Kind == tap.KindNote {
			continue
		}
		paths = append(paths, e.Method+" "+e.Path)
		if e.Direction != tap.Outbound || e.Source.Workload != "sleep" || e.Destination.Workload != "httpbin" || e.Destination.Service != svcFQDN {
			t.Errorf("outbound event: %+v src=%+v dst=%+v", e, e.Source, e.Destination)
		}
	}
	if want := "GET /anything/1,GET /status/418,POST /anything/post"; strings.Join(paths, ",") != want {
		t.Errorf("outbound events %v, want %s", paths, want)
	}
	for _, raw := range []string{"s3cr3t", "t0k3n"} {
		for _, e := range append(in, out...) {
			b, _ := json.Marshal(e)
			if strings.Contains(string(b), raw) {
				t.Errorf("credential %q leaked in %s", raw, b)
			}
		}
	}
}
