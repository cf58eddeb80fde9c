// Package dataplane compiles the validated xDS resources into the proxy's
// immutable runtime snapshot: listeners with their filter chains and
// compiled route tables, and the live clusters. A Holder swaps snapshots
// atomically; a request or connection loads the snapshot once and finishes
// on it even if a newer one is installed meanwhile.
package dataplane

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/router"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/proxy/xdsclient"
)

// Snapshot is one immutable runtime config.
type Snapshot struct {
	// Resources are the validated resources it was built from.
	Resources *xdsclient.Resources
	// Listeners by name.
	Listeners map[string]*Listener
	// Routes are the compiled RDS route configurations by name.
	Routes map[string]*router.Table
	// Clusters are the live clusters by name.
	Clusters map[string]*upstream.Cluster
	// Complete reports whether the resources were a full config (see
	// xdsclient.Resources.Complete).
	Complete bool
}

// Listener is a compiled listener.
type Listener struct {
	// Config is the validated listener.
	Config *proxyconfig.Listener
	// Chains are the compiled filter chains, in config order.
	Chains []*Chain
	// Default is the default filter chain, or nil.
	Default *Chain
	// Named is set when a chain matches TLS server names.
	Named bool
}

// Chain is a compiled filter chain.
type Chain struct {
	// Config is the validated chain.
	Config *proxyconfig.FilterChain
	// Routes is the chain's route table for HTTP chains; nil when the
	// chain is TCP or its RDS configuration has not arrived.
	Routes *router.Table
}

// Compiler builds snapshots, reusing route tables whose configuration did
// not change. It is safe for concurrent use.
type Compiler struct {
	mu     sync.Mutex
	tables map[*proxyconfig.RouteConfig]*router.Table
}

// Compile builds a snapshot from resources and the live clusters.
func (c *Compiler) Compile(res *xdsclient.Resources, clusters map[string]*upstream.Cluster) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.tables
	c.tables = map[*proxyconfig.RouteConfig]*router.Table{}
	var prevByName map[string]*router.Table // made when a table is first compiled
	table := func(rc *proxyconfig.RouteConfig) *router.Table {
		if rc == nil {
			return nil
		}
		t, ok := prev[rc]
		if !ok {
			// A new version of a route configuration compiles only its
			// changed virtual hosts (router.NewFrom).
			if prevByName == nil {
				prevByName = make(map[string]*router.Table, len(prev))
				for old, t := range prev {
					prevByName[old.Name] = t
				}
			}
			t = router.NewFrom(rc, prevByName[rc.Name])
		}
		c.tables[rc] = t
		return t
	}
	s := &Snapshot{
		Resources: res,
		Listeners: map[string]*Listener{},
		Routes:    map[string]*router.Table{},
		Clusters:  clusters,
		Complete:  res.Complete(),
	}
	for name, rc := range res.Routes {
		s.Routes[name] = table(rc)
	}
	chain := func(fc *proxyconfig.FilterChain) *Chain {
		if fc == nil {
			return nil
		}
		ch := &Chain{Config: fc}
		if fc.HTTP != nil {
			if fc.HTTP.RouteConfig != nil {
				ch.Routes = table(fc.HTTP.RouteConfig)
			} else {
				ch.Routes = s.Routes[fc.HTTP.RDSName]
			}
		}
		return ch
	}
	for name, l := range res.Listeners {
		cl := &Listener{Config: l, Default: chain(l.DefaultChain)}
		for _, fc := range l.FilterChains {
			cl.Chains = append(cl.Chains, chain(fc))
			cl.Named = cl.Named || len(fc.Match.ServerNames) > 0
		}
		s.Listeners[name] = cl
	}
	return s
}

// MatchChain selects the filter chain for a destination port and host (a
// name or an IP, possibly empty). Chains for the exact port win over
// port-less ones; then a chain whose prefix_ranges contain the IP (longest
// prefix), then one whose server_names hold the name (exact before
// wildcard), then a chain with neither; otherwise the default chain. As the
// Weft contract says, a chain with both server_names and prefix_ranges
// matches a host in either. It returns nil when nothing matches.
func (l *Listener) MatchChain(port uint32, host string) *Chain {
	if ch := l.matchPort(port, host, true); ch != nil {
		return ch
	}
	if ch := l.matchPort(0, host, false); ch != nil {
		return ch
	}
	return l.Default
}

// MatchDeclared is MatchChain without the default chain: the chain the
// control plane declared for this destination, or nil. Transparent
// listeners detect the protocol of connections it returns nil for.
func (l *Listener) MatchDeclared(port uint32, host string) *Chain {
	if ch := l.matchPort(port, host, true); ch != nil {
		return ch
	}
	return l.matchPort(0, host, false)
}

var errNotIP = errors.New("not an IP address")

// looksLikeIP is false for names that cannot be IP addresses (it saves
// the parse and its error for every request by host name).
func looksLikeIP(h string) bool {
	if h == "" {
		return false
	}
	c := h[0]
	return c >= '0' && c <= '9' || c == '[' || c == ':' || strings.IndexByte(h, ':') >= 0
}

func (l *Listener) matchPort(port uint32, host string, exact bool) *Chain {
	ip, ipErr := netip.Addr{}, errNotIP
	if looksLikeIP(host) {
		ip, ipErr = netip.ParseAddr(strings.Trim(host, "[]"))
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	var best *Chain
	bestScore := -1
	for _, ch := range l.Chains {
		m := &ch.Config.Match
		if m.DestinationPort != port || (!exact && m.DestinationPort != 0) {
			continue
		}
		score := -1
		if len(m.ServerNames) == 0 && len(m.PrefixRanges) == 0 {
			score = 0
		}
		if ipErr == nil {
			for _, p := range m.PrefixRanges {
				if p.Contains(ip.Unmap()) || p.Contains(ip) {
					score = max(score, 1000+p.Bits())
				}
			}
		}
		score = max(score, ServerNameScore(m.ServerNames, host))
		if score > bestScore {
			best, bestScore = ch, score
		}
	}
	return best
}

// ServerNameScore ranks how a chain's server names match host (lower
// case, without a trailing dot): 500 for an exact name, 100 plus its
// length for a wildcard ("*.example.com": the longer, the closer), -1
// when none does.
func ServerNameScore(names []string, host string) int {
	score := -1
	for _, n := range names {
		n = strings.ToLower(n)
		switch {
		case n == host:
			return 500
		case strings.HasPrefix(n, "*.") && len(host) > len(n)-1 && strings.HasSuffix(host, n[1:]):
			score = max(score, 100+len(n))
		}
	}
	return score
}

// Holder holds the current snapshot.
type Holder struct {
	p atomic.Pointer[Snapshot]
}

// Load returns the current snapshot, or nil before the first Store.
func (h *Holder) Load() *Snapshot { return h.p.Load() }

// Store installs a snapshot.
func (h *Holder) Store(s *Snapshot) { h.p.Store(s) }
