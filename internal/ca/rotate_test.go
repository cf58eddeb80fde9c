package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
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
