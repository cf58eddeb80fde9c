// Package tap is the sidecar's live tap: a hub that hands the metadata of
// every finished HTTP request and closed TCP connection to whoever is
// watching (the admin API's GET /tap, which `weft tap` reaches through the
// control plane).
//
// The request path pays one atomic load when nobody is tapping (Hub.Active).
// With subscribers, each event goes into a bounded per-subscriber channel
// without blocking: when a subscriber's channel is full the event is
// dropped for that subscriber and counted, and the count reaches it on its
// next event (Event.Dropped) or in the final note. Bodies are never
// captured; request headers are included with credential-like values
// redacted (Redact).
package tap

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/peermeta"
)

// Event kinds.
const (
	KindHTTP = "http"
	KindTCP  = "tcp"
	// KindNote is not traffic: a message about the stream itself (drops,
	// its end, a sidecar that could not be reached).
	KindNote = "note"
)

// Directions.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Unknown names a peer or principal the sidecar cannot know.
const Unknown = "unknown"

// Endpoint is one end of a request or connection.
type Endpoint struct {
	// Workload is the workload's name ("reviews-v2"); "unknown" when the
	// peer sent no metadata (TCP, or a client outside the mesh).
	Workload string `json:"workload"`
	// Namespace is the workload's namespace; "unknown" like Workload.
	Namespace string `json:"namespace"`
	// Service is the destination service's host name
	// ("reviews.default.svc.cluster.local"); set on the destination only.
	Service string `json:"service,omitempty"`
	// Principal is the SPIFFE identity; "unknown" until mTLS.
	Principal string `json:"principal"`
}

// Event is one finished request, closed connection or note. Once
// published it is shared by every subscriber and must not be changed.
type Event struct {
	// Kind is "http", "tcp" or "note".
	Kind string `json:"kind"`
	// Time is when the request or connection started.
	Time time.Time `json:"time"`
	// Proxy is the instance whose sidecar saw it ("reviews-v2-0").
	Proxy string `json:"proxy,omitempty"`
	// Direction is "inbound" (to the app behind the sidecar) or
	// "outbound" (from it).
	Direction string `json:"direction,omitempty"`
	// Source and Destination are the two ends.
	Source      *Endpoint `json:"source,omitempty"`
	Destination *Endpoint `json:"destination,omitempty"`
	// Protocol is the request's protocol ("HTTP/1.1", "HTTP/2", "TCP").
	Protocol string `json:"protocol,omitempty"`
	// Method, Authority and Path describe an HTTP request (Path with its
	// query); TCP events have only Authority (the target).
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`
	// Status is the HTTP response status (0 for TCP, or when none was
	// sent).
	Status int `json:"status,omitempty"`
	// GRPCStatus is a gRPC response's grpc-status, "" when none.
	GRPCStatus string `json:"grpc_status,omitempty"`
	// DurationMs is the time from arrival to end, in milliseconds.
	DurationMs float64 `json:"duration_ms"`
	// BytesReceived and BytesSent are body (HTTP) or stream (TCP) bytes
	// from and to the downstream.
	BytesReceived int64 `json:"bytes_received"`
	BytesSent     int64 `json:"bytes_sent"`
	// ResponseFlags are Envoy's response flags, "-" when none.
	ResponseFlags string `json:"response_flags,omitempty"`
	// UpstreamHost is the endpoint that served it; UpstreamCluster its
	// cluster.
	UpstreamHost    string `json:"upstream_host,omitempty"`
	UpstreamCluster string `json:"upstream_cluster,omitempty"`
	// RequestID is x-request-id.
	RequestID string `json:"request_id,omitempty"`
	// TraceID is the trace ID of a W3C traceparent, "" when none.
	TraceID string `json:"trace_id,omitempty"`
	// Headers are the request's headers with credential-like values
	// redacted (see Redact); at most MaxHeaders, values cut at
	// MaxHeaderValue bytes.
	Headers map[string]string `json:"headers,omitempty"`
	// Dropped counts the events this subscriber lost (its queue was full)
	// since the previous one it got.
	Dropped uint64 `json:"dropped,omitempty"`
	// Note says what a note is about.
	Note string `json:"note,omitempty"`
	// Error is set on a note about a failure.
	Error string `json:"error,omitempty"`
}

// Filter selects events. The zero value selects everything.
type Filter struct {
	// PathPrefix keeps HTTP requests whose path starts with it (TCP
	// events have no path and are left out when it is set).
	PathPrefix string
	// Method keeps HTTP requests with that method (any case); TCP events
	// are left out when it is set.
	Method string
}

// Match reports whether e passes the filter.
func (f *Filter) Match(e *Event) bool {
	if e.Kind == KindNote {
		return true
	}
	if f.PathPrefix != "" && (e.Kind != KindHTTP || !strings.HasPrefix(e.Path, f.PathPrefix)) {
		return false
	}
	if f.Method != "" && (e.Kind != KindHTTP || !strings.EqualFold(e.Method, f.Method)) {
		return false
	}
	return true
}

// DefaultQueue is a subscriber's queue length.
const DefaultQueue = 256

// Hub fans events out to subscribers. A nil *Hub is valid and never
// active. All methods are safe for concurrent use; Publish never blocks.
type Hub struct {
	proxy     string
	local     peermeta.Workload
	principal atomic.Pointer[string] // own SPIFFE ID (principal.go)

	// subs is copied on write: Publish reads it with one atomic load.
	subs   atomic.Pointer[[]*Subscriber]
	mu     sync.Mutex // serialises writers of subs, and closed
	closed bool
}

// NewHub returns a hub for the sidecar of instance proxy standing for
// the workload local.
func NewHub(proxy string, local peermeta.Workload) *Hub {
	return &Hub{proxy: proxy, local: local}
}

// Active reports whether anyone is tapping: one atomic load. The request
// path calls it before building an event.
func (h *Hub) Active() bool {
	if h == nil {
		return false
	}
	s := h.subs.Load()
	return s != nil && len(*s) > 0
}

// Publish hands e to every subscriber whose filter matches, without
// blocking: a full queue drops the event for that subscriber and counts
// it. e must not be changed afterwards.
func (h *Hub) Publish(e *Event) {
	if h == nil {
		return
	}
	s := h.subs.Load()
	if s == nil {
		return
	}
	for _, sub := range *s {
		if !sub.filter.Match(e) {
			continue
		}
		select {
		case sub.ch <- e:
		default:
			sub.dropped.Add(1)
		}
	}
}

// Subscribe adds a subscriber with a queue of queue events (DefaultQueue
// when <= 0). The caller must call Unsubscribe when done. On a closed hub
// the subscriber is returned already done.
func (h *Hub) Subscribe(f Filter, queue int) *Subscriber {
	if queue <= 0 {
		queue = DefaultQueue
	}
	sub := &Subscriber{filter: f, ch: make(chan *Event, queue), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(sub.done)
		return sub
	}
	old := h.subs.Load()
	var next []*Subscriber
	if old != nil {
		next = append(next, *old...)
	}
	next = append(next, sub)
	h.subs.Store(&next)
	return sub
}

// Unsubscribe removes sub; events already queued stay readable. Calling
// it twice is harmless.
func (h *Hub) Unsubscribe(sub *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.subs.Load()
	if old == nil {
		return
	}
	next := make([]*Subscriber, 0, len(*old))
	for _, s := range *old {
		if s != sub {
			next = append(next, s)
		}
	}
	h.subs.Store(&next)
}

// Close ends every subscription (their Done channels close) and refuses
// new ones; the proxy calls it when it shuts down, so that open taps do
// not hold the admin server.
func (h *Hub) Close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if old := h.subs.Load(); old != nil {
		for _, s := range *old {
			close(s.done)
		}
	}
	empty := []*Subscriber{}
	h.subs.Store(&empty)
}

// Subscriber is one tap. Its events are read from Events by one goroutine.
type Subscriber struct {
	filter  Filter
	ch      chan *Event
	done    chan struct{}
	dropped atomic.Uint64
	taken   uint64 // drops already reported; owned by the reader
}

// Events delivers matching events. It is never closed; watch Done.
func (s *Subscriber) Events() <-chan *Event { return s.ch }

// Done is closed when the hub closes.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Dropped is the number of events dropped so far for this subscriber.
func (s *Subscriber) Dropped() uint64 { return s.dropped.Load() }

// TakeDropped returns the drops not yet reported and marks them reported.
// Only the goroutine reading Events may call it.
func (s *Subscriber) TakeDropped() uint64 {
	d := s.dropped.Load()
	n := d - s.taken
	s.taken = d
	return n
}

// local returns the sidecar's own end, with the destination service when
// it is the destination.
func (h *Hub) localEnd(service string) *Endpoint {
	return &Endpoint{Workload: orUnknown(h.local.Name), Namespace: orUnknown(h.local.Namespace), Service: service, Principal: Unknown}
}

func peerEnd(w peermeta.Workload, service string) *Endpoint {
	return &Endpoint{Workload: orUnknown(w.Name), Namespace: orUnknown(w.Namespace), Service: service, Principal: Unknown}
}

// Ends fills e's Proxy, Direction, Source and Destination from the
// direction, the peer's metadata (zero when unknown) and the destination
// service's host name.
func (h *Hub) Ends(e *Event, inbound bool, peer peermeta.Workload, service string) {
	e.Proxy = h.proxy
	if inbound {
		e.Direction = Inbound
		e.Source, e.Destination = peerEnd(peer, ""), h.localEnd(service)
		return
	}
	e.Direction = Outbound
	e.Source, e.Destination = h.localEnd(""), peerEnd(peer, service)
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}
