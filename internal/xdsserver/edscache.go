package xdsserver

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// endpointCache serves state-of-the-world EDS from one set of
// ClusterLoadAssignments shared by every proxy. Each resource carries the
// cache version at which it last changed; a watch is answered with only
// the subscribed resources the stream has not been sent at their current
// version. Its work per watch is proportional to the subscription, or, on
// an update, to the smaller of the subscription and the changed names, and
// is done outside the cache's lock where it can be: with 2000 proxies
// each subscribed to 1000 endpoints, a general per-name index of watches
// cost more than the pushes it saved.
type endpointCache struct {
	mu      sync.Mutex
	cur     *edsSnapshot
	watches map[*edsWatch]struct{}
}

// edsSnapshot is one immutable state of the cache.
type edsSnapshot struct {
	version uint64
	verStr  string
	res     map[string]*edsResource

	// all is the encoding of every resource as the resources of a
	// DiscoveryResponse, made by the first response that carries them all
	// (a proxy's first subscription, or one to every new cluster): the
	// responses share it as sotwCache's do (codec.go).
	allOnce sync.Once
	all     []byte
}

// allEncoded returns the shared encoding of every resource of st.
func (st *edsSnapshot) allEncoded() []byte {
	st.allOnce.Do(func() {
		names := slices.Sorted(maps.Keys(st.res))
		size := 0
		for _, name := range names {
			size += anyFieldSize(resource.EndpointType, len(st.res[name].any.GetValue()))
		}
		b := make([]byte, 0, size)
		for _, name := range names {
			b = appendAnyField(b, st.res[name].any)
		}
		st.all = b
	})
	return st.all
}

// edsResource is one encoded ClusterLoadAssignment. Its Any is shared by
// every response that carries it and never modified.
type edsResource struct {
	name   string
	verStr string // cache version at which it last changed
	any    *anypb.Any
}

type edsWatch struct {
	req *cache.Request
	sub cache.Subscription
	ch  chan cache.Response
}

var _ cache.Cache = (*endpointCache)(nil)

func newEndpointCache() *endpointCache {
	return &endpointCache{
		cur:     &edsSnapshot{verStr: "0", res: map[string]*edsResource{}},
		watches: map[*edsWatch]struct{}{},
	}
}

// update sets (encoded) and deletes resources as one new version, and
// answers the open watches whose streams lack a changed resource. It
// returns the new version.
func (c *endpointCache) update(set map[string][]byte, del []string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur
	st := &edsSnapshot{version: old.version + 1, res: maps.Clone(old.res)}
	st.verStr = strconv.FormatUint(st.version, 10)
	for name, b := range set {
		st.res[name] = &edsResource{name: name, verStr: st.verStr, any: &anypb.Any{TypeUrl: resource.EndpointType, Value: b}}
	}
	for _, name := range del {
		delete(st.res, name)
	}
	c.cur = st
	if len(set) == 0 {
		return st.version // state of the world cannot announce a deletion
	}
	// A watch is open only while its stream had every subscribed resource
	// at the previous version, so only changed ones can be missing now.
	for w := range c.watches {
		var send []*edsResource
		known, subs := w.sub.ReturnedResources(), w.sub.SubscribedResources()
		wanted := func(name string) bool {
			_, ok := subs[name]
			return ok || w.sub.IsWildcard()
		}
		if w.sub.IsWildcard() || len(set) <= len(subs) {
			for name := range set {
				if wanted(name) && known[name] != st.verStr {
					send = append(send, st.res[name])
				}
			}
		} else {
			for name := range subs {
				if _, ok := set[name]; ok && known[name] != st.verStr {
					send = append(send, st.res[name])
				}
			}
		}
		if len(send) > 0 {
			delete(c.watches, w)
			// At registration the stream knew only subscribed names, and the
			// subscription does not change while the watch is open.
			w.ch <- &edsResponse{req: w.req, sub: w.sub, st: st, items: send, knownSubscribed: true}
		}
	}
	return st.version
}

// CreateWatch answers at once if the stream lacks a subscribed resource
// (or on its first request), else keeps the watch open until update.
func (c *endpointCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	if req.GetTypeUrl() != resource.EndpointType {
		return nil, errors.New("endpoint cache: unexpected type " + req.GetTypeUrl())
	}
	w := &edsWatch{req: req, sub: sub, ch: ch}
	first := req.GetVersionInfo() == ""
	for {
		c.mu.Lock()
		st := c.cur
		c.mu.Unlock()
		resp := st.respond(w, first)
		c.mu.Lock()
		if c.cur != st { // changed meanwhile: look again
			c.mu.Unlock()
			continue
		}
		if resp != nil {
			c.mu.Unlock()
			ch <- resp
			return func() {}, nil
		}
		c.watches[w] = struct{}{}
		c.mu.Unlock()
		return func() {
			c.mu.Lock()
			delete(c.watches, w)
			c.mu.Unlock()
		}, nil
	}
}

// respond returns the response w's stream needs from st, nil if none: the
// subscribed resources it has not been sent at their current version. A
// stream that dropped names from its subscription also gets an (empty)
// response, so that what it was sent is tracked without them and they are
// sent again if it subscribes to them again.
func (st *edsSnapshot) respond(w *edsWatch, always bool) cache.Response {
	known := w.sub.ReturnedResources()
	if !always && !w.sub.IsWildcard() && w.req.GetVersionInfo() == st.verStr && len(known) == len(w.sub.SubscribedResources()) {
		// The stream has ACKed (or NACKed) the response of st, after which
		// it had every resource it subscribed to at their st versions, and
		// it subscribes to no other: go-control-plane drops from known
		// the names a request no longer subscribes to, so known holds no
		// other names than the subscription. This is every ACK; looking up
		// each of its names cost more than the endpoint change itself.
		return nil
	}
	var send []*edsResource
	knownSubscribed := 0
	if w.sub.IsWildcard() {
		for _, r := range st.res {
			if v, ok := known[r.name]; !ok || v != r.verStr {
				send = append(send, r)
			}
		}
		knownSubscribed = len(known) // a wildcard drops nothing
	} else {
		for name := range w.sub.SubscribedResources() {
			v, ok := known[name]
			if ok {
				knownSubscribed++
			}
			if r := st.res[name]; r != nil && (!ok || v != r.verStr) {
				send = append(send, r)
			}
		}
	}
	if len(send) == 0 && !always && knownSubscribed == len(known) {
		return nil
	}
	return &edsResponse{req: w.req, sub: w.sub, st: st, items: send, knownSubscribed: knownSubscribed == len(known)}
}

// Fetch is not supported: Weft serves no REST xDS.
func (c *endpointCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("endpoint cache: fetch is not supported")
}

// CreateDeltaWatch is not supported: delta EDS is served by a linear cache.
func (c *endpointCache) CreateDeltaWatch(*cache.DeltaRequest, cache.Subscription, chan cache.DeltaResponse) (func(), error) {
	return nil, errors.New("endpoint cache: delta is not supported")
}

// edsResponse is a state-of-the-world EDS response. The stream goroutine
// that sends it builds the message and the returned-resources map, outside
// the cache's lock.
type edsResponse struct {
	req   *cache.Request
	sub   cache.Subscription
	st    *edsSnapshot
	items []*edsResource // distinct resources of st
	// knownSubscribed: every name the stream was sent is still subscribed.
	knownSubscribed bool

	respOnce sync.Once
	resp     *discovery.DiscoveryResponse
	retOnce  sync.Once
	returned map[string]string
}

var _ cache.Response = (*edsResponse)(nil)

func (r *edsResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	r.respOnce.Do(func() {
		out := &discovery.DiscoveryResponse{VersionInfo: r.st.verStr, TypeUrl: resource.EndpointType}
		if len(r.items) == len(r.st.res) && len(r.items) > 0 {
			setEncodedResources(out, r.st.allEncoded())
		} else {
			out.Resources = make([]*anypb.Any, len(r.items))
			for i, it := range r.items {
				out.Resources[i] = it.any
			}
		}
		r.resp = out
	})
	return r.resp, nil
}

func (r *edsResponse) GetRequest() *cache.Request  { return r.req }
func (r *edsResponse) GetVersion() (string, error) { return r.st.verStr, nil }
func (r *edsResponse) GetResponseVersion() string  { return r.st.verStr }
func (r *edsResponse) GetContext() context.Context { return context.Background() }

// GetReturnedResources updates the stream's map of what it was sent (from
// its subscription) in place: the map is the stream's own, made by the
// previous response or the subscription, and go-control-plane calls this
// from the stream's goroutine just before sending, when no watch of the
// stream is open. Copying it for every response cost more than the rest of
// an endpoint change (1000 names for each of 2000 proxies).
func (r *edsResponse) GetReturnedResources() map[string]string {
	r.retOnce.Do(func() {
		out := r.sub.ReturnedResources()
		if out == nil {
			out = make(map[string]string, len(r.items))
		}
		if !r.knownSubscribed && !r.sub.IsWildcard() {
			subs := r.sub.SubscribedResources()
			for name := range out {
				if _, ok := subs[name]; !ok {
					delete(out, name)
				}
			}
		}
		if len(out) == 0 {
			// Empty, but maybe after deleting every name of an earlier
			// subscription: start the map afresh rather than fill it
			// around what the deletions left, which made it grow.
			clear(out)
		}
		for _, it := range r.items {
			out[it.name] = it.verStr
		}
		r.returned = out
	})
	return r.returned
}
