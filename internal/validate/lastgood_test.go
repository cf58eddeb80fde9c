package validate

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/testcerts"
)

// The tests here build a config folder several times with one Builder, as
// the control plane does on each change, and check that what was in force
// stays in force when a change elsewhere is bad.

// lgVS is a VirtualService "reviews" for host reviews routing to subset.
func lgVS(subset string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: ` + subset + `}
`
}

// lgNamedVS is lgVS named name for hosts (a YAML list).
func lgNamedVS(name, hosts, subset string) string {
	return strings.Replace(strings.Replace(lgVS(subset), "{name: reviews}", "{name: "+name+"}", 1), "hosts: [reviews]", "hosts: "+hosts, 1)
}

// lgBrokenVS is lgVS for subset with a YAML syntax error on line 7.
func lgBrokenVS(subset string) string {
	return strings.Replace(lgVS(subset), "subset: "+subset+"}", "subset: "+subset, 1)
}

// lgLoad writes name/content pairs into dir (replacing the YAML files
// there) and loads the folder as the control plane does.
func lgLoad(t *testing.T, dir string, kv ...string) *config.Set {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, kv[i]), []byte(kv[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, _ := config.Load(dir)
	return set
}

var lgLineRE = regexp.MustCompile(`^([^:]*):\d+: `)

// lgErrors lists the error findings, the folder's path cut to "DIR" and
// the line each is on left out (the parser's to say, tested there).
func lgErrors(snap *model.Snapshot, dir string) []string {
	var out []string
	for _, f := range Findings(snap) {
		if f.Severity == model.SeverityError {
			out = append(out, lgLineRE.ReplaceAllString(strings.ReplaceAll(f.String(), dir, "DIR"), "$1: "))
		}
	}
	return out
}

// lgFileErrorLine is the line of the first error about a file, not a
// resource, that set holds.
func lgFileErrorLine(t *testing.T, set *config.Set) int {
	for _, f := range set.Findings {
		if f.Meta.Kind == "" && f.Severity == model.SeverityError {
			return f.Line
		}
	}
	t.Fatalf("no error about a file in %v", set.Findings)
	return 0
}

// lgRoutes lists the VirtualServices in force as "name->subset" (the
// first route's destination), sorted.
func lgRoutes(snap *model.Snapshot) []string {
	var out []string
	for _, vs := range snap.VirtualServices {
		out = append(out, vs.Name+"->"+vs.Spec.GetHttp()[0].GetRoute()[0].GetDestination().GetSubset())
	}
	slices.Sort(out)
	return out
}

// lgState is a resource's state in a snapshot's status: "Valid",
// "Invalid", "Invalid (last good)" or "" when it has none.
func lgState(snap *model.Snapshot, kind, name string) string {
	for _, st := range snap.Status {
		if st.Kind == kind && st.Name == name {
			if st.ServingLastGood {
				return string(st.State) + " (last good)"
			}
			return string(st.State)
		}
	}
	return ""
}

// TestInvalidYAMLEditKeepsLastGood: an edit that leaves a file with a
// document that is not valid YAML (so no kind or name can be read from
// it) keeps the resources the file held in force at their last good
// versions, with the error on the file, until the file reads again or is
// removed.
func TestInvalidYAMLEditKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	const ratings = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"
	steps := []struct {
		name       string
		files      []string
		wantRoutes []string
		wantState  string // of VirtualService reviews
		wantErrors []string
	}{
		{name: "valid", files: []string{"base.yaml", meshBase, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantState: "Valid"},
		{name: "bad YAML keeps the last good version", files: []string{"base.yaml", meshBase, "vs.yaml", lgBrokenVS("v2")},
			wantRoutes: []string{"reviews->v1"}, wantState: "Invalid (last good)",
			wantErrors: []string{
				"DIR/vs.yaml: VirtualService default/reviews: cannot be read: its file has an error at line LINE; its last good version stays in force until the file reads again or is removed",
				"DIR/vs.yaml: invalid YAML: did not find expected ',' or '}'",
			}},
		{name: "still bad in the next build", files: []string{"base.yaml", meshBase, "vs.yaml", lgBrokenVS("v2")},
			wantRoutes: []string{"reviews->v1"}, wantState: "Invalid (last good)",
			wantErrors: []string{
				"DIR/vs.yaml: VirtualService default/reviews: cannot be read: its file has an error at line LINE; its last good version stays in force until the file reads again or is removed",
				"DIR/vs.yaml: invalid YAML: did not find expected ',' or '}'",
			}},
		{name: "a readable document of the file is read", files: []string{"base.yaml", meshBase, "vs.yaml", lgBrokenVS("v2") + ratings},
			wantRoutes: []string{"ratings->", "reviews->v1"}, wantState: "Invalid (last good)",
			wantErrors: []string{
				"DIR/vs.yaml: VirtualService default/reviews: cannot be read: its file has an error at line LINE; its last good version stays in force until the file reads again or is removed",
				"DIR/vs.yaml: invalid YAML: did not find expected ',' or '}'",
			}},
		{name: "fixed", files: []string{"base.yaml", meshBase, "vs.yaml", lgVS("v2")},
			wantRoutes: []string{"reviews->v2"}, wantState: "Valid"},
		{name: "bad again", files: []string{"base.yaml", meshBase, "vs.yaml", lgBrokenVS("v3")},
			wantRoutes: []string{"reviews->v2"}, wantState: "Invalid (last good)",
			wantErrors: []string{
				"DIR/vs.yaml: VirtualService default/reviews: cannot be read: its file has an error at line LINE; its last good version stays in force until the file reads again or is removed",
				"DIR/vs.yaml: invalid YAML: did not find expected ',' or '}'",
			}},
		{name: "file removed", files: []string{"base.yaml", meshBase}},
	}
	b := NewBuilder()
	var prev *model.Snapshot
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			set := lgLoad(t, dir, st.files...)
			snap := b.Build(set, nil)
			// The one-shot form, from the previous snapshot, agrees.
			one := Build(set, nil, prev)
			prev = snap
			for _, s := range []*model.Snapshot{snap, one} {
				if diff := cmp.Diff(st.wantRoutes, lgRoutes(s)); diff != "" {
					t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
				}
				if got := lgState(s, "VirtualService", "reviews"); got != st.wantState {
					t.Errorf("VirtualService reviews is %q, want %q", got, st.wantState)
				}
				var want []string
				for _, e := range st.wantErrors {
					want = append(want, strings.Replace(e, "LINE", strconv.Itoa(lgFileErrorLine(t, set)), 1))
				}
				if diff := cmp.Diff(want, lgErrors(s, dir)); diff != "" {
					t.Errorf("errors (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestConflictingClaimKeepsIncumbent: when a resource claims what one in
// force in the last build holds (a host on a gateway, a host's
// DestinationRule, a registry host), the one in force keeps it and the
// other is refused with the conflict, whatever the file order; with no
// history, the file order decides as before.
func TestConflictingClaimKeepsIncumbent(t *testing.T) {
	se := func(name string) string {
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + "}\nspec:\n  hosts: [api.example.com]\n  resolution: DNS\n  ports: [{number: 443, name: tls}]\n"
	}
	dr := func(name string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name + "}\nspec:\n  host: ratings\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
	}
	sidecar := func(name string) string {
		return "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " + name + "}\nspec:\n  egress: [{hosts: [\"./*\"]}]\n"
	}
	type state struct{ kind, name, want string }
	cases := []struct {
		name       string
		before     [][]string // folder states built in turn, the first with no error
		after      []string
		wantRoutes []string
		wantStates []state
		wantErrors []string
		check      func(t *testing.T, snap *model.Snapshot)
	}{{
		name:       "new VirtualService in a file read first",
		before:     [][]string{{"base.yaml", meshBase, "reviews.yaml", lgNamedVS("reviews-main", "[reviews]", "v1")}},
		after:      []string{"base.yaml", meshBase, "reviews.yaml", lgNamedVS("reviews-main", "[reviews]", "v1"), "a-experiment.yaml", lgNamedVS("reviews-experiment", "[reviews]", "v3")},
		wantRoutes: []string{"reviews-main->v1"},
		wantStates: []state{{"VirtualService", "reviews-main", "Valid"}, {"VirtualService", "reviews-experiment", "Invalid"}},
		wantErrors: []string{"DIR/a-experiment.yaml: VirtualService default/reviews-experiment: spec.hosts[0]: host reviews.default.svc.cluster.local on gateway mesh is already routed by VirtualService default/reviews-main (DIR/reviews.yaml:1); merge the two VirtualServices into one"},
	}, {
		name: "the incumbent removed, the newcomer takes over",
		before: [][]string{
			{"base.yaml", meshBase, "reviews.yaml", lgNamedVS("reviews-main", "[reviews]", "v1")},
			{"base.yaml", meshBase, "reviews.yaml", lgNamedVS("reviews-main", "[reviews]", "v1"), "a-experiment.yaml", lgNamedVS("reviews-experiment", "[reviews]", "v3")},
		},
		after:      []string{"base.yaml", meshBase, "a-experiment.yaml", lgNamedVS("reviews-experiment", "[reviews]", "v3")},
		wantRoutes: []string{"reviews-experiment->v3"},
		wantStates: []state{{"VirtualService", "reviews-experiment", "Valid"}},
	}, {
		name:       "an edit claims the host of another VirtualService in force",
		before:     [][]string{{"base.yaml", meshBase, "a.yaml", lgNamedVS("a", "[ratings]", "v1"), "c.yaml", lgNamedVS("c", "[reviews]", "v2")}},
		after:      []string{"base.yaml", meshBase, "a.yaml", lgNamedVS("a", "[ratings, reviews]", "v3"), "c.yaml", lgNamedVS("c", "[reviews]", "v2")},
		wantRoutes: []string{"a->v1", "c->v2"},
		wantStates: []state{{"VirtualService", "a", "Invalid (last good)"}, {"VirtualService", "c", "Valid"}},
		wantErrors: []string{"DIR/a.yaml: VirtualService default/a: spec.hosts[1]: host reviews.default.svc.cluster.local on gateway mesh is already routed by VirtualService default/c (DIR/c.yaml:1), which was in force first; merge the two VirtualServices into one"},
	}, {
		name:       "an edit claims a host another edit lets go",
		before:     [][]string{{"base.yaml", meshBase, "a.yaml", lgNamedVS("a", "[ratings]", "v1"), "c.yaml", lgNamedVS("c", "[reviews]", "v2")}},
		after:      []string{"base.yaml", meshBase, "a.yaml", lgNamedVS("a", "[ratings, reviews]", "v3"), "c.yaml", lgNamedVS("c", "[reviews.example.com]", "v2")},
		wantRoutes: []string{"a->v3", "c->v2"},
		wantStates: []state{{"VirtualService", "a", "Valid"}, {"VirtualService", "c", "Valid"}},
		check: func(t *testing.T, snap *model.Snapshot) {
			for _, vs := range snap.VirtualServices {
				if vs.Name == "a" && len(vs.Spec.GetHosts()) != 2 {
					t.Errorf("VirtualService a in force has hosts %v, want its new version's two", vs.Spec.GetHosts())
				}
			}
		},
	}, {
		name:       "new DestinationRule in a file read first",
		before:     [][]string{{"base.yaml", meshBase, "vs.yaml", lgVS("v1"), "ratings.yaml", dr("ratings")}},
		after:      []string{"base.yaml", meshBase, "vs.yaml", lgVS("v1"), "ratings.yaml", dr("ratings"), "a.yaml", dr("ratings-new")},
		wantRoutes: []string{"reviews->v1"},
		wantStates: []state{{"DestinationRule", "ratings", "Valid"}, {"DestinationRule", "ratings-new", "Invalid"}},
		wantErrors: []string{"DIR/a.yaml: DestinationRule default/ratings-new: spec.host: DestinationRule default/ratings (DIR/ratings.yaml:1) already applies to host ratings.default.svc.cluster.local; merge the two into one DestinationRule"},
	}, {
		name:       "new ServiceEntry in a file read first",
		before:     [][]string{{"z.yaml", se("api")}},
		after:      []string{"z.yaml", se("api"), "a.yaml", se("api-new")},
		wantStates: []state{{"ServiceEntry", "api", "Valid"}, {"ServiceEntry", "api-new", "Invalid"}},
		wantErrors: []string{"DIR/a.yaml: ServiceEntry default/api-new: spec.hosts[0]: host api.example.com is already declared by ServiceEntry default/api (DIR/z.yaml:1); declare each host once"},
		check: func(t *testing.T, snap *model.Snapshot) {
			if svc := snap.Services["api.example.com"]; svc == nil || svc.Source != "ServiceEntry default/api" {
				t.Errorf("api.example.com is declared by %v, want ServiceEntry default/api", svc)
			}
		},
	}, {
		name:       "new Workload of the service with another port name, in a file read first",
		before:     [][]string{{"base.yaml", meshBase}},
		after:      []string{"base.yaml", meshBase, "a.yaml", "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: reviews-v2}\nspec:\n  service: reviews\n  ports: [{name: web, number: 9080}]\n"},
		wantStates: []state{{"Workload", "reviews", "Valid"}, {"Workload", "reviews-v2", "Invalid"}},
		wantErrors: []string{`DIR/a.yaml: Workload default/reviews-v2: spec.ports[0]: port 9080 is "http" (HTTP) in Workload default/reviews (DIR/base.yaml:1); give it the same name and protocol in every Workload of service reviews`},
	}, {
		name:       "new default Sidecar of a namespace in a file read first",
		before:     [][]string{{"z.yaml", sidecar("main")}},
		after:      []string{"z.yaml", sidecar("main"), "a.yaml", sidecar("other")},
		wantStates: []state{{"Sidecar", "main", "Valid"}, {"Sidecar", "other", "Invalid"}},
		wantErrors: []string{"DIR/a.yaml: Sidecar default/other: spec: namespace default already has a Sidecar without workloadSelector, Sidecar default/main (DIR/z.yaml:1); keep one"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := NewBuilder()
			for i, files := range tc.before {
				snap := b.Build(lgLoad(t, dir, files...), nil)
				if errs := lgErrors(snap, dir); i == 0 && len(errs) > 0 {
					t.Fatalf("setup: %v", errs)
				}
			}
			snap := b.Build(lgLoad(t, dir, tc.after...), nil)
			if diff := cmp.Diff(tc.wantRoutes, lgRoutes(snap)); diff != "" {
				t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
			}
			for _, st := range tc.wantStates {
				if got := lgState(snap, st.kind, st.name); got != st.want {
					t.Errorf("%s %s is %q, want %q", st.kind, st.name, got, st.want)
				}
			}
			if diff := cmp.Diff(tc.wantErrors, lgErrors(snap, dir)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if tc.check != nil {
				tc.check(t, snap)
			}
		})
	}
}

// TestSubsetInUseKeepsDestinationRule: a DestinationRule edit that drops
// a subset a VirtualService in force routes to is refused, its last good
// version kept, with an error naming the routes; the VirtualService keeps
// serving. Routes and rule changed together go through, and a new
// VirtualService naming a missing subset is refused itself.
func TestSubsetInUseKeepsDestinationRule(t *testing.T) {
	dir := t.TempDir()
	noV1 := strings.Replace(meshBase, "{name: v1, labels: {version: v1}}, ", "", 1)
	movedHost := strings.Replace(meshBase, "  host: reviews\n", "  host: ratings\n", 1)
	const inUse = `DIR/base.yaml: DestinationRule default/reviews: %s: subset "v1" of host reviews.default.svc.cluster.local is still used by VirtualService default/reviews (DIR/vs.yaml:1) in spec.http[0].route[0].destination; change those routes first, then edit this DestinationRule again (until then its last good version stays in force)`
	steps := []struct {
		name        string
		files       []string
		wantRoutes  []string
		wantDR      string // DestinationRule reviews
		wantSubsets []string
		wantErrors  []string
	}{
		{name: "valid", files: []string{"base.yaml", meshBase, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Valid", wantSubsets: []string{"v1", "v2", "v3"}},
		{name: "subset in use removed", files: []string{"base.yaml", noV1, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Invalid (last good)", wantSubsets: []string{"v1", "v2", "v3"},
			wantErrors: []string{strings.Replace(inUse, "%s", "spec.subsets", 1)}},
		{name: "host in use moved", files: []string{"base.yaml", movedHost, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Invalid (last good)", wantSubsets: []string{"v1", "v2", "v3"},
			wantErrors: []string{strings.Replace(inUse, "%s", "spec.host", 1)}},
		{name: "routes and subsets changed together", files: []string{"base.yaml", noV1, "vs.yaml", lgVS("v2")},
			wantRoutes: []string{"reviews->v2"}, wantDR: "Valid", wantSubsets: []string{"v2", "v3"}},
		{name: "a new VirtualService names the missing subset", files: []string{"base.yaml", noV1, "vs.yaml", lgVS("v2"), "new.yaml", lgNamedVS("new", "[ratings]", "v1")},
			wantRoutes: []string{"reviews->v2"}, wantDR: "Valid", wantSubsets: []string{"v2", "v3"},
			wantErrors: []string{`DIR/new.yaml: VirtualService default/new: spec.http[0].route[0].destination.subset: subset "v1" is not defined in DestinationRule default/reviews (DIR/base.yaml:13); its subsets are: v2, v3`}},
	}
	b := NewBuilder()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			snap := b.Build(lgLoad(t, dir, st.files...), nil)
			if diff := cmp.Diff(st.wantRoutes, lgRoutes(snap)); diff != "" {
				t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
			}
			if got := lgState(snap, "VirtualService", "reviews"); got != "Valid" {
				t.Errorf("VirtualService reviews is %q, want Valid", got)
			}
			if got := lgState(snap, "DestinationRule", "reviews"); got != st.wantDR {
				t.Errorf("DestinationRule reviews is %q, want %q", got, st.wantDR)
			}
			var subsets []string
			for _, dr := range snap.DestinationRules {
				for _, s := range dr.Spec.GetSubsets() {
					subsets = append(subsets, s.GetName())
				}
			}
			if diff := cmp.Diff(st.wantSubsets, subsets); diff != "" {
				t.Errorf("subsets in force (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st.wantErrors, lgErrors(snap, dir)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDeletedDestinationRuleInUseIsKept: deleting a DestinationRule
// whose subsets a VirtualService in force routes to is refused as an
// edit dropping them is: its last good version stays in force, invalid,
// with an error naming the routes, and the VirtualService keeps serving.
// Once the routes no longer use it, the deletion goes through; deleting
// both together goes through at once.
func TestDeletedDestinationRuleInUseIsKept(t *testing.T) {
	dir := t.TempDir()
	noDR := meshBase[:strings.Index(meshBase, "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule")]
	const held = `DIR/base.yaml: DestinationRule default/reviews: was deleted, but subset "v1" of host reviews.default.svc.cluster.local is still used by VirtualService default/reviews (DIR/vs.yaml:1) in spec.http[0].route[0].destination; change those routes first, then delete it again (until then its last good version stays in force)`
	plainVS := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n"
	steps := []struct {
		name       string
		files      []string
		wantRoutes []string
		wantDR     string
		wantErrors []string
	}{
		{name: "valid", files: []string{"base.yaml", meshBase, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Valid"},
		{name: "DestinationRule deleted while in use", files: []string{"base.yaml", noDR, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Invalid (last good)", wantErrors: []string{held}},
		{name: "still deleted in the next build", files: []string{"base.yaml", noDR, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Invalid (last good)", wantErrors: []string{held}},
		{name: "routes changed: the deletion goes through", files: []string{"base.yaml", noDR, "vs.yaml", plainVS},
			wantRoutes: []string{"reviews->"}, wantDR: ""},
		{name: "back, then both deleted together", files: []string{"base.yaml", meshBase, "vs.yaml", lgVS("v1")},
			wantRoutes: []string{"reviews->v1"}, wantDR: "Valid"},
		{name: "both deleted", files: []string{"base.yaml", noDR},
			wantRoutes: nil, wantDR: ""},
	}
	b := NewBuilder()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			snap := b.Build(lgLoad(t, dir, st.files...), nil)
			if diff := cmp.Diff(st.wantRoutes, lgRoutes(snap)); diff != "" {
				t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
			}
			if got := lgState(snap, "DestinationRule", "reviews"); got != st.wantDR {
				t.Errorf("DestinationRule reviews is %q, want %q", got, st.wantDR)
			}
			if inForce := len(snap.DestinationRules) > 0; inForce != (st.wantDR != "") {
				t.Errorf("%d DestinationRules in force; want the rule in force: %v", len(snap.DestinationRules), st.wantDR != "")
			}
			if diff := cmp.Diff(st.wantErrors, lgErrors(snap, dir)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSubsetOfUnreadableFileKeepsDestinationRule: the last good version
// kept for a file that cannot be read counts as in force: a
// DestinationRule edit dropping a subset it routes to is refused.
func TestSubsetOfUnreadableFileKeepsDestinationRule(t *testing.T) {
	dir := t.TempDir()
	b := NewBuilder()
	b.Build(lgLoad(t, dir, "base.yaml", meshBase, "vs.yaml", lgVS("v1")), nil)
	noV1 := strings.Replace(meshBase, "{name: v1, labels: {version: v1}}, ", "", 1)
	snap := b.Build(lgLoad(t, dir, "base.yaml", noV1, "vs.yaml", lgBrokenVS("v1")), nil)
	if diff := cmp.Diff([]string{"reviews->v1"}, lgRoutes(snap)); diff != "" {
		t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
	}
	if got := lgState(snap, "DestinationRule", "reviews"); got != "Invalid (last good)" {
		t.Errorf("DestinationRule reviews is %q, want Invalid (last good)", got)
	}
}

// TestExpiredGatewayCertLeavesServerOut: a Gateway server whose
// certificate has expired, or whose files do not load, is left out of the
// Gateway in force with an error on its tls, and the Gateway is Partial;
// the Gateway's other servers keep serving, and the VirtualServices
// naming the Gateway stay in force
// (with the routes they give the sidecars through "mesh"). A renewed
// certificate brings the server back.
func TestExpiredGatewayCertLeavesServerOut(t *testing.T) {
	certDir := t.TempDir()
	ca := testcerts.NewCA(t, certDir)
	cert, key := ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	gw := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: ` + cert + `, privateKey: ` + key + `}
`
	vs := strings.Replace(lgVS("v1"), "  hosts: [reviews]\n", "  hosts: [reviews]\n  gateways: [shop-gw, mesh]\n", 1)
	dir := t.TempDir()
	files := []string{"base.yaml", meshBase, "gw.yaml", gw, "vs.yaml", vs}
	steps := []struct {
		name       string
		certs      func()
		wantPorts  []uint32
		wantGW     string
		wantErrors []string
	}{
		{name: "valid", certs: func() {}, wantPorts: []uint32{8080, 8443}, wantGW: "Valid"},
		{name: "expired", certs: func() {
			ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}, NotAfter: time.Now().Add(-time.Minute)})
		}, wantPorts: []uint32{8080}, wantGW: "Partial", wantErrors: []string{
			"DIR/gw.yaml: Gateway default/shop-gw: spec.servers[1].tls.serverCertificate: the certificate in " + cert + " expired on",
		}},
		{name: "renewed", certs: func() {
			ca.Issue(t, certDir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
		}, wantPorts: []uint32{8080, 8443}, wantGW: "Valid"},
		{name: "key missing", certs: func() {
			if err := os.Remove(key); err != nil {
				t.Fatal(err)
			}
		}, wantPorts: []uint32{8080}, wantGW: "Partial", wantErrors: []string{
			"DIR/gw.yaml: Gateway default/shop-gw: spec.servers[1].tls.serverCertificate: cannot load the certificate " + cert + " with the key " + key + ": open " + key + ": no such file or directory; fix the files: until then this server is left out and the Gateway's other servers keep serving",
		}},
	}
	b := NewBuilder()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.certs()
			snap := b.Build(lgLoad(t, dir, files...), nil)
			if diff := cmp.Diff([]string{"reviews->v1"}, lgRoutes(snap)); diff != "" {
				t.Errorf("VirtualServices in force (-want +got):\n%s", diff)
			}
			if got := lgState(snap, "VirtualService", "reviews"); got != "Valid" {
				t.Errorf("VirtualService reviews is %q, want Valid", got)
			}
			if got := lgState(snap, "Gateway", "shop-gw"); got != st.wantGW {
				t.Errorf("Gateway shop-gw is %q, want %q", got, st.wantGW)
			}
			var ports []uint32
			for _, g := range snap.Gateways {
				for _, s := range g.Spec.GetServers() {
					ports = append(ports, s.GetPort().GetNumber())
				}
			}
			if diff := cmp.Diff(st.wantPorts, ports); diff != "" {
				t.Errorf("Gateway server ports in force (-want +got):\n%s", diff)
			}
			errs := lgErrors(snap, certDir)
			for i := range errs {
				errs[i] = strings.ReplaceAll(errs[i], dir, "DIR")
			}
			if len(errs) != len(st.wantErrors) {
				t.Fatalf("errors %q, want %d", errs, len(st.wantErrors))
			}
			for i, want := range st.wantErrors {
				want = strings.ReplaceAll(want, certDir, "DIR")
				if !strings.HasPrefix(errs[i], want) {
					t.Errorf("error %q, want it to start %q", errs[i], want)
				}
			}
			if st.name == "expired" && !strings.HasSuffix(errs[0], "; renew it: until then this server is left out and the Gateway's other servers keep serving") {
				t.Errorf("error %q does not say to renew the certificate and what is left out", errs[0])
			}
		})
	}
}
