package proxyconfig

import (
	"crypto/sha256"
	"fmt"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// virtualHostsField is RouteConfiguration.virtual_hosts' field number.
var virtualHostsField = (&routev3.RouteConfiguration{}).ProtoReflect().Descriptor().Fields().ByName("virtual_hosts").Number()

// VirtualHostCache parses route configurations from their wire form and
// keeps each virtual host's parsed form by the SHA-256 of its bytes, so
// that a route configuration sent again with one virtual host changed
// decodes and validates that one, not all of them. In a mesh every
// service is a virtual host of one route configuration (with 100
// services 55 KB, with 1000 0.54 MB), which the control plane sends
// whole whenever a service comes, goes or changes its routing; decoding
// and validating it all again took most of the CPU a sidecar spent on
// such a change (docs/performance.md, optimisation 28). A parse depends
// on the bytes alone, so a virtual host's bytes give its parsed form.
//
// What it keeps: the virtual hosts of the route configurations last
// parsed without error under each name, until Keep finds that name no
// longer in force. A VirtualHostCache is not safe for concurrent use.
// The zero value is ready to use.
type VirtualHostCache struct {
	hosts  map[[sha256.Size]byte]cachedVirtualHost
	byName map[string][][sha256.Size]byte // the virtual hosts of each route configuration, by name
}

// cachedVirtualHost is a parsed virtual host and what it leaves
// unenforced. Both are read-only once made.
type cachedVirtualHost struct {
	vh         *VirtualHost
	unenforced []string
}

// ParseRouteConfig decodes and validates the wire form of a
// RouteConfiguration, as ParseRouteConfig does the decoded message,
// reusing the parsed form of every virtual host whose bytes it has kept.
// It returns the name it read, if any, with a decoding error.
func (c *VirtualHostCache) ParseRouteConfig(b []byte) (name string, rc *RouteConfig, err error) {
	// The fields other than virtual_hosts are decoded as a message of
	// their own; each virtual host's bytes are looked up first.
	var rest []byte
	var hosts [][]byte
	for in := b; len(in) > 0; {
		num, typ, n := protowire.ConsumeTag(in)
		if n < 0 {
			return "", nil, fmt.Errorf("route configuration: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, in[n:])
		if m < 0 {
			return "", nil, fmt.Errorf("route configuration: %w", protowire.ParseError(m))
		}
		if num == virtualHostsField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(in[n : n+m])
			hosts = append(hosts, v)
		} else {
			rest = append(rest, in[:n+m]...)
		}
		in = in[n+m:]
	}
	top := &routev3.RouteConfiguration{}
	if err := proto.Unmarshal(rest, top); err != nil {
		return "", nil, fmt.Errorf("route configuration: %w", err)
	}
	if c.hosts == nil {
		c.hosts = map[[sha256.Size]byte]cachedVirtualHost{}
		c.byName = map[string][][sha256.Size]byte{}
	}
	sums := make([][sha256.Size]byte, len(hosts))
	rc, err = parseRouteConfig(top, len(hosts), func(i int) (*VirtualHost, []string, error) {
		sum := sha256.Sum256(hosts[i])
		sums[i] = sum
		if k, ok := c.hosts[sum]; ok {
			return k.vh, k.unenforced, nil
		}
		vh := &routev3.VirtualHost{}
		if err := proto.Unmarshal(hosts[i], vh); err != nil {
			return nil, nil, fmt.Errorf("virtual_hosts[%d]: %w", i, err)
		}
		var notes []string
		v, err := parseVirtualHost(vh, &notes)
		if err != nil {
			return nil, nil, fmt.Errorf("virtual_hosts[%d] %q: %w", i, vh.GetName(), err)
		}
		c.hosts[sum] = cachedVirtualHost{vh: v, unenforced: notes}
		return v, notes, nil
	})
	if err == nil {
		c.byName[top.GetName()] = sums
	}
	return top.GetName(), rc, err
}

// Keep drops what it keeps for the route configurations that inForce
// does not report in force (by name), and the virtual hosts that only
// those, or parses that failed, held.
func (c *VirtualHostCache) Keep(inForce func(name string) bool) {
	used := make(map[[sha256.Size]byte]bool, len(c.hosts))
	for name, sums := range c.byName {
		if !inForce(name) {
			delete(c.byName, name)
			continue
		}
		for _, s := range sums {
			used[s] = true
		}
	}
	for s := range c.hosts {
		if !used[s] {
			delete(c.hosts, s)
		}
	}
}

// Len is the number of virtual hosts kept.
func (c *VirtualHostCache) Len() int { return len(c.hosts) }
