package validate

import (
	"fmt"
	"sort"

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

// revision is what the tries of one build learned.
type revision struct {
	// released: reservations that were wrong (their holder did not keep
	// the claim).
	released map[reservation]bool
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
	return changed
}

// unreadableFiles finds the files with a document that cannot be read
// (an error finding that names no resource) and the last good versions
// of the resources those files held in force that this build does not
// read: they stay in force (keepUnreadable) until the file reads again or
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

// keepUnreadable puts in force the last good version of a resource whose
// file cannot be read, if it passes every check of this build.
func (b *build) keepUnreadable(lg *config.Resource, check checkFunc) {
	k := keyOf(lg.Meta)
	if b.inForce[k] != nil {
		return
	}
	defer func() { b.decided[k] = true }()
	rep := &reporter{r: lg}
	apply := check(lg, rep)
	if rep.hasErrors() {
		return
	}
	b.inForce[k] = lg
	apply()
	b.claim(k, claimsOf(lg))
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
		b.snap.Status = append(b.snap.Status, model.ResourceStatus{
			Meta:            lg.Meta,
			State:           model.StateInvalid,
			ServingLastGood: serving,
			Findings:        []model.Finding{{Severity: model.SeverityError, Meta: lg.Meta, Line: lg.Line, Message: msg}},
		})
	}
}
