// Package xdsclient is the Weft proxy's ADS client: one state-of-the-world
// aggregated stream carrying wildcard LDS and CDS, RDS for the route
// configurations listeners name, and EDS for EDS clusters.
//
// Every resource is validated into proxyconfig structs as it arrives. A
// response is ACKed when every resource in it is valid; otherwise it is
// NACKed with the reasons, the valid resources of it are applied, and the
// invalid ones keep their last good version (as gRPC's xDS client does).
// The client reconnects with exponential backoff and jitter; the last
// config stays in force while the control plane is unreachable.
package xdsclient

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"weft.dev/weft/internal/proxy/gcheadroom"
	"weft.dev/weft/internal/proxy/procscale"
	"weft.dev/weft/internal/proxy/proxyconfig"
)

// Type URLs of the resources the proxy subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// subscription order: LDS and CDS first, as Envoy does.
var typeOrder = []string{ClusterType, EndpointType, ListenerType, RouteType}

// xdsWindow is the HTTP/2 flow-control window of the xDS stream and
// connection.
const xdsWindow = 1 << 20

// Resources is an immutable view of everything the client holds. The maps
// must not be modified.
type Resources struct {
	// Listeners by name.
	Listeners map[string]*proxyconfig.Listener
	// Routes by route configuration name.
	Routes map[string]*proxyconfig.RouteConfig
	// Clusters by name.
	Clusters map[string]*proxyconfig.Cluster
	// Endpoints by EDS service name.
	Endpoints map[string]*proxyconfig.Endpoints
	// Raw holds the accepted resources as received (their serialized
	// bytes, the value of the Any they came in), by type URL, for config
	// dumps.
	Raw map[string]*RawResources
	// Versions holds the last accepted version by type URL.
	Versions map[string]string
	// Received says which types have had at least one response.
	Received map[string]bool
	// Errors holds the last NACK reason by type URL; empty when the last
	// response of the type was ACKed.
	Errors map[string]string
}

// Complete reports whether the first full config has arrived: listeners
// and clusters, every route configuration the listeners name and the
// endpoints of every EDS cluster.
func (r *Resources) Complete() bool {
	if !r.Received[ListenerType] || !r.Received[ClusterType] {
		return false
	}
	for _, l := range r.Listeners {
		for _, n := range l.RouteNames() {
			if r.Routes[n] == nil {
				return false
			}
		}
	}
	for _, c := range r.Clusters {
		if c.Type == proxyconfig.DiscoveryEDS && r.Endpoints[c.EDSServiceName] == nil {
			return false
		}
	}
	return true
}

// Options configure a Client.
type Options struct {
	// Addr is the control plane's host:port.
	Addr string
	// Node identifies the proxy.
	Node *corev3.Node
	// Logger receives the client's logs.
	Logger *slog.Logger
	// OnUpdate is called with the new resources after each response is
	// applied. It runs on the client's goroutine and must not block for
	// long; it must not modify the Resources. An error returned for a
	// listener response (a port that cannot be bound) NACKs that response
	// with the error as its reason, as Envoy does.
	OnUpdate func(*Resources) error
	// OnResponse, when set, is called for each response with whether it
	// was ACKed, for metrics. It must not block or call the Client.
	OnResponse func(typeURL string, acked bool)
	// BackoffBase is the first reconnect delay (default 500ms).
	BackoffBase time.Duration
	// BackoffMax caps the reconnect delay (default 30s).
	BackoffMax time.Duration
	// DialOptions are added to the gRPC dial options (tests).
	DialOptions []grpc.DialOption
}

// Client is an ADS client. Run drives it; Connected may be called from any
// goroutine.
type Client struct {
	opts      Options
	log       *slog.Logger
	connected atomic.Bool

	mu     sync.Mutex // guards types (read by Snapshot)
	types  map[string]*typeState
	sendMu sync.Mutex
	// applyErr is the last listener error OnUpdate reported ("" when none),
	// so a failure is NACKed once and its recovery ACKed once. Only the
	// stream goroutine touches it.
	applyErr string
}

type typeState struct {
	url      string
	wildcard bool
	names    []string // subscribed names, sorted; unused for wildcard types
	version  string
	nonce    string
	received bool
	lastErr  string
	parsed   map[string]any
	raw      map[string][]byte            // as packer keeps them; never changed once stored
	sums     map[string][sha256.Size]byte // of each resource's wire form, by name
	packer   rawPacker
	vhosts   proxyconfig.VirtualHostCache // route configurations' parsed virtual hosts (RouteType)
	view     any                          // parsed as Resources holds it (typedView); nil: not made since parsed last changed
}

// New returns a client; call Run to start it.
func New(opts Options) *Client {
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, log: opts.Logger, types: map[string]*typeState{}}
	for _, u := range typeOrder {
		c.types[u] = &typeState{url: u, wildcard: u == ListenerType || u == ClusterType, parsed: map[string]any{}, raw: map[string][]byte{}, sums: map[string][sha256.Size]byte{}}
	}
	return c
}

// Connected reports whether an ADS stream is established.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run connects and keeps the stream up until ctx is done. It returns
// ctx's error.
func (c *Client) Run(ctx context.Context) error {
	bo := backoff.Config{BaseDelay: c.opts.BackoffBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.opts.BackoffMax}
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
		grpc.WithUserAgent("weft-proxy"),
		// A full push is hundreds of KB per proxy (route configurations
		// of a large mesh): with gRPC's default 64 KiB windows the control
		// plane waits on flow control for every proxy, which costs it about
		// a third more CPU and the mesh its convergence time.
		grpc.WithInitialWindowSize(xdsWindow),
		grpc.WithInitialConnWindowSize(xdsWindow),
	}, c.opts.DialOptions...)
	conn, err := grpc.NewClient(c.opts.Addr, dopts...)
	if err != nil {
		return fmt.Errorf("xds client for %s: %w", c.opts.Addr, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	delay := c.opts.BackoffBase
	for {
		gotResponse, err := c.stream(ctx, ads)
		c.connected.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if gotResponse {
			delay = c.opts.BackoffBase
		}
		// Full jitter in [delay/2, delay].
		wait := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
		c.log.Warn("xds stream ended, keeping the last config", "addr", c.opts.Addr, "error", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(time.Duration(float64(delay)*2), c.opts.BackoffMax)
	}
}

func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (gotResponse bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(sctx, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	c.connected.Store(true)
	c.log.Info("xds stream connected", "addr", c.opts.Addr)
	first := true
	for _, u := range typeOrder {
		ts := c.types[u]
		if !ts.wildcard && len(ts.names) == 0 {
			continue
		}
		if err := c.send(st, ts, "", nil, first); err != nil {
			return false, err
		}
		first = false
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return gotResponse, ctx.Err()
			}
			return gotResponse, err
		}
		gotResponse = true
		// Applied on every P the sidecar may use (procscale.Hold), so
		// that a sidecar on one does not queue its requests behind it.
		release := procscale.Hold()
		err = gcheadroom.Tight(configGCPercent, func() error { return c.handle(st, resp) })
		release()
		if err != nil {
			return gotResponse, err
		}
	}
}

// configGCPercent is the garbage collector's target while a response is
// applied (gcheadroom.Tight).
const configGCPercent = 25

// send writes a DiscoveryRequest: an ACK when errDetail is empty, a NACK
// otherwise. The nonce is the last one received for the type.
func (c *Client) send(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, ts *typeState, errDetail string, names []string, withNode bool) error {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   ts.version,
		ResponseNonce: ts.nonce,
		TypeUrl:       ts.url,
	}
	if !ts.wildcard {
		req.ResourceNames = ts.names
	}
	if withNode {
		req.Node = c.opts.Node
	}
	if errDetail != "" {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: errDetail}
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return st.Send(req)
}

// handle validates and applies a response, then ACKs or NACKs it and
// updates RDS/EDS subscriptions.
func (c *Client) handle(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, resp *discoveryv3.DiscoveryResponse) error {
	c.mu.Lock()
	ts, ok := c.types[resp.GetTypeUrl()]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("xds response of an unknown type ignored", "type", resp.GetTypeUrl())
		return nil
	}
	parsed, raw, sums, errs := decode(ts.url, resp.GetResources(), ts, &ts.packer)
	ts.packer.reset()
	var newParsed map[string]any
	var newRaw map[string][]byte
	var newSums map[string][sha256.Size]byte
	if ts.wildcard {
		// State of the world: the response holds every resource of the type.
		newParsed, newRaw, newSums = parsed, raw, sums
	} else {
		newParsed, newRaw, newSums = maps.Clone(ts.parsed), maps.Clone(ts.raw), maps.Clone(ts.sums)
		maps.Copy(newParsed, parsed)
		maps.Copy(newRaw, raw)
		maps.Copy(newSums, sums)
	}
	// Invalid resources keep their last good version.
	for name := range errs {
		if old, ok := ts.parsed[name]; ok {
			newParsed[name], newRaw[name], newSums[name] = old, ts.raw[name], ts.sums[name]
		}
	}
	ts.set(newParsed, newRaw, newSums)
	ts.received, ts.nonce = true, resp.GetNonce()
	detail := ""
	if len(errs) > 0 {
		detail = joinErrors(errs)
		ts.lastErr = detail
	} else {
		ts.version, ts.lastErr = resp.GetVersionInfo(), ""
	}
	// Dependent subscriptions.
	var changed []*typeState
	switch ts.url {
	case ListenerType:
		if c.resubscribe(c.types[RouteType], routeNames(newParsed)) {
			changed = append(changed, c.types[RouteType])
		}
	case ClusterType:
		if c.resubscribe(c.types[EndpointType], edsNames(newParsed)) {
			changed = append(changed, c.types[EndpointType])
		}
	}
	res := c.snapshotLocked()
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(ts.url, detail == "")
	}
	c.mu.Unlock()

	// Listeners are bound by OnUpdate; one that cannot be bound NACKs the
	// listener config, whichever response made the proxy apply it.
	var applyErr string
	if c.opts.OnUpdate != nil {
		if err := c.opts.OnUpdate(res); err != nil {
			applyErr = err.Error()
		}
	}
	var lds *typeState
	if applyErr != c.applyErr {
		c.applyErr = applyErr
		if ts.url == ListenerType {
			if applyErr != "" {
				if detail != "" {
					detail += "; "
				}
				detail += applyErr
			}
		} else if c.types[ListenerType].received {
			lds = c.types[ListenerType]
		}
		c.mu.Lock()
		if ts.url == ListenerType {
			ts.lastErr = detail
		} else if lds != nil {
			lds.lastErr = applyErr
		}
		c.mu.Unlock()
	}
	if detail != "" {
		c.log.Warn("xds NACK", "type", shortType(ts.url), "version", resp.GetVersionInfo(), "nonce", resp.GetNonce(), "reason", detail)
	} else {
		c.log.Debug("xds ACK", "type", shortType(ts.url), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
	}
	if err := c.send(st, ts, detail, nil, false); err != nil {
		return err
	}
	if lds != nil {
		// A NACK (or, once the listeners bind, an ACK) of the listener
		// config already ACKed, with its nonce.
		if applyErr != "" {
			c.log.Warn("xds NACK", "type", shortType(lds.url), "version", lds.version, "reason", applyErr)
		}
		if err := c.send(st, lds, applyErr, nil, false); err != nil {
			return err
		}
	}
	for _, d := range changed {
		if err := c.send(st, d, "", nil, false); err != nil {
			return err
		}
	}
	return nil
}

// resubscribe sets the names of a non-wildcard type and drops resources no
// longer named. It reports whether the names changed.
func (c *Client) resubscribe(ts *typeState, names []string) bool {
	if slices.Equal(ts.names, names) {
		return false
	}
	ts.names = names
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	p, r, s := map[string]any{}, map[string][]byte{}, map[string][sha256.Size]byte{}
	for k, v := range ts.parsed {
		if keep[k] {
			p[k], r[k], s[k] = v, ts.raw[k], ts.sums[k]
		}
	}
	ts.set(p, r, s)
	return true
}

// set puts the resources in force, and drops what was derived from those
// before: the typed view, and the virtual hosts of route configurations
// no longer in force.
func (ts *typeState) set(parsed map[string]any, raw map[string][]byte, sums map[string][sha256.Size]byte) {
	ts.parsed, ts.raw, ts.sums, ts.view = parsed, raw, sums, nil
	if ts.url == RouteType {
		ts.vhosts.Keep(func(name string) bool { _, ok := parsed[name]; return ok })
	}
}

func routeNames(listeners map[string]any) []string {
	set := map[string]bool{}
	for _, v := range listeners {
		for _, n := range v.(*proxyconfig.Listener).RouteNames() {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func edsNames(clusters map[string]any) []string {
	set := map[string]bool{}
	for _, v := range clusters {
		if cl := v.(*proxyconfig.Cluster); cl.Type == proxyconfig.DiscoveryEDS {
			set[cl.EDSServiceName] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func joinErrors(errs map[string]error) string {
	names := make([]string, 0, len(errs))
	for n := range errs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(errs[n].Error())
	}
	return b.String()
}

func shortType(u string) string { return u[strings.LastIndexByte(u, '.')+1:] }

// decode unpacks and validates the resources of a response. Resources that
// fail are returned in errs by name (or by position when unnamed). A
// resource whose wire form is byte for byte one prev holds in force (its
// SHA-256 matches) is not decoded again: its parsed and kept forms are
// prev's. A state-of-the-world response repeats every resource of its
// type, so a change to one of a hundred clusters decodes one, not a
// hundred, and packs (compresses) one. This holds as parsing depends on
// the bytes alone: the one input beside them, the environment a tracing
// custom tag may read, does not change while the proxy runs.
func decode(typeURL string, anys []*anypb.Any, prev *typeState, packer *rawPacker) (parsed map[string]any, raw map[string][]byte, sums map[string][sha256.Size]byte, errs map[string]error) {
	parsed, raw, sums, errs = map[string]any{}, map[string][]byte{}, map[string][sha256.Size]byte{}, map[string]error{}
	var known map[[sha256.Size]byte]string // prev's names by sum, made when first needed
	for i, a := range anys {
		if a.GetTypeUrl() != typeURL {
			errs[fmt.Sprintf("#%d", i)] = fmt.Errorf("resource %d has type %s in a %s response", i, a.GetTypeUrl(), shortType(typeURL))
			continue
		}
		sum := sha256.Sum256(a.GetValue())
		if known == nil && len(prev.sums) > 0 {
			known = make(map[[sha256.Size]byte]string, len(prev.sums))
			for name, s := range prev.sums {
				known[s] = name
			}
		}
		if name, ok := known[sum]; ok {
			if _, dup := parsed[name]; !dup {
				parsed[name], raw[name], sums[name] = prev.parsed[name], prev.raw[name], sum
				continue
			}
		}
		var name string
		var v any
		var err error
		switch typeURL {
		case ListenerType:
			m := &listenerv3.Listener{}
			if err = a.UnmarshalTo(m); err == nil {
				name = m.GetName()
				v, err = proxyconfig.ParseListener(m)
			}
		case RouteType:
			var rc *proxyconfig.RouteConfig
			if name, rc, err = prev.vhosts.ParseRouteConfig(a.GetValue()); err == nil {
				v = rc
			}
		case ClusterType:
			m := &clusterv3.Cluster{}
			if err = a.UnmarshalTo(m); err == nil {
				name = m.GetName()
				v, err = proxyconfig.ParseCluster(m)
			}
		case EndpointType:
			m := &endpointv3.ClusterLoadAssignment{}
			if err = a.UnmarshalTo(m); err == nil {
				name = m.GetClusterName()
				var e *proxyconfig.Endpoints
				if e, err = proxyconfig.ParseEndpoints(m); err == nil {
					v = e
				} else {
					err = fmt.Errorf("endpoints %q: %w", name, err)
				}
			}
		}
		if name == "" {
			name = fmt.Sprintf("#%d", i)
			if err == nil {
				err = fmt.Errorf("resource %d has no name", i)
			}
		}
		if err != nil {
			errs[name] = err
			continue
		}
		// The decoded proto is dropped: the parsed form serves, and the
		// wire form (a fraction of the decoded one's memory) is kept for
		// config dumps, compressed, without its Any wrapper and type URL
		// (the type's).
		parsed[name], raw[name], sums[name] = v, packer.pack(a.GetValue()), sum
	}
	return parsed, raw, sums, errs
}

// Snapshot returns the current resources.
func (c *Client) Snapshot() *Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked()
}

func (c *Client) snapshotLocked() *Resources {
	r := &Resources{
		Listeners: map[string]*proxyconfig.Listener{},
		Routes:    map[string]*proxyconfig.RouteConfig{},
		Clusters:  map[string]*proxyconfig.Cluster{},
		Endpoints: map[string]*proxyconfig.Endpoints{},
		Raw:       map[string]*RawResources{},
		Versions:  map[string]string{},
		Received:  map[string]bool{},
		Errors:    map[string]string{},
	}
	for u, ts := range c.types {
		r.Raw[u] = &RawResources{dict: ts.packer.dict, m: ts.raw}
		r.Versions[u] = ts.version
		r.Received[u] = ts.received
		r.Errors[u] = ts.lastErr
		switch m := ts.typedView().(type) {
		case map[string]*proxyconfig.Listener:
			r.Listeners = m
		case map[string]*proxyconfig.RouteConfig:
			r.Routes = m
		case map[string]*proxyconfig.Cluster:
			r.Clusters = m
		case map[string]*proxyconfig.Endpoints:
			r.Endpoints = m
		}
	}
	return r
}

// typedView is ts.parsed as the map of its type that Resources holds,
// made once for each value of ts.parsed and shared by the snapshots
// taken until the next (they do not change it). Every response goes
// through a snapshot; copying all four types' maps into it each time
// was 13 % of what a change cost a sidecar with 1000 services
// (docs/performance.md, optimisation 29).
func (ts *typeState) typedView() any {
	if ts.view != nil {
		return ts.view
	}
	switch ts.url {
	case ListenerType:
		ts.view = typed[*proxyconfig.Listener](ts.parsed)
	case RouteType:
		ts.view = typed[*proxyconfig.RouteConfig](ts.parsed)
	case ClusterType:
		ts.view = typed[*proxyconfig.Cluster](ts.parsed)
	case EndpointType:
		ts.view = typed[*proxyconfig.Endpoints](ts.parsed)
	}
	return ts.view
}

func typed[T any](parsed map[string]any) map[string]T {
	m := make(map[string]T, len(parsed))
	for k, v := range parsed {
		m[k] = v.(T)
	}
	return m
}
