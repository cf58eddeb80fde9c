package validate

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// What keeps the resources in force when a change would take them out
// although they did not change: bad input is refused where it is, and the
// rest of the mesh keeps serving.
//
//   - A file that cannot be read (a document with a YAML syntax error, or
//     with no kind or name) holds nothing the build can see: the
//     resources it held in force keep their last good versions, with the
//     error on the file, until it reads again or is removed.
//   - A resource in force keeps its claims (claims.go).
//   - A DestinationRule edit that drops a subset a VirtualService in force
//     routes to is refused (its last good version stays) with an error
//     naming the routes, rather than accepted with the VirtualService
//     taken out (subsetLosses, checkHeld). So is its deletion
//     (heldDeleted, heldDeletedStatus).

// revision is what the tries of one build learned.
type revision struct {
	// held: DestinationRules whose new version is refused, with the
	// routes in force that use what it drops.
	held map[rkey][]subsetUse
	// released: reservations that were wrong (their holder did not keep
	// the claim).
	released map[reservation]bool
}

// subsetUse is a route in force that uses a subset of a host.
type subsetUse struct {
	host, subset string
	vs           *config.Resource
	field        string // the destination: "spec.http[0].route[1].destination"
}

// revise learns from the build what should change in another try, and
// reports whether anything did.
func (b *build) revise() bool {
	changed := false
	for _, rv := range b.reservations {
		if !b.holds(rv.holder, rv.claim) && !b.rev.released[rv] {
			if b.rev.released == nil {
				b.rev.released = map[reservation]bool{}
			}
			b.rev.released[rv] = true
			changed = true
		}
	}
	for _, u := range b.subsetLosses() {
		dr := u.dr
		if b.rev.held == nil {
			b.rev.held = map[rkey][]subsetUse{}
		}
		if !containsUse(b.rev.held[dr], u.use) {
			b.rev.held[dr] = append(b.rev.held[dr], u.use)
			changed = true
		}
	}
	return changed
}

func containsUse(us []subsetUse, u subsetUse) bool {
	for _, x := range us {
		if x.host == u.host && x.subset == u.subset && keyOf(x.vs.Meta) == keyOf(u.vs.Meta) && x.field == u.field {
			return true
		}
	}
	return false
}

type heldUse struct {
	dr  rkey
	use subsetUse
}

// subsetLosses finds the VirtualServices in force in the last build, and
// still there, that this build left out only because subsets they route
// to are gone from a DestinationRule's new version, and returns those
// routes with the DestinationRule to hold at its last good version.
func (b *build) subsetLosses() []heldUse {
	var keys []rkey // left out although their last good version was tried
	for k := range b.lastGoodErrors {
		if k.kind == config.KindVirtualService && b.inForce[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	var out []heldUse
	for _, k := range keys {
		errs := b.lastGoodErrors[k]
		cur := b.set.Get(k.kind, k.namespace, k.name)
		if cur == nil {
			cur = b.unreadableVersion(k)
		}
		if cur == nil {
			continue // deleted
		}
		refs := subsetRefs(b.lastGood[k])
		var found []heldUse
		for _, e := range errs {
			if e.Severity != model.SeverityError {
				continue
			}
			ref, ok := refs[e.Field]
			if !ok {
				found = nil
				break // left out for another reason too
			}
			dr, ok := b.subsetDropper(ref.host, ref.subset)
			if !ok {
				found = nil
				break
			}
			found = append(found, heldUse{dr, subsetUse{host: ref.host, subset: ref.subset, vs: cur, field: strings.TrimSuffix(e.Field, ".subset")}})
		}
		out = append(out, found...)
	}
	return out
}

type subsetRef struct{ host, subset string }

// subsetRefs maps the subset fields of a VirtualService's destinations
// ("spec.http[0].route[0].destination.subset") to the host and subset.
func subsetRefs(r *config.Resource) map[string]subsetRef {
	vs, ok := r.Spec.(*networking.VirtualService)
	if !ok {
		return nil
	}
	out := map[string]subsetRef{}
	add := func(field string, d *networking.Destination) {
		if d.GetSubset() != "" && d.GetHost() != "" {
			out[field+".subset"] = subsetRef{model.FQDN(d.GetHost(), r.Namespace), d.GetSubset()}
		}
	}
	for i, h := range vs.GetHttp() {
		for j, d := range h.GetRoute() {
			add(fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), d.GetDestination())
		}
		add(fmt.Sprintf("spec.http[%d].mirror", i), h.GetMirror())
		for j, m := range h.GetMirrors() {
			add(fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), m.GetDestination())
		}
	}
	for i, t := range vs.GetTcp() {
		for j, d := range t.GetRoute() {
			add(fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), d.GetDestination())
		}
	}
	for i, t := range vs.GetTls() {
		for j, d := range t.GetRoute() {
			add(fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), d.GetDestination())
		}
	}
	return out
}

// subsetDropper finds the DestinationRule whose last good version defined
// subset of host and whose new version, in force in this build, does not
// (it dropped the subset or moved to another host), or which was deleted.
func (b *build) subsetDropper(host, subset string) (rkey, bool) {
	var keys []rkey
	for k := range b.lastGood {
		if k.kind == config.KindDestinationRule {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	for _, k := range keys {
		lg := b.lastGood[k]
		if !definesSubset(lg, host, subset) {
			continue
		}
		if cur := b.inForce[k]; cur != nil && cur != lg && !definesSubset(cur, host, subset) {
			return k, true
		}
		if b.inForce[k] == nil && b.set.Get(k.kind, k.namespace, k.name) == nil && b.unreadableVersion(k) == nil {
			return k, true // deleted
		}
	}
	return rkey{}, false
}

// definesSubset reports whether a DestinationRule applies to host and
// defines subset.
func definesSubset(r *config.Resource, host, subset string) bool {
	dr, ok := r.Spec.(*networking.DestinationRule)
	if !ok || !strings.EqualFold(model.FQDN(dr.GetHost(), r.Namespace), host) {
		return false
	}
	for _, s := range dr.GetSubsets() {
		if s.GetName() == subset {
			return true
		}
	}
	return false
}

// checkHeld refuses the new version of a DestinationRule that drops
// subsets routes in force use (revise found them), naming the routes.
func (b *build) checkHeld(r *config.Resource, rep *reporter) {
	uses := b.rev.held[keyOf(r.Meta)]
	if len(uses) == 0 || b.set.Get(r.Kind, r.Namespace, r.Name) != r {
		return
	}
	type hs struct{ host, subset string }
	var order []hs
	by := map[hs][]subsetUse{}
	for _, u := range uses {
		k := hs{u.host, u.subset}
		if by[k] == nil {
			order = append(order, k)
		}
		by[k] = append(by[k], u)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].host != order[j].host {
			return order[i].host < order[j].host
		}
		return order[i].subset < order[j].subset
	})
	dr, _ := r.Spec.(*networking.DestinationRule)
	for _, k := range order {
		field := "spec.subsets"
		if !strings.EqualFold(model.FQDN(dr.GetHost(), r.Namespace), k.host) {
			field = "spec.host"
		}
		rep.errorf(field, "subset %q of host %s is still used by %s; change those routes first, then edit this DestinationRule again (until then its last good version stays in force)",
			k.subset, k.host, describeUses(by[k]))
	}
}

// describeUses lists routes by VirtualService: "VirtualService
// default/reviews (vs.yaml:1) in spec.http[0].route[0].destination and
// spec.http[1].mirror".
func describeUses(us []subsetUse) string {
	var order []rkey
	fields := map[rkey][]string{}
	at := map[rkey]*config.Resource{}
	for _, u := range us {
		k := keyOf(u.vs.Meta)
		if at[k] == nil {
			order = append(order, k)
			at[k] = u.vs
		}
		fields[k] = append(fields[k], u.field)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].less(order[j]) })
	parts := make([]string, 0, len(order))
	for _, k := range order {
		parts = append(parts, where(at[k])+" in "+strings.Join(fields[k], " and "))
	}
	return strings.Join(parts, ", and ")
}

// unreadableFiles finds the files with a document that cannot be read
// (an error finding that names no resource) and the last good versions
// of the resources those files held in force that this build does not
// read: they stay in force (keepLastGood) until the file reads again or
// is removed (Load then lists no finding for it).
func (b *build) unreadableFiles() {
	b.brokenFiles = map[string]int{}
	for _, f := range b.set.Findings {
		if f.Severity != model.SeverityError || f.Meta.Kind != "" || f.Meta.File == "" {
			continue
		}
		if l, ok := b.brokenFiles[f.Meta.File]; !ok || lineOf(f) < l {
			b.brokenFiles[f.Meta.File] = lineOf(f)
		}
	}
	if len(b.brokenFiles) == 0 {
		return
	}
	for k, lg := range b.lastGood {
		if _, broken := b.brokenFiles[lg.File]; broken && b.set.Get(k.kind, k.namespace, k.name) == nil {
			b.unreadable = append(b.unreadable, lg)
		}
	}
	sort.Slice(b.unreadable, func(i, j int) bool {
		x, y := b.unreadable[i], b.unreadable[j]
		if x.File != y.File {
			return x.File < y.File
		}
		if x.Line != y.Line {
			return x.Line < y.Line
		}
		return keyOf(x.Meta).less(keyOf(y.Meta))
	})
}

// keepLastGood puts in force the last good version of a resource this
// build does not read (its file cannot be read, or it was deleted while
// in use), if it passes every check of this build.
func (b *build) keepLastGood(lg *config.Resource, check checkFunc) {
	k := keyOf(lg.Meta)
	if b.inForce[k] != nil {
		return
	}
	b.putLastGood(k, lg, check)
	b.decided[k] = true
}

// unreadableStatus adds the status of the resources of unreadable files:
// invalid, with their last good version in force or, if it fails this
// build's checks, left out.
func (b *build) unreadableStatus() {
	for _, lg := range b.unreadable {
		line := b.brokenFiles[lg.File]
		serving := b.inForce[keyOf(lg.Meta)] == lg
		msg := fmt.Sprintf("cannot be read: its file has an error at line %d; its last good version stays in force until the file reads again or is removed", line)
		if !serving {
			msg = fmt.Sprintf("cannot be read: its file has an error at line %d, and its last good version fails this build's checks, so it is left out; fix the file", line)
		}
		b.keptStatus(lg, serving, msg)
	}
}

// heldDeletedRules lists the last good versions of the DestinationRules
// that were deleted although routes in force use their subsets (revise
// found them): they stay in force, like the resources of unreadable
// files, until those routes change.
func (b *build) heldDeletedRules() {
	var keys []rkey
	for k := range b.rev.held {
		if b.set.Get(k.kind, k.namespace, k.name) == nil && b.lastGood[k] != nil && b.unreadableVersion(k) == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	for _, k := range keys {
		b.heldDeleted = append(b.heldDeleted, b.lastGood[k])
	}
}

// heldDeletedStatus adds the status of the DestinationRules held after
// their deletion: invalid, their last good version in force, with an
// error naming the routes that use them.
func (b *build) heldDeletedStatus() {
	for _, lg := range b.heldDeleted {
		k := keyOf(lg.Meta)
		serving := b.inForce[k] == lg
		var hosts []string
		for _, u := range b.rev.held[k] {
			hosts = append(hosts, fmt.Sprintf("subset %q of host %s", u.subset, u.host))
		}
		slices.Sort(hosts)
		hosts = slices.Compact(hosts)
		verb := "is"
		if len(hosts) > 1 {
			verb = "are"
		}
		msg := fmt.Sprintf("was deleted, but %s %s still used by %s", strings.Join(hosts, " and "), verb, describeUses(b.rev.held[k]))
		if serving {
			msg += "; change those routes first, then delete it again (until then its last good version stays in force)"
		} else {
			msg += ", and its last good version fails this build's checks, so it is left out"
		}
		b.keptStatus(lg, serving, msg)
	}
}

// keptStatus adds the status of a resource this build does not read but
// whose last good version it tried to keep: invalid, with the error msg,
// and serving its last good version when that is in force.
func (b *build) keptStatus(lg *config.Resource, serving bool, msg string) {
	b.snap.Status = append(b.snap.Status, model.ResourceStatus{
		Meta:            lg.Meta,
		State:           model.StateInvalid,
		ServingLastGood: serving,
		Findings:        []model.Finding{{Severity: model.SeverityError, Meta: lg.Meta, Line: lg.Line, Message: msg}},
	})
}
