package tap

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// MaxEvents bounds the max query parameter.
const MaxEvents = 1_000_000

// Query is a tap request's parameters: path_prefix, method and max (0 or
// absent: no limit).
type Query struct {
	Filter
	// Max ends the stream after that many events; 0 means no limit.
	Max int
}

// ParseQuery reads the query of GET /tap (and of the control plane's
// /api/v1/tap, which passes it on).
func ParseQuery(r *http.Request) (Query, error) {
	q := r.URL.Query()
	out := Query{Filter: Filter{PathPrefix: q.Get("path_prefix"), Method: q.Get("method")}}
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxEvents {
			return out, fmt.Errorf("max %q: want a whole number from 0 (no limit) to %d", v, MaxEvents)
		}
		out.Max = n
	}
	return out, nil
}

// IsLoopback reports whether a request came from this host.
func IsLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handler serves GET /tap on the sidecar's admin port: newline-delimited
// JSON events, flushed one by one, until max events were sent, the client
// goes away or the hub closes. The last line is a note with the count of
// dropped events when there were drops since the last event. Callers not
// on loopback are refused: the admin port must never be a way in.
func Handler(h *Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsLoopback(r) {
			http.Error(w, "tap is served to loopback callers only", http.StatusForbidden)
			return
		}
		q, err := ParseQuery(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if h == nil {
			http.Error(w, "tap is not enabled in this proxy", http.StatusNotFound)
			return
		}
		sub := h.Subscribe(q.Filter, 0)
		defer h.Unsubscribe(sub)
		Stream(w, r, sub, q.Max)
	})
}

// Stream writes sub's events to w as NDJSON until max events (0: no
// limit), the request's end or the subscriber's end.
func Stream(w http.ResponseWriter, r *http.Request, sub *Subscriber, max int) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	sent := 0
	for max == 0 || sent < max {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Done():
			finalNote(enc, rc, sub, "proxy shutting down")
			return
		case e := <-sub.Events():
			if e.Kind != KindNote {
				sent++
			}
			if d := sub.TakeDropped(); d > 0 {
				c := *e // shared by every subscriber: copy before changing
				c.Dropped = d
				e = &c
			}
			if enc.Encode(e) != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
	finalNote(enc, rc, sub, "max events reached")
}

func finalNote(enc *json.Encoder, rc *http.ResponseController, sub *Subscriber, why string) {
	n := &Event{Kind: KindNote, Time: time.Now(), Note: why, Dropped: sub.TakeDropped()}
	if enc.Encode(n) == nil {
		_ = rc.Flush()
	}
}
