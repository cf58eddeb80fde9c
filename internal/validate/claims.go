package validate

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// Claims are what only one resource may hold: a host on a gateway (or
// "mesh") for VirtualServices, a host for DestinationRules, a registry
// host for ServiceEntries and Workloads (the Workloads of one service
// share theirs). The checks give a claim to the first resource put in
// force; this file makes the one that held it in the last build keep it.
//
// Stages check the resources in force in the last build first, so a
// newcomer finds the claims of those already taken. What that order
// leaves open is an edit of one of them that claims what another of them
// held and is checked later: the claim is reserved for its holder, and
// the edit is refused with the conflict, until that holder is checked.
// Should the holder then not hold it (an edit let it go, or it failed),
// the reservation was wrong and revise builds again without it.

// claim is one thing only one resource may hold.
type claim struct {
	kind string // "vs", "dr" or "host"
	host string // lower-cased
	gw   string // "vs": the gateway
}

// claimRef is a claim made by a resource.
type claimRef struct {
	claim
	by   string // the kind of the claiming resource
	host string // as resolved, for messages
	i    int    // the index of the host in spec.hosts
}

// field is the field that makes the claim.
func (c claimRef) field() string {
	switch {
	case c.kind == "dr":
		return "spec.host"
	case c.by == config.KindWorkload:
		return "spec.service"
	default:
		return fmt.Sprintf("spec.hosts[%d]", c.i)
	}
}

// conflict says that holder, which was in force first, holds the claim.
func (c claimRef) conflict(holder *config.Resource) string {
	switch {
	case c.kind == "vs":
		return fmt.Sprintf("host %s on gateway %s is already routed by %s, which was in force first; merge the two VirtualServices into one", c.host, c.gw, where(holder))
	case c.kind == "dr":
		return fmt.Sprintf("%s, which was in force first, already applies to host %s; merge the two into one DestinationRule", where(holder), c.host)
	case c.by == config.KindWorkload:
		return fmt.Sprintf("host %s is already declared by %s, which was in force first; a service comes from Workloads or a ServiceEntry, not both", c.host, where(holder))
	default:
		return fmt.Sprintf("host %s is already declared by %s, which was in force first; declare each host once", c.host, where(holder))
	}
}

// reservation is a claim reserved for the resource that held it in the
// last build.
type reservation struct {
	claim
	holder rkey
}

// claimsOf lists the claims of a resource's spec, read as the checks read
// it (none for a resource that cannot be read).
func claimsOf(r *config.Resource) []claimRef {
	var out []claimRef
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		gws := spec.GetGateways()
		if len(gws) == 0 {
			gws = []string{"mesh"}
		}
		for i, h := range spec.GetHosts() {
			if !validHost(h) {
				continue
			}
			fq := model.FQDN(h, r.Namespace)
			for _, g := range gws {
				out = append(out, claimRef{claim: claim{"vs", strings.ToLower(fq), gatewayKey(g, r.Namespace)}, by: r.Kind, host: fq, i: i})
			}
		}
	case *networking.DestinationRule:
		host := model.FQDN(spec.GetHost(), r.Namespace)
		if host != "" && validHost(host) {
			out = append(out, claimRef{claim: claim{kind: "dr", host: strings.ToLower(host)}, by: r.Kind, host: host})
		}
	case *networking.ServiceEntry:
		for i, h := range spec.GetHosts() {
			if h == "*" || !validHost(h) {
				continue
			}
			fq := model.FQDN(h, r.Namespace)
			out = append(out, claimRef{claim: claim{kind: "host", host: strings.ToLower(fq)}, by: r.Kind, host: fq, i: i})
		}
	case *config.Workload:
		if len(spec.Ports) > 0 && isDNSLabel(spec.Service) { // a client-only workload serves no host
			host := model.FQDN(spec.Service, r.Namespace)
			out = append(out, claimRef{claim: claim{kind: "host", host: strings.ToLower(host)}, by: r.Kind, host: host})
		}
	}
	return out
}

// shares reports whether resources of kinds a and b may hold the same
// claim c: the Workloads of one service.
func shares(c claim, a, b string) bool {
	return c.kind == "host" && a == config.KindWorkload && b == config.KindWorkload
}

// prevClaims records the claims of the last build's resources in force.
func (b *build) prevClaims() {
	b.prevHolders = make(map[claim]rkey, len(b.lastGood))
	for k, lg := range b.lastGood {
		for _, c := range claimsOf(lg) {
			h, ok := b.prevHolders[c.claim]
			switch {
			case !ok || h == k:
				b.prevHolders[c.claim] = k
			case !slices.Contains(b.prevMore[c.claim], k):
				// The Workloads of one service (the others were refused).
				if b.prevMore == nil {
					b.prevMore = map[claim][]rkey{}
				}
				b.prevMore[c.claim] = append(b.prevMore[c.claim], k)
			}
		}
	}
	for c, ks := range b.prevMore {
		ks = append(ks, b.prevHolders[c])
		slices.SortFunc(ks, func(x, y rkey) int {
			if x.less(y) {
				return -1
			}
			if y.less(x) {
				return 1
			}
			return 0
		})
		b.prevHolders[c], b.prevMore[c] = ks[0], ks[1:]
	}
}

// claim records claims of a resource just put in force.
func (b *build) claim(k rkey, cs []claimRef) {
	for _, c := range cs {
		if _, taken := b.claimed[c.claim]; !taken {
			b.claimed[c.claim] = k
		}
	}
}

// holds reports whether the resource k holds claim c at the end of the
// build.
func (b *build) holds(k rkey, c claim) bool {
	h, ok := b.claimed[c]
	return ok && (h == k || shares(c, h.kind, k.kind))
}

// checkReserved refuses the claims (cs) of r that another resource held
// in the last build and that this build has not checked yet. A claim
// taken in this build is left to the checks, which name the holder.
func (b *build) checkReserved(r *config.Resource, cs []claimRef, rep *reporter) {
	k := keyOf(r.Meta)
	for _, c := range cs {
		if _, taken := b.claimed[c.claim]; taken {
			continue
		}
		first, ok := b.prevHolders[c.claim]
		if !ok {
			continue
		}
		for i, n := -1, len(b.prevMore[c.claim]); i < n; i++ {
			h := first
			if i >= 0 {
				h = b.prevMore[c.claim][i]
			}
			if h == k || shares(c.claim, h.kind, k.kind) || b.decided[h] || b.rev.released[reservation{c.claim, h}] {
				continue
			}
			holder := b.set.Get(h.kind, h.namespace, h.name)
			if holder == nil {
				holder = b.unreadableVersion(h)
			}
			if holder == nil {
				continue // deleted
			}
			rep.errorf(c.field(), "%s", c.conflict(holder))
			b.reservations = append(b.reservations, reservation{c.claim, h})
			break
		}
	}
}

// unreadableVersion returns the kept version of k, when k's file cannot be
// read.
func (b *build) unreadableVersion(k rkey) *config.Resource {
	for _, lg := range b.unreadable {
		if keyOf(lg.Meta) == k {
			return lg
		}
	}
	return nil
}
