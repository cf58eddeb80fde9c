package xdsserver

import (
	"context"
	"errors"
	"sort"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Listeners, routes and clusters over state-of-the-world xDS.
//
// Most proxies get the same listeners, routes and clusters (content-hashed
// per type, see publish), and a sidecar subscribes to all of them. So
// sotwCache answers a stream with a resourceSet shared by every proxy with
// that content: one encoded Any per resource, and the encoding of all of
// them as one DiscoveryResponse field, which xdsCodec sends to each stream
// without copying it (codec.go). go-control-plane's snapshot cache, used
// before, wraps and marshals every resource again for every response, and
// builds the responses of all proxies under its one lock: with 2000
// proxies each getting 1000 clusters and a 1000-virtual-host route
// configuration, that was most of the server's CPU in a full push
// (docs/performance.md). Delta streams are still served by the snapshot
// cache.

// resourceSet is the resources of one type published for one or more
// proxies, read-only once made.
type resourceSet struct {
	typeURL string
	version string
	// names are the resources' names, sorted; anys their encodings, in
	// the same order.
	names []string
	anys  []*anypb.Any
	// index maps a name to its position in names.
	index map[string]int
	// body is the encoding of every resource as repeated field 2
	// (resources) of a DiscoveryResponse; its capacity is its length, so
	// an append to it cannot write into it.
	body []byte
}

// newResourceSet makes the set of the encoded resources enc (by name).
func newResourceSet(typeURL, version string, enc map[string][]byte) *resourceSet {
	rs := &resourceSet{typeURL: typeURL, version: version, index: make(map[string]int, len(enc))}
	rs.names = make([]string, 0, len(enc))
	for name := range enc {
		rs.names = append(rs.names, name)
	}
	sort.Strings(rs.names)
	rs.anys = make([]*anypb.Any, len(rs.names))
	size := 0
	for i, name := range rs.names {
		rs.index[name] = i
		rs.anys[i] = &anypb.Any{TypeUrl: typeURL, Value: enc[name]}
		size += anyFieldSize(typeURL, len(enc[name]))
	}
	rs.body = make([]byte, 0, size)
	for _, a := range rs.anys {
		rs.body = appendAnyField(rs.body, a)
	}
	return rs
}

// anyFieldSize is the size of appendAnyField's output.
func anyFieldSize(typeURL string, n int) int {
	inner := protowire.SizeTag(1) + protowire.SizeBytes(len(typeURL)) + protowire.SizeTag(2) + protowire.SizeBytes(n)
	return protowire.SizeTag(2) + protowire.SizeBytes(inner)
}

// appendAnyField appends a as field 2 (resources) of a DiscoveryResponse.
func appendAnyField(b []byte, a *anypb.Any) []byte {
	inner := protowire.SizeTag(1) + protowire.SizeBytes(len(a.GetTypeUrl())) + protowire.SizeTag(2) + protowire.SizeBytes(len(a.GetValue()))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, a.GetTypeUrl())
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, a.GetValue())
}

// sotwCache serves LDS, RDS and CDS to state-of-the-world streams from the
// resourceSets published per node. It is safe for concurrent use.
type sotwCache struct {
	mu    sync.Mutex
	nodes map[string]*sotwNode
}

type sotwNode struct {
	// sets are the node's resources by type URL; a type without a set has
	// not been published for the node (its watches wait).
	sets    map[string]*resourceSet
	watches map[*sotwWatch]struct{}
}

type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	ch  chan cache.Response
}

var _ cache.Cache = (*sotwCache)(nil)

func newSotwCache() *sotwCache {
	return &sotwCache{nodes: map[string]*sotwNode{}}
}

func (c *sotwCache) node(id string) *sotwNode {
	n := c.nodes[id]
	if n == nil {
		n = &sotwNode{sets: map[string]*resourceSet{}, watches: map[*sotwWatch]struct{}{}}
		c.nodes[id] = n
	}
	return n
}

// set publishes sets (one per type) for a node and answers its open
// watches of the types whose version changed. The channels are
// go-control-plane's: an ADS stream has room for one response per type,
// another stream for its one watch, and a watch is answered at most once,
// so the sends do not block.
func (c *sotwCache) set(nodeID string, sets ...*resourceSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(nodeID)
	for _, rs := range sets {
		n.sets[rs.typeURL] = rs
	}
	for w := range n.watches {
		rs := n.sets[w.req.GetTypeUrl()]
		if rs == nil || rs.version == w.req.GetVersionInfo() {
			continue
		}
		delete(n.watches, w)
		w.ch <- newSotwResponse(w.req, w.sub, rs)
	}
}

// clear forgets a node (its last stream closed).
func (c *sotwCache) clear(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, nodeID)
}

// CreateWatch answers at once if the node's resources of the type are at
// another version than the request's, or include a subscribed resource
// the stream has not been sent; otherwise it keeps the watch until set.
func (c *sotwCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	switch req.GetTypeUrl() {
	case resource.ListenerType, resource.RouteType, resource.ClusterType:
	default:
		return nil, errors.New("sotw cache: unexpected type " + req.GetTypeUrl())
	}
	id := req.GetNode().GetId()
	c.mu.Lock()
	n := c.node(id)
	rs := n.sets[req.GetTypeUrl()]
	if rs != nil && (rs.version != req.GetVersionInfo() || rs.unsent(sub)) {
		c.mu.Unlock()
		ch <- newSotwResponse(req, sub, rs)
		return func() {}, nil
	}
	w := &sotwWatch{req: req, sub: sub, ch: ch}
	n.watches[w] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(n.watches, w)
		c.mu.Unlock()
	}, nil
}

// unsent reports whether rs has a resource sub covers that its stream was
// not sent (a new subscription at an unchanged version).
func (rs *resourceSet) unsent(sub cache.Subscription) bool {
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		// What the stream was sent at rs.version is a subset of rs's names
		// (the version is a hash of the content), so if known holds as many
		// names, all at that version, it holds them all. This is the case
		// of every ACK, and cheaper than looking up every name.
		if len(known) == len(rs.names) {
			all := true
			for _, v := range known {
				if v != rs.version {
					all = false
					break
				}
			}
			if all {
				return false
			}
		}
		for _, name := range rs.names {
			if _, ok := known[name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range sub.SubscribedResources() {
		if _, ok := known[name]; !ok {
			if _, ok := rs.index[name]; ok {
				return true
			}
		}
	}
	return false
}

// Fetch is not supported: Weft serves no REST xDS.
func (c *sotwCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("sotw cache: fetch is not supported")
}

// CreateDeltaWatch is not supported: delta streams use the snapshot cache.
func (c *sotwCache) CreateDeltaWatch(*cache.DeltaRequest, cache.Subscription, chan cache.DeltaResponse) (func(), error) {
	return nil, errors.New("sotw cache: delta is not supported")
}

// sotwResponse is a state-of-the-world response of a resourceSet: every
// resource of it for a wildcard subscription, else those subscribed. The
// stream goroutine that sends it builds the message and the returned
// resources, outside the cache's lock.
type sotwResponse struct {
	req *cache.Request
	sub cache.Subscription
	set *resourceSet
	// subset are the indexes in set of the resources to send, in order;
	// nil when all are sent.
	subset []int

	respOnce sync.Once
	resp     *discovery.DiscoveryResponse
	retOnce  sync.Once
	returned map[string]string
}

var _ cache.Response = (*sotwResponse)(nil)

func newSotwResponse(req *cache.Request, sub cache.Subscription, rs *resourceSet) *sotwResponse {
	r := &sotwResponse{req: req, sub: sub, set: rs}
	if sub.IsWildcard() {
		return r
	}
	subs := sub.SubscribedResources()
	if len(subs) >= len(rs.names) {
		all := true
		for _, name := range rs.names {
			if _, ok := subs[name]; !ok {
				all = false
				break
			}
		}
		if all {
			return r
		}
	}
	r.subset = make([]int, 0, min(len(subs), len(rs.names)))
	for name := range subs {
		if i, ok := rs.index[name]; ok {
			r.subset = append(r.subset, i)
		}
	}
	sort.Ints(r.subset)
	return r
}

// GetDiscoveryResponse returns the response without its nonce (the
// server sets it). A response with every resource of its set carries
// them as the set's shared encoding, in the message's unknown fields: its
// encoding is the same as with the resources in Resources, and xdsCodec
// sends it without copying them.
func (r *sotwResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	r.respOnce.Do(func() {
		out := &discovery.DiscoveryResponse{VersionInfo: r.set.version, TypeUrl: r.set.typeURL}
		if r.subset == nil {
			setEncodedResources(out, r.set.body)
		} else {
			out.Resources = make([]*anypb.Any, len(r.subset))
			for i, j := range r.subset {
				out.Resources[i] = r.set.anys[j]
			}
		}
		r.resp = out
	})
	return r.resp, nil
}

func (r *sotwResponse) GetRequest() *cache.Request  { return r.req }
func (r *sotwResponse) GetVersion() (string, error) { return r.set.version, nil }
func (r *sotwResponse) GetResponseVersion() string  { return r.set.version }
func (r *sotwResponse) GetContext() context.Context { return context.Background() }

// GetReturnedResources is every resource sent, at the set's version. It
// refills the stream's map of what it was sent, made by the previous
// response or the subscription, as edsResponse does: go-control-plane
// calls this from the stream's goroutine just before sending, when no
// watch of the stream is open.
func (r *sotwResponse) GetReturnedResources() map[string]string {
	r.retOnce.Do(func() {
		out := r.sub.ReturnedResources()
		if out == nil {
			n := len(r.set.names)
			if r.subset != nil {
				n = len(r.subset)
			}
			out = make(map[string]string, n)
		}
		clear(out)
		if r.subset == nil {
			for _, name := range r.set.names {
				out[name] = r.set.version
			}
		} else {
			for _, i := range r.subset {
				out[r.set.names[i]] = r.set.version
			}
		}
		r.returned = out
	})
	return r.returned
}
