// Package validate turns loaded config (package config) and the runtime's
// workload instances into a model.Snapshot: it builds the service registry,
// resolves short host names, runs every check `weft analyze` reports, and
// keeps the last good version of a resource in force when a new version is
// broken.
//
// Checks run in stages, each seeing only what earlier stages put in force:
// WorkloadEntries, then the registry (Workloads and ServiceEntries),
// Gateways, DestinationRules, VirtualServices, Sidecars. Within a stage the
// resources that were in force in the last build are checked first, then
// the others, each in file order, so a newcomer never displaces a resource
// in force (claims.go). A resource with an error finding is left out of
// the snapshot; when the Builder holds a version of it (same kind,
// namespace and name) that was valid in an earlier build and still passes
// every check now, that version stays in force and the resource's status
// says ServingLastGood. The same holds for the resources of a file that
// cannot be read (bad YAML), until it reads again or is removed.
//
// Decisions worth knowing:
//   - Short hosts resolve with model.FQDN relative to the resource's
//     namespace everywhere, ServiceEntry hosts included ("ratings" in a
//     ServiceEntry of namespace shop is ratings.shop.svc.cluster.local), so a
//     VirtualService and a ServiceEntry written with the same short name
//     agree. Snapshot specs are clones holding the resolved names.
//   - exportTo is accepted with a warning and ignored: every resource is
//     visible to every namespace.
//   - Fields Weft does not support are listed in one table, fieldRules.
//   - Several Workloads with the same spec.service make one service; their
//     ports must agree.
//   - A Workload's spec.upstreams are checked against every host and port
//     declared by the Workloads and ServiceEntries read (declareHosts), not
//     against the registry built so far, so file order does not matter and
//     two Workloads may name each other.
package validate

import (
	"slices"
	"sort"
	"sync"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// Builder builds snapshots and remembers, between builds, the last valid
// version of every resource. It is safe for concurrent use; builds are
// serialized.
type Builder struct {
	mu       sync.Mutex
	version  uint64
	lastGood map[rkey]*config.Resource
}

// NewBuilder returns a Builder with no history.
func NewBuilder() *Builder { return &Builder{} }

// Build validates set against the instances and returns a new snapshot with
// the next version. set may be nil (no config). The Builder then remembers
// what is in force: a resource deleted from set is forgotten, so it cannot
// come back as a last good version (one missing because its file cannot be
// read is kept, see unreadableFiles).
func (b *Builder) Build(set *config.Set, instances []*model.Instance) *model.Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.version++
	bs := run(set, instances, b.lastGood, b.version)
	b.lastGood = bs.inForce
	return bs.snap
}

// Build is a one-shot form of Builder.Build for callers that keep only
// snapshots: the last good versions come from lastGood (may be nil), whose
// configs (Gateways, routing and traffic rules, Sidecars, Telemetries,
// ProxyConfigs, security policies) stay in force when their new versions
// are broken. A snapshot does not keep the specs of
// ServiceEntries, WorkloadEntries and Workloads, so for those kinds last
// good handling needs a Builder. The version is lastGood's plus one.
func Build(set *config.Set, instances []*model.Instance, lastGood *model.Snapshot) *model.Snapshot {
	prev := map[rkey]*config.Resource{}
	var version uint64 = 1
	if lastGood != nil {
		version = lastGood.Version + 1
		keepConfigs(prev, lastGood.Gateways)
		keepConfigs(prev, lastGood.DestinationRules)
		keepConfigs(prev, lastGood.VirtualServices)
		keepConfigs(prev, lastGood.Sidecars)
		keepConfigs(prev, lastGood.Telemetries)
		keepConfigs(prev, lastGood.ProxyConfigs)
		keepConfigs(prev, lastGood.PeerAuthentications)
		keepConfigs(prev, lastGood.AuthorizationPolicies)
		keepConfigs(prev, lastGood.RequestAuthentications)
	}
	return run(set, instances, prev, version).snap
}

// keepConfigs adds the configs cs to prev, by key.
func keepConfigs[T any](prev map[rkey]*config.Resource, cs []*model.Config[T]) {
	for _, c := range cs {
		prev[keyOf(c.Meta)] = &config.Resource{Meta: c.Meta, Spec: c.Spec}
	}
}

type rkey struct{ kind, namespace, name string }

func (k rkey) less(o rkey) bool {
	if k.kind != o.kind {
		return k.kind < o.kind
	}
	if k.namespace != o.namespace {
		return k.namespace < o.namespace
	}
	return k.name < o.name
}

func keyOf(m model.Meta) rkey { return rkey{m.Kind, m.Namespace, m.Name} }

// build is the state of one Build call.
type build struct {
	set       *config.Set
	instances []*model.Instance
	snap      *model.Snapshot
	lastGood  map[rkey]*config.Resource

	// inForce is every resource in the snapshot by key (current or last
	// good version).
	inForce map[rkey]*config.Resource
	// findings by the Meta of the resource they are about (file findings
	// by their file and line).
	findings map[model.Meta][]model.Finding
	// servingLastGood marks the resources read whose last good version is
	// in force.
	servingLastGood map[model.Meta]bool
	// leftOut are the errors of the resources put in force without a
	// part of them (reporter.leftOut), by Meta: they are StatePartial.
	leftOut map[model.Meta][]model.Finding
	// lastGoodErrors are the errors of the last good versions that failed
	// this build's checks, by key (read by revise).
	lastGoodErrors map[rkey][]model.Finding

	// rev is what earlier tries of this build learned (lastgood.go).
	rev *revision
	// unreadable are the last good versions of the resources of files
	// that cannot be read, kept in force (lastgood.go), by file and line.
	unreadable []*config.Resource
	// heldDeleted are the last good versions of DestinationRules deleted
	// while routes in force use their subsets, kept in force
	// (lastgood.go).
	heldDeleted []*config.Resource
	// brokenFiles: file -> line of its first error that no resource
	// carries (a document that cannot be read).
	brokenFiles map[string]int
	// decided marks the keys whose check is done in this build.
	decided map[rkey]bool
	// claims made in this build, and those of the last one (claims.go):
	// a holder, and the other Workloads of a service that shared one.
	claimed     map[claim]rkey
	prevHolders map[claim]rkey
	prevMore    map[claim][]rkey
	// reservations that refused a resource in this build.
	reservations []reservation

	workloadEntries []*config.Resource
	hostOwner       map[string]*config.Resource // registry host -> declaring resource
	declared        map[string]*model.Service   // every host a Workload or ServiceEntry read declares (see declareHosts)
	gateways        map[string]*config.Resource // "ns/name" -> Gateway
	drByHost        map[string]*config.Resource
	subsets         map[string][]string // host -> subset names of its DestinationRule
	vsClaims        map[string]*config.Resource
	// delegates are the VirtualServices without hosts in force, by
	// resource key (delegate.go).
	delegates      map[rkey]*delegate
	sidecarDefault map[string]*config.Resource // namespace -> Sidecar without selector
	// telemetryDefault: namespace -> Telemetry without selector (made on first use).
	telemetryDefault map[string]*config.Resource
	// peerAuthDefault: namespace -> PeerAuthentication without selector.
	peerAuthDefault map[string]*config.Resource
	// proxyConfigDefault: namespace -> ProxyConfig without selector;
	// proxyConfigSelects: "ns/name" of a Workload -> the ProxyConfig with
	// a selector that selects it (made on first use).
	proxyConfigDefault map[string]*config.Resource
	proxyConfigSelects map[string]*config.Resource
}

// run builds a snapshot, trying again while a try learns something that
// changes the outcome (revise: a DestinationRule edit to refuse, a claim
// reservation to drop); each try learns more, so this ends.
func run(set *config.Set, instances []*model.Instance, lastGood map[rkey]*config.Resource, version uint64) *build {
	if set == nil {
		set = &config.Set{}
	}
	rev := &revision{}
	for {
		b := runOnce(set, instances, lastGood, version, rev)
		if !b.revise() {
			return b
		}
	}
}

func runOnce(set *config.Set, instances []*model.Instance, lastGood map[rkey]*config.Resource, version uint64, rev *revision) *build {
	b := &build{
		set:       set,
		instances: instances,
		lastGood:  lastGood,
		rev:       rev,
		snap: &model.Snapshot{
			Version:   version,
			Services:  map[string]*model.Service{},
			Instances: map[string]*model.Instance{},
		},
		inForce:         map[rkey]*config.Resource{},
		findings:        map[model.Meta][]model.Finding{},
		servingLastGood: map[model.Meta]bool{},
		leftOut:         map[model.Meta][]model.Finding{},
		lastGoodErrors:  map[rkey][]model.Finding{},
		decided:         make(map[rkey]bool, len(set.Resources)),
		claimed:         make(map[claim]rkey, len(set.Resources)),
		hostOwner:       map[string]*config.Resource{},
		declared:        map[string]*model.Service{},
		gateways:        map[string]*config.Resource{},
		drByHost:        map[string]*config.Resource{},
		subsets:         map[string][]string{},
		vsClaims:        map[string]*config.Resource{},
		sidecarDefault:  map[string]*config.Resource{},
	}
	for _, f := range set.Findings {
		b.findings[f.Meta] = append(b.findings[f.Meta], f)
	}
	b.unreadableFiles()
	b.heldDeletedRules()
	b.prevClaims()
	for _, inst := range instances {
		if inst != nil {
			b.snap.Instances[inst.ProxyKey()] = inst
		}
	}
	b.declareHosts()
	b.stage(b.checkWorkloadEntry, config.KindWorkloadEntry)
	b.stage(b.checkRegistry, config.KindWorkload, config.KindServiceEntry)
	b.finishRegistry()
	b.stage(b.checkGateway, config.KindGateway)
	b.stage(b.checkDestinationRule, config.KindDestinationRule)
	b.stageIf(b.isDelegate, b.checkDelegateVirtualService, config.KindVirtualService)
	b.stageIf(func(r *config.Resource) bool { return !b.isDelegate(r) }, b.checkVirtualService, config.KindVirtualService)
	b.rootsLastGood()
	b.warnUnusedDelegates()
	b.stage(b.checkSidecar, config.KindSidecar)
	b.stage(b.checkTelemetry, config.KindTelemetry)
	b.stage(b.checkProxyConfig, config.KindProxyConfig)
	b.stage(b.checkPeerAuthentication, config.KindPeerAuthentication)
	b.stage(b.checkAuthorizationPolicy, config.KindAuthorizationPolicy)
	b.stage(b.checkRequestAuthentication, config.KindRequestAuthentication)
	b.status()
	b.sortSnapshot()
	return b
}

// checkFunc checks one resource, reporting through rep, and returns what
// to do to put it in force (called only if rep has no error).
type checkFunc func(r *config.Resource, rep *reporter) (apply func())

// stage checks the resources of the given kinds: first those in force in
// the last build (in the order read, then those of unreadable files), then
// the others in the order read.
func (b *build) stage(check checkFunc, kinds ...string) {
	b.stageIf(nil, check, kinds...)
}

// stageIf is stage for the resources of the kinds that pick (nil: all)
// selects.
func (b *build) stageIf(pick func(*config.Resource) bool, check checkFunc, kinds ...string) {
	var newcomers []*config.Resource
	for _, r := range b.set.Resources {
		if !contains(kinds, r.Kind) || pick != nil && !pick(r) {
			continue
		}
		if k := keyOf(r.Meta); b.lastGood[k] == nil || b.set.Get(k.kind, k.namespace, k.name) != r {
			newcomers = append(newcomers, r)
			continue
		}
		b.checkOne(r, pick, check)
	}
	for _, lg := range slices.Concat(b.unreadable, b.heldDeleted) {
		if contains(kinds, lg.Kind) && (pick == nil || pick(lg)) {
			b.keepLastGood(lg, check)
		}
	}
	for _, r := range newcomers {
		b.checkOne(r, pick, check)
	}
}

// checkOne checks r and puts it in force, or else its last good version.
func (b *build) checkOne(r *config.Resource, pick func(*config.Resource) bool, check checkFunc) {
	k := keyOf(r.Meta)
	if b.set.Get(k.kind, k.namespace, k.name) == r {
		defer func() { b.decided[k] = true }()
	}
	if !r.Invalid {
		rep := &reporter{r: r}
		cs := claimsOf(r)
		b.checkReserved(r, cs, rep)
		b.checkHeld(r, rep)
		apply := check(r, rep)
		b.findings[r.Meta] = append(b.findings[r.Meta], rep.out...)
		b.findings[r.Meta] = append(b.findings[r.Meta], rep.leftOut...)
		if !rep.hasErrors() {
			if len(rep.leftOut) > 0 {
				b.leftOut[r.Meta] = rep.leftOut
			}
			b.inForce[k] = r // apply may replace it
			apply()
			b.claim(k, cs)
			return
		}
	}
	b.tryLastGood(r, pick, check)
}

// tryLastGood puts the last good version of r in force if there is one,
// r is the holder of its key (not a duplicate), and that version passes
// every check of this build. Its findings are not reported: they are
// about a version no longer in any file (its errors are kept for revise).
// A last good version that pick (nil: any) does not select belongs to
// another stage.
func (b *build) tryLastGood(r *config.Resource, pick func(*config.Resource) bool, check checkFunc) {
	k := keyOf(r.Meta)
	lg := b.lastGood[k]
	if lg == nil || b.set.Get(k.kind, k.namespace, k.name) != r || b.inForce[k] != nil || pick != nil && !pick(lg) {
		return
	}
	if b.putLastGood(k, lg, check) {
		b.servingLastGood[r.Meta] = true
	}
}

// putLastGood puts lg, the last good version of k, in force if it passes
// check in this build; else its errors are kept for revise.
func (b *build) putLastGood(k rkey, lg *config.Resource, check checkFunc) bool {
	rep := &reporter{r: lg}
	apply := check(lg, rep)
	if rep.hasErrors() {
		b.lastGoodErrors[k] = rep.out
		return false
	}
	b.inForce[k] = lg
	apply()
	b.claim(k, claimsOf(lg))
	return true
}

// status fills snap.Status: one entry per resource read, and one per
// place in a file with findings that belong to no resource (bad YAML).
func (b *build) status() {
	seen := map[model.Meta]bool{}
	for _, r := range b.set.Resources {
		fs := b.findings[r.Meta]
		seen[r.Meta] = true
		st := model.ResourceStatus{Meta: r.Meta, State: model.StateValid, Findings: sortFindings(fs)}
		switch lo := b.leftOut[r.Meta]; {
		case r.Invalid || hasError(slices.DeleteFunc(slices.Clone(fs), func(f model.Finding) bool { return slices.Contains(lo, f) })):
			st.State = model.StateInvalid
			st.ServingLastGood = b.servingLastGood[r.Meta]
		case len(lo) > 0:
			st.State = model.StatePartial
		}
		b.snap.Status = append(b.snap.Status, st)
	}
	for m, fs := range b.findings {
		if seen[m] {
			continue
		}
		b.snap.Status = append(b.snap.Status, model.ResourceStatus{Meta: m, State: model.StateInvalid, Findings: sortFindings(fs)})
	}
	b.unreadableStatus()
	b.heldDeletedStatus()
	sort.Slice(b.snap.Status, func(i, j int) bool { return metaLess(b.snap.Status[i].Meta, b.snap.Status[j].Meta) })
}

func metaLess(a, b model.Meta) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	if a.File != b.File {
		return a.File < b.File
	}
	return a.Line < b.Line
}

// sortFindings orders findings errors first, then by line and field.
func sortFindings(fs []model.Finding) []model.Finding {
	if len(fs) == 0 {
		return nil
	}
	out := append([]model.Finding(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Severity != b.Severity {
			return a.Severity == model.SeverityError
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Field < b.Field
	})
	return out
}

func hasError(fs []model.Finding) bool {
	for _, f := range fs {
		if f.Severity == model.SeverityError {
			return true
		}
	}
	return false
}

func (b *build) sortSnapshot() {
	s := b.snap
	sortConfigs(s.VirtualServices)
	sortConfigs(s.DestinationRules)
	sortConfigs(s.Sidecars)
	sortConfigs(s.Gateways)
	sortConfigs(s.Telemetries)
	sortConfigs(s.ProxyConfigs)
	sortConfigs(s.PeerAuthentications)
	sortConfigs(s.AuthorizationPolicies)
	sortConfigs(s.RequestAuthentications)
}

func sortConfigs[T any](cs []*model.Config[T]) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Namespace != cs[j].Namespace {
			return cs[i].Namespace < cs[j].Namespace
		}
		return cs[i].Name < cs[j].Name
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reporter collects the findings about one resource, placing each on the
// line of its field.
type reporter struct {
	r   *config.Resource
	out []model.Finding
	// leftOut are errors about a part of the resource that is left out of
	// the version put in force (a Gateway server whose certificate does
	// not load) while the rest of it serves: reported, but not counted by
	// hasErrors.
	leftOut []model.Finding
}

func (p *reporter) add(sev model.Severity, field, msg string) {
	p.out = append(p.out, model.Finding{Severity: sev, Meta: p.r.Meta, Line: p.r.LineOf(field), Field: field, Message: msg})
}

func (p *reporter) errorf(field, format string, args ...any) {
	p.add(model.SeverityError, field, sprintf(format, args...))
}

func (p *reporter) warnf(field, format string, args ...any) {
	p.add(model.SeverityWarning, field, sprintf(format, args...))
}

// leaveOutf reports an error about a part of the resource left out of
// force (see leftOut).
func (p *reporter) leaveOutf(field, format string, args ...any) {
	p.leftOut = append(p.leftOut, model.Finding{Severity: model.SeverityError, Meta: p.r.Meta, Line: p.r.LineOf(field), Field: field, Message: sprintf(format, args...)})
}

func (p *reporter) hasErrors() bool { return hasError(p.out) }
