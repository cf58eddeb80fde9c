package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/tap"
)

// The live tap behind `weft tap`: GET /api/v1/tap?target=&path_prefix=&method=&max=
// opens the /tap stream of every sidecar whose instance serves the target
// service or belongs to the target workload, and merges their events into
// one NDJSON stream to the caller. The sidecars filter (path prefix,
// method) and drop rather than slow requests; the control plane counts
// the events it forwards and stops every stream at max or when the caller
// goes away.
//
// Who may tap: the admin API listens on loopback in local mode, and this
// route refuses callers that are not on loopback whatever the address it
// is bound to. Kubernetes mode will need authentication (and an operator
// role) before tapping is offered off the host.

// tapLineLimit bounds one event line read from a sidecar.
const tapLineLimit = 1 << 20

// tapClient reads sidecars' /tap streams: no overall timeout (a stream
// lasts as long as the caller wants), but bounded connect and header
// waits, and no kept connections (a stream ends by closing its own).
var tapClient = &http.Client{Transport: &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	ResponseHeaderTimeout: 5 * time.Second,
	DisableKeepAlives:     true,
}}

// tapShutdown ends open taps when the admin server shuts down, so that
// they do not hold it. The zero value is ready to use.
type tapShutdown struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

func (t *tapShutdown) done() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ch == nil {
		t.ch = make(chan struct{})
	}
	return t.ch
}

func (t *tapShutdown) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ch == nil {
		t.ch = make(chan struct{})
	}
	if !t.closed {
		t.closed = true
		close(t.ch)
	}
}

// tapTargets are the instances with a sidecar admin port that target
// names (findInstances).
func tapTargets(instances []*model.Instance, target string) []*model.Instance {
	var out []*model.Instance
	for _, in := range findInstances(slices.Values(instances), target, false) {
		if in.AdminPort != 0 {
			out = append(out, in)
		}
	}
	return out
}

// tapNote is the part of a line the merge looks at.
type tapNote struct {
	Kind    string `json:"kind"`
	Dropped uint64 `json:"dropped"`
	Error   string `json:"error"`
}

func (s *Server) handleTap(w http.ResponseWriter, r *http.Request) {
	if !tap.IsLoopback(r) {
		writeJSON(w, http.StatusForbidden, errorBody{Error: "tap is served to loopback callers only"})
		return
	}
	target := r.URL.Query().Get("target")
	if target == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "missing ?target=SERVICE|WORKLOAD"})
		return
	}
	q, err := tap.ParseQuery(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	ins := tapTargets(s.instances.List(), target)
	if len(ins) == 0 {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no running instance of service or workload %q; see weft status", target)})
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := s.taps.done()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	sq := url.Values{}
	if q.PathPrefix != "" {
		sq.Set("path_prefix", q.PathPrefix)
	}
	if q.Method != "" {
		sq.Set("method", q.Method)
	}
	if q.Max > 0 {
		sq.Set("max", strconv.Itoa(q.Max))
	}
	lines := make(chan []byte)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.tapOne(ctx, in, sq.Encode(), lines)
		}()
	}
	go func() {
		wg.Wait()
		close(lines)
	}()
	defer func() {
		cancel()
		for range lines { // let the readers see ctx and end
		}
	}()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	sent := 0
	for line := range lines {
		if _, err := w.Write(line); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		var n tapNote
		if json.Unmarshal(line, &n) == nil && n.Kind != tap.KindNote {
			sent++
			if q.Max > 0 && sent >= q.Max {
				return
			}
		}
	}
}

// tapOne streams one sidecar's events into lines until ctx ends or the
// sidecar's stream does. A sidecar that cannot be reached becomes a note;
// a sidecar's own notes are passed on only when they report drops.
func (s *Server) tapOne(ctx context.Context, in *model.Instance, query string, lines chan<- []byte) {
	send := func(b []byte) bool {
		select {
		case lines <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	note := func(err error) {
		b, _ := json.Marshal(tap.Event{Kind: tap.KindNote, Time: time.Now(), Proxy: in.Name, Note: "sidecar tap ended", Error: err.Error()})
		send(append(b, '\n'))
	}
	u := fmt.Sprintf("http://127.0.0.1:%d/tap?%s", in.AdminPort, query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		note(err)
		return
	}
	resp, err := tapClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			note(fmt.Errorf("reaching the sidecar of %s: %w", in.ProxyKey(), err))
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		note(fmt.Errorf("sidecar of %s: %s: %s", in.ProxyKey(), resp.Status, strings.TrimSpace(string(b))))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), tapLineLimit)
	for sc.Scan() {
		line := sc.Bytes()
		var n tapNote
		if json.Unmarshal(line, &n) != nil {
			continue
		}
		if n.Kind == tap.KindNote && n.Dropped == 0 && n.Error == "" {
			continue
		}
		out := make([]byte, len(line)+1)
		copy(out, line)
		out[len(line)] = '\n'
		if !send(out) {
			return
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		note(fmt.Errorf("reading the sidecar of %s: %w", in.ProxyKey(), err))
	}
}
