package tap

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"weft.dev/weft/internal/proxy/peermeta"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFilterMatch(t *testing.T) {
	get := &Event{Kind: KindHTTP, Method: "GET", Path: "/reviews/0?x=1"}
	post := &Event{Kind: KindHTTP, Method: "POST", Path: "/ratings"}
	tcp := &Event{Kind: KindTCP, Authority: "db:5432"}
	note := &Event{Kind: KindNote}
	tests := []struct {
		name   string
		filter Filter
		want   []bool // get, post, tcp, note
	}{
		{"no filter", Filter{}, []bool{true, true, true, true}},
		{"path prefix", Filter{PathPrefix: "/reviews"}, []bool{true, false, false, true}},
		{"path prefix is a prefix, not a segment", Filter{PathPrefix: "/rev"}, []bool{true, false, false, true}},
		{"method any case", Filter{Method: "post"}, []bool{false, true, false, true}},
		{"both", Filter{PathPrefix: "/reviews", Method: "POST"}, []bool{false, false, false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []bool
			for _, e := range []*Event{get, post, tcp, note} {
				got = append(got, tc.filter.Match(e))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	long := strings.Repeat("a", MaxHeaderValue+10)
	tests := []struct {
		name, header, value, want string
	}{
		{"authorization", "Authorization", "Bearer abc", Redacted},
		{"proxy authorization", "Proxy-Authorization", "Basic dXNlcjpwYXNz", Redacted},
		{"cookie", "Cookie", "session=abc", Redacted},
		{"set-cookie", "Set-Cookie", "id=1", Redacted},
		{"api key", "X-Api-Key", "k", Redacted},
		{"token in name", "X-Auth-Token", "t", Redacted},
		{"secret in name", "X-Client-Secret", "s", Redacted},
		{"password in name", "X-Password", "p", Redacted},
		{"bearer value under another name", "X-Forwarded-Auth", "Bearer eyJ", Redacted},
		{"basic value", "X-Upstream", "basic Zm9v", Redacted},
		{"plain", "User-Agent", "curl/8", "curl/8"},
		{"long value cut", "X-Long", long, long[:MaxHeaderValue] + "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Redact(tc.header, tc.value); got != tc.want {
				t.Errorf("Redact(%q, %q) = %q, want %q", tc.header, tc.value, got, tc.want)
			}
		})
	}
}

func TestHeadersRedactedAndBounded(t *testing.T) {
	h := http.Header{
		"Authorization": {"Bearer secret-value"},
		"Cookie":        {"a=1", "b=2"},
		"Accept":        {"text/html", "application/json"},
	}
	want := map[string]string{"authorization": Redacted, "cookie": Redacted, "accept": "text/html, application/json"}
	if diff := cmp.Diff(want, Headers(h)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	many := http.Header{}
	for i := range MaxHeaders + 5 {
		many.Set("X-H"+strings.Repeat("x", i), "v")
	}
	if n := len(Headers(many)); n != MaxHeaders {
		t.Errorf("kept %d headers, want %d", n, MaxHeaders)
	}
	if Headers(nil) != nil {
		t.Error("Headers(nil) is not nil")
	}
}

func TestTraceID(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"w3c", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"empty", "", ""},
		{"all zero", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"upper case is invalid", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"short", "00-4bf9-01", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TraceID(tc.in); got != tc.want {
				t.Errorf("TraceID(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHubInactiveWithoutSubscribers(t *testing.T) {
	var nilHub *Hub
	if nilHub.Active() {
		t.Error("nil hub is active")
	}
	nilHub.Publish(&Event{}) // must not panic
	h := NewHub("p", peermeta.Workload{})
	if h.Active() {
		t.Error("new hub is active")
	}
	s := h.Subscribe(Filter{}, 1)
	if !h.Active() {
		t.Error("hub with a subscriber is not active")
	}
	h.Unsubscribe(s)
	h.Unsubscribe(s)
	if h.Active() {
		t.Error("hub is active after the last unsubscribe")
	}
}

// TestHubDropsAndCounts fills a subscriber's queue: Publish never blocks,
// the overflow is counted, and the count is reported once.
func TestHubDropsAndCounts(t *testing.T) {
	h := NewHub("p", peermeta.Workload{})
	slow := h.Subscribe(Filter{}, 2)
	other := h.Subscribe(Filter{Method: "POST"}, 2)
	defer h.Unsubscribe(slow)
	defer h.Unsubscribe(other)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			h.Publish(&Event{Kind: KindHTTP, Method: "GET"})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a full queue")
	}
	if got := slow.Dropped(); got != 8 {
		t.Errorf("dropped %d, want 8", got)
	}
	if got := other.Dropped(); got != 0 {
		t.Errorf("a subscriber whose filter matched nothing dropped %d", got)
	}
	if got := slow.TakeDropped(); got != 8 {
		t.Errorf("TakeDropped = %d, want 8", got)
	}
	if got := slow.TakeDropped(); got != 0 {
		t.Errorf("second TakeDropped = %d, want 0", got)
	}
}

func TestEnds(t *testing.T) {
	h := NewHub("reviews-v2-0", peermeta.Workload{Name: "reviews-v2", Namespace: "default"})
	peer := peermeta.Workload{Name: "productpage-v1", Namespace: "default"}
	var in, out Event
	h.Ends(&in, true, peer, "reviews.default.svc.cluster.local")
	h.Ends(&out, false, peermeta.Workload{}, "ratings.default.svc.cluster.local")
	want := []Event{
		{Proxy: "reviews-v2-0", Direction: Inbound,
			Source:      &Endpoint{Workload: "productpage-v1", Namespace: "default", Principal: Unknown},
			Destination: &Endpoint{Workload: "reviews-v2", Namespace: "default", Service: "reviews.default.svc.cluster.local", Principal: Unknown}},
		{Proxy: "reviews-v2-0", Direction: Outbound,
			Source:      &Endpoint{Workload: "reviews-v2", Namespace: "default", Principal: Unknown},
			Destination: &Endpoint{Workload: Unknown, Namespace: Unknown, Service: "ratings.default.svc.cluster.local", Principal: Unknown}},
	}
	if diff := cmp.Diff(want, []Event{in, out}); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// readLines reads NDJSON events from body until it ends.
func readLines(t *testing.T, sc *bufio.Scanner) []Event {
	t.Helper()
	var out []Event
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestHandlerStreamsFiltersAndStops serves /tap: events that match are
// streamed, the stream ends after max with a final note carrying the
// drops, and the subscription is gone afterwards.
func TestHandlerStreamsFiltersAndStops(t *testing.T) {
	h := NewHub("p", peermeta.Workload{})
	srv := httptest.NewServer(Handler(h))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/tap?path_prefix=/reviews&method=get&max=2", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	for !h.Active() {
		select {
		case <-ctx.Done():
			t.Fatal("no subscriber")
		case <-time.After(time.Millisecond):
		}
	}
	h.Publish(&Event{Kind: KindHTTP, Method: "GET", Path: "/ratings/1"}) // filtered out
	h.Publish(&Event{Kind: KindTCP})                                     // filtered out
	h.Publish(&Event{Kind: KindHTTP, Method: "GET", Path: "/reviews/1", Status: 200})
	h.Publish(&Event{Kind: KindHTTP, Method: "GET", Path: "/reviews/2", Status: 503})
	h.Publish(&Event{Kind: KindHTTP, Method: "GET", Path: "/reviews/3", Status: 200}) // after max
	got := readLines(t, bufio.NewScanner(resp.Body))
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 2 events and a note: %+v", len(got), got)
	}
	if got[0].Path != "/reviews/1" || got[1].Path != "/reviews/2" || got[2].Kind != KindNote {
		t.Errorf("got %+v", got)
	}
	if got[2].Note != "max events reached" {
		t.Errorf("final note %q", got[2].Note)
	}
	for h.Active() {
		select {
		case <-ctx.Done():
			t.Fatal("subscriber still registered after the stream ended")
		case <-time.After(time.Millisecond):
		}
	}
}

// TestStreamReportsDrops delivers events to a subscriber whose queue
// overflowed: the next event carries the drop count.
func TestStreamReportsDrops(t *testing.T) {
	h := NewHub("p", peermeta.Workload{})
	sub := h.Subscribe(Filter{}, 1)
	defer h.Unsubscribe(sub)
	for i := range 4 {
		h.Publish(&Event{Kind: KindHTTP, Status: 200 + i})
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/tap?max=1", nil)
	Stream(rec, req, sub, 1)
	got := readLines(t, bufio.NewScanner(rec.Body))
	if len(got) != 2 {
		t.Fatalf("got %+v", got)
	}
	if got[0].Status != 200 || got[0].Dropped != 3 {
		t.Errorf("first event: status %d dropped %d, want 200 and 3", got[0].Status, got[0].Dropped)
	}
	if got[1].Kind != KindNote || got[1].Dropped != 0 {
		t.Errorf("final note %+v", got[1])
	}
}

func TestHubCloseEndsStreams(t *testing.T) {
	h := NewHub("p", peermeta.Workload{})
	sub := h.Subscribe(Filter{}, 1)
	done := make(chan struct{})
	rec := httptest.NewRecorder()
	go func() {
		defer close(done)
		Stream(rec, httptest.NewRequest("GET", "/tap", nil), sub, 0)
	}()
	h.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end when the hub closed")
	}
	if !strings.Contains(rec.Body.String(), "proxy shutting down") {
		t.Errorf("no final note: %q", rec.Body.String())
	}
	if s := h.Subscribe(Filter{}, 1); s == nil {
		t.Fatal("nil subscriber")
	} else {
		select {
		case <-s.Done():
		default:
			t.Error("subscriber of a closed hub is not done")
		}
	}
}

func TestHandlerRefusesBadInput(t *testing.T) {
	h := NewHub("p", peermeta.Workload{})
	tests := []struct {
		name, remote, url string
		want              int
	}{
		{"not loopback", "192.0.2.1:1234", "/tap", http.StatusForbidden},
		{"bad max", "127.0.0.1:1234", "/tap?max=x", http.StatusBadRequest},
		{"negative max", "[::1]:1234", "/tap?max=-1", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.url, nil)
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			Handler(h).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.want, rec.Body.String())
			}
		})
	}
}

func BenchmarkActiveIdle(b *testing.B) {
	h := NewHub("p", peermeta.Workload{})
	b.ReportAllocs()
	for b.Loop() {
		if h.Active() {
			b.Fatal("active")
		}
	}
}
