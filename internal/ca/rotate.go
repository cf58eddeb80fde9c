package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Root rotation without downtime, self-signed mode only, in three steps
// (`weft ca rotate`):
//
//  1. stage: a new self-signed root is made and kept beside the old one
//     (next-root-cert.pem, next-root-key.pem); the trust bundle carries
//     both roots; leaves are still signed by the old root.
//  2. issue-from-new: the CA signs with the new root. Allowed only once
//     every instance holding a bootstrap token has reported the two-root
//     bundle. Sidecars learn of it on their next bundle poll (the answer
//     says renew) and get a leaf from the new root at once.
//  3. retire-old: the old root leaves the bundle; the new root becomes
//     root-cert.pem / root-key.pem and the old certificate is kept as
//     retired-root-cert-<serial>.pem (its key is deleted). Allowed only
//     once every instance reports a leaf signed by the new root.
//
// Sidecars report what they use on every certificate request and every
// bundle poll (caapi.GetTrustBundle).
//
// Crash safety. Every file is replaced atomically (temporary file, fsync,
// rename, fsync of the folder), and rotation.json is each step's commit
// point: a crash before it leaves the previous stage in force, a crash
// after it the next, and the next start loads either and finishes or
// rolls back what the step left half done:
//
//   - stage writes next-root-key.pem, next-root-cert.pem, then
//     rotation.json (staged). Staged files without rotation.json are an
//     unfinished stage, never distributed: the start removes them (roll
//     back), and --stage can be given again.
//   - issue-from-new rewrites rotation.json alone.
//   - retire-old writes retired-root-cert-<serial>.pem, then rotation.json
//     with stage retiring (the commit point), then copies the staged root
//     over root-key.pem and root-cert.pem, removes the staged files and
//     finally rotation.json. A start that finds stage retiring redoes the
//     copy while the staged files are whole, or else checks that the root
//     files hold the new root (their serial is in rotation.json), and
//     finishes (roll forward).

// Rotation stages.
const (
	StageNone    = "none"             // one root, signing with it
	StageStaged  = "staged"           // both roots in the bundle, signing with the old
	StageIssuing = "issuing-from-new" // both roots in the bundle, signing with the new
	// stageRetiring is only ever on disk: retire-old passed its commit
	// point and a start finishes it.
	stageRetiring = "retiring"
)

// Rotation steps, the flags of `weft ca rotate` without the dashes.
const (
	StepStage        = "stage"
	StepIssueFromNew = "issue-from-new"
	StepRetireOld    = "retire-old"
)

// Files of a rotation in progress, in the CA folder.
const (
	NextRootCertFile = "next-root-cert.pem"
	NextRootKeyFile  = "next-root-key.pem"
	RotationFile     = "rotation.json"
	// RetiredRootPrefix starts the name of a retired root's certificate,
	// RetiredRootPrefix + <serial> + ".pem".
	RetiredRootPrefix = "retired-root-cert-"
)

// rotation is the state of a root rotation; guarded by Authority.rmu.
type rotation struct {
	Stage      string    `json:"stage"`
	StagedAt   time.Time `json:"stagedAt"`
	SwitchedAt time.Time `json:"switchedAt,omitzero"`
	// OldRoot and NewRoot are the serials (hex) of the two roots, checked
	// against the files at start.
	OldRoot string `json:"oldRoot,omitempty"`
	NewRoot string `json:"newRoot,omitempty"`

	old, next             *x509.Certificate
	oldSigner, nextSigner crypto.Signer
}

func (r *rotation) stage() string {
	if r.Stage == "" {
		return StageNone
	}
	return r.Stage
}

// report is what an instance last said it uses.
type report struct {
	bundle     []string // serials of the roots it trusts
	leafSerial string
	leafIssuer string // serial of the certificate that signed its leaf; "" unknown
	at         time.Time
}

// RefusedError is a rotation step refused because it would break trust
// (or is out of order); Msg says why and what to do.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// InstanceReadiness says whether an instance is ready for the rotation's
// next step.
type InstanceReadiness struct {
	Instance string `json:"instance"`
	Ready    bool   `json:"ready"`
	// Why it is not ready.
	Why string `json:"why,omitempty"`
	// LastReport is when it last reported its bundle and leaf.
	LastReport *time.Time `json:"lastReport,omitempty"`
}

// RotationStatus is the root rotation's state.
type RotationStatus struct {
	// Stage is none, staged or issuing-from-new.
	Stage string `json:"stage"`
	// OldRoot and NewRoot are the two roots while a rotation runs.
	OldRoot *CertInfo `json:"oldRoot,omitempty"`
	NewRoot *CertInfo `json:"newRoot,omitempty"`
	// SigningRoot is the serial of the certificate that signs leaves.
	SigningRoot string `json:"signingRoot"`
	// NextStep is the step that comes next (stage, issue-from-new,
	// retire-old); empty for a plug-in CA.
	NextStep string `json:"nextStep,omitempty"`
	// Instances are the instances' readiness for NextStep (only when the
	// caller named them).
	Instances []InstanceReadiness `json:"instances,omitempty"`
}

// readRotation reads rotation.json from dir; nil when there is none.
func readRotation(dir string) (*rotation, error) {
	path := filepath.Join(dir, RotationFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the root rotation state: %w", err)
	}
	var r rotation
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w (restore it from a backup, or remove it to cancel the rotation if --issue-from-new was never given)", path, err)
	}
	switch r.Stage {
	case StageStaged, StageIssuing, stageRetiring:
	default:
		return nil, fmt.Errorf("%s: unknown stage %q", path, r.Stage)
	}
	return &r, nil
}

// recoverRotation runs before the root is loaded: it finishes a
// retire-old that passed its commit point (roll forward) and removes the
// files of a stage that did not reach it (roll back).
func (a *Authority) recoverRotation(dir string) error {
	r, err := readRotation(dir)
	if err != nil {
		return err
	}
	nextCert, nextKey := filepath.Join(dir, NextRootCertFile), filepath.Join(dir, NextRootKeyFile)
	if r == nil {
		var left []string
		for _, f := range []string{nextKey, nextCert} {
			if _, err := os.Stat(f); err == nil {
				left = append(left, f)
			}
		}
		if len(left) == 0 {
			return nil
		}
		a.log.Warn("root rotation: removing a staged root that was never committed (a --stage was interrupted); run weft ca rotate --stage again", "files", left)
		for _, f := range left {
			if err := a.removeFile(f); err != nil {
				return fmt.Errorf("removing the unfinished staged root: %w", err)
			}
		}
		return nil
	}
	if r.Stage != stageRetiring {
		return nil
	}
	a.log.Warn("root rotation: finishing --retire-old, which was interrupted", "new_root", r.NewRoot, "retired", r.OldRoot)
	if cert, key, err := loadPair(nextCert, nextKey); err == nil {
		if r.NewRoot != "" && serialString(cert.SerialNumber) != r.NewRoot {
			return fmt.Errorf("%s holds root %s, but %s says the new root is %s: restore the staged root or %s from a backup",
				nextCert, serialString(cert.SerialNumber), filepath.Join(dir, RotationFile), r.NewRoot, RotationFile)
		}
		if err := a.promote(dir, cert, key); err != nil {
			return err
		}
	} else {
		// The staged files are already (partly) gone: the root files
		// must hold the new root.
		cert, _, err := loadPair(filepath.Join(dir, RootCertFile), filepath.Join(dir, RootKeyFile))
		if err != nil || (r.NewRoot != "" && serialString(cert.SerialNumber) != r.NewRoot) {
			return fmt.Errorf("finishing the interrupted --retire-old: neither the staged root (%s, %s) nor the root (%s, %s) is the new root %s; restore them from a backup",
				NextRootCertFile, NextRootKeyFile, RootCertFile, RootKeyFile, r.NewRoot)
		}
		for _, f := range []string{nextKey, nextCert} {
			if err := a.removeFile(f); err != nil {
				return err
			}
		}
	}
	return a.removeFile(filepath.Join(dir, RotationFile))
}

// promote makes the staged root the root: root-key.pem, root-cert.pem,
// then the staged files go. Each step can be redone.
func (a *Authority) promote(dir string, cert *x509.Certificate, key crypto.Signer) error {
	if err := a.writeRootFiles(filepath.Join(dir, RootCertFile), filepath.Join(dir, RootKeyFile), cert, key); err != nil {
		return err
	}
	for _, f := range []string{NextRootKeyFile, NextRootCertFile} {
		if err := a.removeFile(filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return nil
}

// loadRotation reads a rotation in progress from dir (self-signed mode),
// after recoverRotation and the current root are loaded.
func (a *Authority) loadRotation(dir string) error {
	rp, err := readRotation(dir)
	if err != nil || rp == nil {
		return err
	}
	r := *rp
	if r.OldRoot != "" && r.OldRoot != serialString(a.signCert.SerialNumber) {
		return fmt.Errorf("root rotation in progress (%s) from root %s, but %s holds root %s: restore %s and %s from a backup",
			r.Stage, r.OldRoot, RootCertFile, serialString(a.signCert.SerialNumber), RootCertFile, RootKeyFile)
	}
	next, key, err := loadPair(filepath.Join(dir, NextRootCertFile), filepath.Join(dir, NextRootKeyFile))
	if err != nil {
		return fmt.Errorf("root rotation in progress (%s), but the staged root: %w", r.Stage, err)
	}
	if r.NewRoot != "" && r.NewRoot != serialString(next.SerialNumber) {
		return fmt.Errorf("root rotation in progress (%s) to root %s, but %s holds root %s: restore it from a backup",
			r.Stage, r.NewRoot, NextRootCertFile, serialString(next.SerialNumber))
	}
	r.old, r.oldSigner, r.next, r.nextSigner = a.signCert, a.signer, next, key
	a.roots = []*x509.Certificate{r.old, r.next}
	if r.Stage == StageIssuing {
		a.signCert, a.signer = next, key
	}
	a.rot = r
	a.log.Info("root rotation in progress", "stage", r.Stage, "old_root", serialString(r.old.SerialNumber), "new_root", serialString(next.SerialNumber))
	return nil
}

// saveRotation writes r as rotation.json: the commit point of a step.
func (a *Authority) saveRotation(r rotation) error {
	r.OldRoot, r.NewRoot = serialString(r.old.SerialNumber), serialString(r.next.SerialNumber)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := a.writeFile(filepath.Join(a.opts.Dir, RotationFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the root rotation state: %w", err)
	}
	return nil
}

// Rotate takes one step of a root rotation. instances are those that must
// be ready for it (every instance holding a bootstrap token). A refused
// step is a *RefusedError that says why and which instances are not ready.
func (a *Authority) Rotate(step string, instances []string) (RotationStatus, error) {
	if a.mode != "self-signed" {
		return RotationStatus{}, &RefusedError{Msg: fmt.Sprintf("the CA uses a plug-in CA from %s (--cacerts): Weft cannot rotate it. Rotate the files: "+
			"first append the new root to %s and restart the control plane (sidecars trust both), then replace %s, %s and %s with ones from the new root and restart, "+
			"then remove the old root from %s and restart", a.opts.PluginDir, RootCertFile, CACertFile, CAKeyFile, CertChainFile, RootCertFile)}
	}
	a.rmu.Lock()
	defer a.rmu.Unlock()
	stage := a.rot.stage()
	switch step {
	case StepStage:
		if stage != StageNone {
			return RotationStatus{}, &RefusedError{Msg: fmt.Sprintf("a root rotation is already in progress (stage %s): its next step is --%s", stage, nextStep(stage))}
		}
		cert, key, err := a.newRoot()
		if err != nil {
			return RotationStatus{}, err
		}
		if err := a.writeRootFiles(filepath.Join(a.opts.Dir, NextRootCertFile), filepath.Join(a.opts.Dir, NextRootKeyFile), cert, key); err != nil {
			return RotationStatus{}, err
		}
		r := rotation{Stage: StageStaged, StagedAt: time.Now().UTC(), old: a.signCert, oldSigner: a.signer, next: cert, nextSigner: key}
		if err := a.saveRotation(r); err != nil {
			return RotationStatus{}, err
		}
		a.rot = r
		if err := a.setRoots([]*x509.Certificate{a.rot.old, cert}); err != nil {
			return RotationStatus{}, err
		}
		a.log.Info("root rotation: new root staged; the trust bundle carries both roots", "new_root", serialString(cert.SerialNumber),
			"expires", cert.NotAfter.UTC().Format(time.RFC3339), "next", "weft ca rotate --issue-from-new once every sidecar has the bundle")
	case StepIssueFromNew:
		if stage != StageStaged {
			return RotationStatus{}, outOfOrder(step, stage)
		}
		if err := a.refuseUnready(step, stage, instances); err != nil {
			return RotationStatus{}, err
		}
		r := a.rot
		r.Stage, r.SwitchedAt = StageIssuing, time.Now().UTC()
		if err := a.saveRotation(r); err != nil {
			return RotationStatus{}, err
		}
		a.rot = r
		a.signCert, a.signer = a.rot.next, a.rot.nextSigner
		a.log.Info("root rotation: signing with the new root; sidecars renew on their next bundle poll", "new_root", serialString(a.rot.next.SerialNumber),
			"next", "weft ca rotate --retire-old once every sidecar has a certificate from the new root")
	case StepRetireOld:
		if stage != StageIssuing {
			return RotationStatus{}, outOfOrder(step, stage)
		}
		if err := a.refuseUnready(step, stage, instances); err != nil {
			return RotationStatus{}, err
		}
		dir, old, next := a.opts.Dir, a.rot.old, a.rot.next
		if err := a.writeFile(filepath.Join(dir, RetiredRootPrefix+serialString(old.SerialNumber)+".pem"), encodeCert(old), 0o644); err != nil {
			return RotationStatus{}, fmt.Errorf("keeping the retired root: %w", err)
		}
		// The commit point: from here a start finishes the step
		// (recoverRotation), whatever else is done when it stops.
		r := a.rot
		r.Stage = stageRetiring
		if err := a.saveRotation(r); err != nil {
			return RotationStatus{}, err
		}
		if err := a.promote(dir, next, a.rot.nextSigner); err != nil {
			return RotationStatus{}, fmt.Errorf("retiring the old root (the next start finishes it): %w", err)
		}
		if err := a.removeFile(filepath.Join(dir, RotationFile)); err != nil {
			return RotationStatus{}, fmt.Errorf("retiring the old root (the next start finishes it): %w", err)
		}
		a.rot = rotation{}
		if err := a.setRoots([]*x509.Certificate{next}); err != nil {
			return RotationStatus{}, err
		}
		a.log.Info("root rotation done: the old root is retired", "root", serialString(next.SerialNumber), "retired", serialString(old.SerialNumber))
	default:
		return RotationStatus{}, &RefusedError{Msg: fmt.Sprintf("unknown rotation step %q: want %s, %s or %s", step, StepStage, StepIssueFromNew, StepRetireOld)}
	}
	return a.rotationStatusLocked(instances), nil
}

func nextStep(stage string) string {
	switch stage {
	case StageStaged:
		return StepIssueFromNew
	case StageIssuing:
		return StepRetireOld
	}
	return StepStage
}

func outOfOrder(step, stage string) error {
	if stage == StageNone {
		return &RefusedError{Msg: fmt.Sprintf("no root rotation in progress: --%s comes after --stage (weft ca rotate --stage)", step)}
	}
	return &RefusedError{Msg: fmt.Sprintf("the root rotation is at stage %s: the next step is --%s, not --%s", stage, nextStep(stage), step)}
}

// refuseUnready refuses step when an instance is not ready for it.
func (a *Authority) refuseUnready(step, stage string, instances []string) error {
	var bad []string
	for _, r := range a.readiness(stage, instances) {
		if !r.Ready {
			bad = append(bad, "  "+r.Instance+": "+r.Why)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	what := "trusts the new root"
	if step == StepRetireOld {
		what = "uses a certificate from the new root"
	}
	return &RefusedError{Msg: fmt.Sprintf("refusing --%s: it would break trust, because %d instance(s) have not reported that it %s yet "+
		"(sidecars report on every renewal and bundle poll; wait and retry, or stop them):\n%s", step, len(bad), what, strings.Join(bad, "\n"))}
}

// readiness says, for each instance, whether it is ready for the step
// after stage. Callers hold rmu.
func (a *Authority) readiness(stage string, instances []string) []InstanceReadiness {
	if stage == StageNone {
		return nil
	}
	newSerial := serialString(a.rot.next.SerialNumber)
	oldSerial := serialString(a.rot.old.SerialNumber)
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]InstanceReadiness, 0, len(instances))
	for _, inst := range instances {
		r := InstanceReadiness{Instance: inst}
		rep, ok := a.reports[inst]
		switch {
		case !ok:
			r.Why = "has not reported its trust bundle and certificate (is its sidecar running?)"
		case stage == StageStaged && !(slices.Contains(rep.bundle, newSerial) && slices.Contains(rep.bundle, oldSerial)):
			r.Why = fmt.Sprintf("its trust bundle holds roots %v, not both %s (old) and %s (new)", rep.bundle, oldSerial, newSerial)
		case stage == StageIssuing && rep.leafIssuer != newSerial:
			issuer := rep.leafIssuer
			if issuer == "" {
				issuer = "an unknown issuer"
			} else if issuer == oldSerial {
				issuer = "the old root " + issuer
			}
			r.Why = fmt.Sprintf("its certificate (serial %s) is from %s, not the new root %s", rep.leafSerial, issuer, newSerial)
		default:
			r.Ready = true
		}
		if ok {
			at := rep.at
			r.LastReport = &at
		}
		out = append(out, r)
	}
	return out
}

func (a *Authority) rotationStatus(instances []string) RotationStatus {
	a.rmu.RLock()
	defer a.rmu.RUnlock()
	return a.rotationStatusLocked(instances)
}

func (a *Authority) rotationStatusLocked(instances []string) RotationStatus {
	stage := a.rot.stage()
	st := RotationStatus{Stage: stage, SigningRoot: serialString(a.signCert.SerialNumber)}
	if a.mode != "self-signed" {
		return st
	}
	st.NextStep = nextStep(stage)
	if stage != StageNone {
		o, n := certInfo(a.rot.old), certInfo(a.rot.next)
		st.OldRoot, st.NewRoot = &o, &n
		st.Instances = a.readiness(stage, instances)
	}
	return st
}

// Report records what an instance uses: its certificate chain (PEM, may
// be empty) and the serials of the roots it trusts. It returns whether
// the instance should get a new certificate now: its leaf was not signed
// by the CA's signing certificate of the moment.
func (a *Authority) Report(instance string, chainPEM []byte, bundleSerials []string) (renew bool) {
	a.rmu.RLock()
	signCert := a.signCert
	candidates := []*x509.Certificate{signCert}
	if a.rot.old != nil {
		candidates = append(candidates, a.rot.old, a.rot.next)
	}
	a.rmu.RUnlock()
	rep := report{bundle: slices.Clone(bundleSerials), at: time.Now().UTC()}
	if b, _ := pem.Decode(chainPEM); b != nil && b.Type == "CERTIFICATE" {
		if leaf, err := x509.ParseCertificate(b.Bytes); err == nil {
			rep.leafSerial = serialString(leaf.SerialNumber)
			for _, c := range candidates {
				if leaf.CheckSignatureFrom(c) == nil {
					rep.leafIssuer = serialString(c.SerialNumber)
					break
				}
			}
			renew = leaf.CheckSignatureFrom(signCert) != nil
		}
	}
	a.mu.Lock()
	a.reports[instance] = rep
	a.mu.Unlock()
	return renew
}

// reportIssued records that an instance got a leaf and the bundle with it.
func (a *Authority) reportIssued(instance string, leaf *x509.Certificate, issuer *x509.Certificate, roots []*x509.Certificate) {
	rep := report{leafSerial: serialString(leaf.SerialNumber), leafIssuer: serialString(issuer.SerialNumber), at: time.Now().UTC()}
	for _, r := range roots {
		rep.bundle = append(rep.bundle, serialString(r.SerialNumber))
	}
	a.mu.Lock()
	a.reports[instance] = rep
	a.mu.Unlock()
}
