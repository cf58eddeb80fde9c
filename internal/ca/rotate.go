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

// Rotation stages.
const (
	StageNone    = "none"             // one root, signing with it
	StageStaged  = "staged"           // both roots in the bundle, signing with the old
	StageIssuing = "issuing-from-new" // both roots in the bundle, signing with the new
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
)

// rotation is the state of a root rotation; guarded by Authority.rmu.
type rotation struct {
	Stage      string    `json:"stage"`
	StagedAt   time.Time `json:"stagedAt"`
	SwitchedAt time.Time `json:"switchedAt,omitzero"`

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

// loadRotation reads a rotation in progress from dir (self-signed mode),
// after the current root is loaded.
func (a *Authority) loadRotation(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, RotationFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the root rotation state: %w", err)
	}
	var r rotation
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, RotationFile), err)
	}
	if r.Stage != StageStaged && r.Stage != StageIssuing {
		return fmt.Errorf("%s: unknown stage %q", filepath.Join(dir, RotationFile), r.Stage)
	}
	next, key, err := loadPair(filepath.Join(dir, NextRootCertFile), filepath.Join(dir, NextRootKeyFile))
	if err != nil {
		return fmt.Errorf("root rotation in progress (%s), but the staged root: %w", r.Stage, err)
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

func (a *Authority) saveRotation() error {
	data, err := json.MarshalIndent(a.rot, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(a.opts.Dir, RotationFile), append(data, '\n'), 0o644)
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
		if err := writeRoot(filepath.Join(a.opts.Dir, NextRootCertFile), filepath.Join(a.opts.Dir, NextRootKeyFile), cert, key); err != nil {
			return RotationStatus{}, err
		}
		a.rot = rotation{Stage: StageStaged, StagedAt: time.Now().UTC(), old: a.signCert, oldSigner: a.signer, next: cert, nextSigner: key}
		if err := a.saveRotation(); err != nil {
			return RotationStatus{}, err
		}
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
		a.rot.Stage, a.rot.SwitchedAt = StageIssuing, time.Now().UTC()
		if err := a.saveRotation(); err != nil {
			a.rot.Stage = StageStaged
			return RotationStatus{}, err
		}
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
		if err := writeFile(filepath.Join(dir, "retired-root-cert-"+serialString(old.SerialNumber)+".pem"), encodeCert(old), 0o644); err != nil {
			return RotationStatus{}, err
		}
		// The new root takes the root's file names; a crash in between
		// is reported at start (the key does not match the certificate).
		if err := os.Rename(filepath.Join(dir, NextRootKeyFile), filepath.Join(dir, RootKeyFile)); err != nil {
			return RotationStatus{}, err
		}
		if err := os.Rename(filepath.Join(dir, NextRootCertFile), filepath.Join(dir, RootCertFile)); err != nil {
			return RotationStatus{}, err
		}
		if err := os.Remove(filepath.Join(dir, RotationFile)); err != nil {
			return RotationStatus{}, err
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
