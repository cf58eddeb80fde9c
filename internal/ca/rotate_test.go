package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/spiffeid"
)

func bundleSerials(t *testing.T, a *Authority) []string {
	t.Helper()
	var out []string
	for _, r := range a.Status().Roots {
		out = append(out, r.Serial)
	}
	return out
}

func refused(t *testing.T, err error, wants ...string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	for _, w := range wants {
		if !strings.Contains(re.Msg, w) {
			t.Errorf("refusal %q lacks %q", re.Msg, w)
		}
	}
}

// TestRotateSteps drives a rotation through its three steps over the
// real certificate API: each step is refused, naming the instance, until
// every instance reports what the step needs; the state survives a
// restart of the CA.
func TestRotateSteps(t *testing.T) {
	dir := t.TempDir()
	a := newTestCA(t, Options{Dir: dir})
	tokens := NewTokens()
	cc := serve(t, a, tokens)
	id, _ := spiffeid.Parse(reviewsID)
	tokA, _ := tokens.Issue("reviews-a.default", id)
	tokB, _ := tokens.Issue("reviews-b.default", id)
	instances := tokens.Instances()
	ctx := context.Background()
	oldRoot := a.Status().Roots[0].Serial

	issue := func(tok string) *caapi.Response {
		t.Helper()
		resp, err := caapi.CreateCertificate(ctx, cc, tok, &caapi.Request{CSR: makeCSR(t, csrSpec{uris: []string{reviewsID}})})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	poll := func(tok string, chain []byte, bundle []string) *caapi.BundleResponse {
		t.Helper()
		resp, err := caapi.GetTrustBundle(ctx, cc, tok, &caapi.BundleRequest{CertChain: chain, BundleSerials: bundle})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	leafA, leafB := issue(tokA), issue(tokB)

	// Out of order.
	_, err := a.Rotate(StepIssueFromNew, instances)
	refused(t, err, "no root rotation in progress", "--stage")
	_, err = a.Rotate(StepRetireOld, instances)
	refused(t, err, "no root rotation in progress")

	// 1. Stage.
	st, err := a.Rotate(StepStage, instances)
	if err != nil {
		t.Fatal(err)
	}
	newRoot := st.NewRoot.Serial
	if st.Stage != StageStaged || st.SigningRoot != oldRoot || len(bundleSerials(t, a)) != 2 {
		t.Fatalf("after stage: %+v, roots %v", st, bundleSerials(t, a))
	}
	for _, f := range []string{NextRootCertFile, NextRootKeyFile, RotationFile, RootCertFile, RootKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after stage: %v", err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, NextRootKeyFile)); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("staged key mode = %v, want 0600", fi)
	}
	if b, _ := os.ReadFile(a.TrustBundleFile()); strings.Count(string(b), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("bundle file holds %d roots, want 2", strings.Count(string(b), "BEGIN CERTIFICATE"))
	}
	_, err = a.Rotate(StepStage, instances)
	refused(t, err, "already in progress", "--issue-from-new")

	// 2. Issue from new: refused until both instances report both roots.
	_, err = a.Rotate(StepIssueFromNew, instances)
	refused(t, err, "refusing --issue-from-new", "reviews-a.default", "reviews-b.default")
	resp := poll(tokA, leafA.CertChain, []string{oldRoot})
	if resp.Renew || strings.Count(string(resp.TrustBundle), "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("poll while staged: renew %v, bundle of %d", resp.Renew, strings.Count(string(resp.TrustBundle), "BEGIN CERTIFICATE"))
	}
	poll(tokA, leafA.CertChain, []string{oldRoot, newRoot})
	_, err = a.Rotate(StepIssueFromNew, instances)
	refused(t, err, "reviews-b.default", "not both")
	if strings.Contains(err.Error(), "reviews-a.default") {
		t.Errorf("ready instance named in the refusal: %v", err)
	}
	if r := a.StatusFor(instances).Rotation; len(r.Instances) != 2 || !r.Instances[0].Ready || r.Instances[1].Ready {
		t.Errorf("readiness = %+v", r.Instances)
	}
	poll(tokB, leafB.CertChain, []string{oldRoot, newRoot})
	if st, err = a.Rotate(StepIssueFromNew, instances); err != nil {
		t.Fatal(err)
	}
	if st.SigningRoot != newRoot {
		t.Fatalf("signing root %s, want %s", st.SigningRoot, newRoot)
	}

	// The CA keeps its state across a restart.
	a2 := newTestCA(t, Options{Dir: dir})
	if r := a2.Status().Rotation; r.Stage != StageIssuing || r.SigningRoot != newRoot {
		t.Fatalf("after restart: %+v", r)
	}

	// 3. Retire: refused while a leaf from the old root is in use; the
	// poll asks for a renewal.
	_, err = a.Rotate(StepRetireOld, instances)
	refused(t, err, "refusing --retire-old", "reviews-a.default", "the old root")
	if !poll(tokA, leafA.CertChain, []string{oldRoot, newRoot}).Renew {
		t.Errorf("poll with a leaf from the old root: want renew")
	}
	newA := issue(tokA)
	leaf := checkLeaf(t, a, newA, reviewsID)
	if err := leaf.CheckSignatureFrom(a.signCert); err != nil || serialString(a.signCert.SerialNumber) != newRoot {
		t.Fatalf("leaf after the switch is not from the new root: %v", err)
	}
	_, err = a.Rotate(StepRetireOld, instances)
	refused(t, err, "reviews-b.default")
	issue(tokB)
	if st, err = a.Rotate(StepRetireOld, instances); err != nil {
		t.Fatal(err)
	}
	if st.Stage != StageNone || len(bundleSerials(t, a)) != 1 || bundleSerials(t, a)[0] != newRoot {
		t.Fatalf("after retire: %+v roots %v", st, bundleSerials(t, a))
	}
	if _, err := os.Stat(filepath.Join(dir, "retired-root-cert-"+oldRoot+".pem")); err != nil {
		t.Error(err)
	}
	for _, f := range []string{NextRootCertFile, NextRootKeyFile, RotationFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there after retire: %v", f, err)
		}
	}
	// A restart loads the new root as the root.
	a3 := newTestCA(t, Options{Dir: dir})
	if r := a3.Status(); len(r.Roots) != 1 || r.Roots[0].Serial != newRoot || r.Rotation.Stage != StageNone {
		t.Fatalf("after retire and restart: %+v", r)
	}
	// The CA's own TLS certificate is now from the new root: a client
	// that trusts only the new root reaches it.
	pool := x509.NewCertPool()
	pool.AddCert(a.signCert)
	cert, err := a.serverCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: caapi.ServerName}); err != nil {
		t.Errorf("server certificate after rotation: %v", err)
	}
}

// TestRotateNoInstancesReported: an instance that never reported blocks
// the switch with a message that says so.
func TestRotateNoInstancesReported(t *testing.T) {
	a := newTestCA(t, Options{})
	if _, err := a.Rotate(StepStage, nil); err != nil {
		t.Fatal(err)
	}
	_, err := a.Rotate(StepIssueFromNew, []string{"ratings-v1-0.default"})
	refused(t, err, "ratings-v1-0.default", "has not reported")
	_, err = a.Rotate("bogus", nil)
	refused(t, err, "unknown rotation step")
}

// TestRotatePluginRefused: a plug-in CA is rotated by replacing its files.
func TestRotatePluginRefused(t *testing.T) {
	p := newPKI(t, 365*24*time.Hour)
	dir := t.TempDir()
	p.write(t, dir, p.interKey)
	a := newTestCA(t, Options{PluginDir: dir})
	_, err := a.Rotate(StepStage, nil)
	refused(t, err, "plug-in CA", dir, "Rotate the files", RootCertFile)
	if r := a.Status().Rotation; r.NextStep != "" {
		t.Errorf("plug-in rotation status = %+v", r)
	}
}

var errCrash = errors.New("simulated crash")

// TestRotationCrashSafe stops every rotation step before each change it
// makes to the CA folder, as a crash would, then starts a new CA on the
// folder: it loads, at the stage before the step (the crash came before
// the step's commit point, rotation.json) or after it, with a trust
// bundle (in memory and in trust-bundle.pem) that holds the signing root,
// signs leaves that verify against it, and the rotation finishes from
// there, leaving only the new root and no staged files behind.
func TestRotationCrashSafe(t *testing.T) {
	steps := []string{StepStage, StepIssueFromNew, StepRetireOld}
	stages := []string{StageNone, StageStaged, StageIssuing, StageNone}
	id, _ := spiffeid.Parse(reviewsID)
	caller := Caller{ID: id, Instance: "reviews-0.default"}
	// start makes a CA and takes it to the step before steps[si]; it
	// returns the CA and its first root's serial.
	start := func(t *testing.T, dir string, si int) (*Authority, string) {
		t.Helper()
		a := newTestCA(t, Options{Dir: dir})
		first := a.Status().Roots[0].Serial
		for _, s := range steps[:si] {
			if _, err := a.Rotate(s, nil); err != nil {
				t.Fatal(err)
			}
		}
		return a, first
	}
	for si, step := range steps {
		// The changes the step makes, recorded on a run that does not fail.
		var ops []string
		a, _ := start(t, t.TempDir(), si)
		a.failpoint = func(op string) error { ops = append(ops, op); return nil }
		if _, err := a.Rotate(step, nil); err != nil {
			t.Fatal(err)
		}
		if len(ops) == 0 {
			t.Fatalf("step %s changed no file", step)
		}
		for i, op := range ops {
			committed := slices.Contains(ops[:i], "write "+RotationFile)
			t.Run(fmt.Sprintf("%s/crash before %d %s", step, i, op), func(t *testing.T) {
				dir := t.TempDir()
				a, first := start(t, dir, si)
				n := 0
				a.failpoint = func(string) error {
					if n == i {
						return errCrash
					}
					n++
					return nil
				}
				if _, err := a.Rotate(step, nil); !errors.Is(err, errCrash) {
					t.Fatalf("Rotate(%s) = %v, want the simulated crash", step, err)
				}

				// The next start.
				b := newTestCA(t, Options{Dir: dir})
				want := stages[si]
				if committed {
					want = stages[si+1]
				}
				st := b.Status()
				if st.Rotation.Stage != want {
					t.Fatalf("after the crash: stage %s, want %s (commit point passed: %v)", st.Rotation.Stage, want, committed)
				}
				checkConsistent(t, b, caller)

				// The rotation finishes from there: a stage rolled back
				// runs again in full; a retire-old rolled forward is done.
				var rest []string
				switch want {
				case StageStaged:
					rest = steps[1:]
				case StageIssuing:
					rest = steps[2:]
				case StageNone:
					if si == 0 {
						rest = steps
					}
				}
				for _, s := range rest {
					if _, err := b.Rotate(s, nil); err != nil {
						t.Fatalf("finishing with %s: %v", s, err)
					}
				}
				c := newTestCA(t, Options{Dir: dir})
				end := c.Status()
				if len(end.Roots) != 1 || end.Roots[0].Serial == first || end.Rotation.Stage != StageNone {
					t.Fatalf("after the rotation: roots %v (first root %s), stage %s", end.Roots, first, end.Rotation.Stage)
				}
				checkConsistent(t, c, caller)
				for _, f := range []string{NextRootCertFile, NextRootKeyFile, RotationFile} {
					if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
						t.Errorf("%s left behind: %v", f, err)
					}
				}
				if _, err := os.Stat(filepath.Join(dir, RetiredRootPrefix+first+".pem")); err != nil {
					t.Errorf("the first root is not kept as retired: %v", err)
				}
				if fi, err := os.Stat(filepath.Join(dir, RootKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("root key: %v, mode %v; want 0600", err, fi.Mode().Perm())
				}
			})
		}
	}
}

// checkConsistent checks that a CA signs with a root of its bundle, that
// the bundle file holds the same roots, and that a leaf it signs now
// verifies against the bundle.
func checkConsistent(t *testing.T, a *Authority, caller Caller) {
	t.Helper()
	st := a.Status()
	var serials []string
	for _, r := range st.Roots {
		serials = append(serials, r.Serial)
	}
	if !slices.Contains(serials, st.Rotation.SigningRoot) {
		t.Fatalf("signing root %s is not in the bundle %v", st.Rotation.SigningRoot, serials)
	}
	file, err := os.ReadFile(a.TrustBundleFile())
	if err != nil || string(file) != string(a.TrustBundlePEM()) {
		t.Fatalf("trust bundle file differs from the bundle served (%v)", err)
	}
	iss, err := a.Sign(caller, makeCSR(t, csrSpec{uris: []string{reviewsID}}), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("a new leaf does not verify against the bundle: %v", err)
	}
}

// TestRotationStateErrors: a rotation state the CA cannot trust is
// refused at start with what to do.
func TestRotationStateErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    []string
	}{
		{name: "unreadable rotation.json", corrupt: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, RotationFile), []byte("{"), 0o644)
		}, want: []string{RotationFile, "restore it from a backup"}},
		{name: "unknown stage", corrupt: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, RotationFile), []byte(`{"stage":"half"}`), 0o644)
		}, want: []string{`unknown stage "half"`}},
		{name: "staged root replaced", corrupt: func(t *testing.T, dir string) {
			b := newTestCA(t, Options{Dir: t.TempDir()})
			if _, err := b.Rotate(StepStage, nil); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{NextRootCertFile, NextRootKeyFile} {
				data, _ := os.ReadFile(filepath.Join(b.opts.Dir, f))
				os.WriteFile(filepath.Join(dir, f), data, 0o600)
			}
		}, want: []string{"to root", NextRootCertFile, "restore it from a backup"}},
		{name: "staged key lost", corrupt: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, NextRootKeyFile))
		}, want: []string{"the staged root", "reading CA key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := newTestCA(t, Options{Dir: dir})
			if _, err := a.Rotate(StepStage, nil); err != nil {
				t.Fatal(err)
			}
			tc.corrupt(t, dir)
			_, err := New(Options{Dir: dir, Logger: quietLogger()})
			if err == nil {
				t.Fatal("New accepted the broken state")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
