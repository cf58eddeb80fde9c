package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/ca"
)

// TestDemoRootRotation rotates the CA's root of a running demo with
// `weft ca rotate` (stage, issue-from-new, retire-old) while a bounded,
// paced load runs through the ingress gateway (gateway -> productpage ->
// details, reviews -> ratings, every hop mTLS under STRICT): no request
// fails, each step is taken as soon as the CA allows it (a refusal names
// the sidecars not ready yet), and afterwards `weft ca status` shows only
// the new root, every sidecar holds a certificate from it and trusts it
// alone, and the load still goes through.
func TestDemoRootRotation(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress, "--no-traffic", "--ca-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 90*time.Second, "every instance ready and the product page whole", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		for _, in := range st.Instances {
			if !in.Ready {
				return fmt.Errorf("%s not ready (%s)", in.Instance, in.State)
			}
		}
		return checkPage(page)
	})
	before := caStatus(t, m)
	if len(before.Roots) != 1 {
		t.Fatalf("roots before the rotation: %+v", before.Roots)
	}
	oldRoot := before.Roots[0].Serial

	// The load: two workers, one request each every 40 ms (about 50/s),
	// at most 3 minutes and 20000 requests.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			for sent.Load() < 20000 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				sent.Add(1)
				if err := checkPage(page); err != nil {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
				}
			}
		})
	}
	stopLoad := func() {
		cancel()
		wg.Wait()
	}
	defer stopLoad()
	// waitSent waits until n more requests went out, so that every step
	// happens under load.
	waitSent := func(n int64) {
		t.Helper()
		target := sent.Load() + n
		waitFor(t, 60*time.Second, fmt.Sprintf("%d more requests", n), func() error {
			if got := sent.Load(); got < target {
				return fmt.Errorf("%d of %d sent", got, target)
			}
			return nil
		})
	}
	rotate := func(step string) string {
		t.Helper()
		var out string
		waitFor(t, 90*time.Second, "weft ca rotate --"+step, func() error {
			var err error
			out, err = m.weft("", "ca", "rotate", "--"+step)
			if err != nil && !strings.Contains(out, "refusing") {
				t.Fatalf("weft ca rotate --%s: %v\n%s", step, err, out)
			}
			if err != nil {
				return fmt.Errorf("refused: %s", out)
			}
			return nil
		})
		t.Logf("weft ca rotate --%s (%d requests so far): %s", step, sent.Load(), strings.TrimSpace(out))
		waitSent(25)
		return out
	}
	waitSent(25)
	out := rotate(ca.StepStage)
	if !strings.Contains(out, "staged") {
		t.Errorf("weft ca rotate --stage said: %s", out)
	}
	mid := caStatus(t, m)
	if mid.Rotation.Stage != ca.StageStaged || mid.Rotation.NewRoot == nil {
		t.Fatalf("after --stage: %+v", mid.Rotation)
	}
	newRoot := mid.Rotation.NewRoot.Serial
	rotate(ca.StepIssueFromNew)
	rotate(ca.StepRetireOld)

	// Every sidecar renews to a certificate from the new root and trusts
	// the new root alone (it polls the bundle); traffic keeps flowing.
	waitFor(t, 60*time.Second, "every sidecar on the new root alone", func() error {
		return allOnRoot(m, newRoot)
	})
	waitSent(50)
	stopLoad()

	after := caStatus(t, m)
	if len(after.Roots) != 1 || after.Roots[0].Serial != newRoot || after.Roots[0].Serial == oldRoot || after.Rotation.Stage != ca.StageNone {
		t.Errorf("weft ca status after the rotation: roots %+v, stage %s; want only %s", after.Roots, after.Rotation.Stage, newRoot)
	}
	table, err := m.weft("", "ca", "status")
	if err != nil || !strings.Contains(table, newRoot) || strings.Contains(table, oldRoot) {
		t.Errorf("weft ca status does not show the new root %s alone: %v\n%s", newRoot, err, table)
	}
	n, f := sent.Load(), failed.Load()
	t.Logf("root rotation %s -> %s under load: %d requests through the gateway, %d failed", oldRoot, newRoot, n, f)
	if f != 0 {
		t.Errorf("%d of %d requests failed during the rotation, e.g.:\n%s", f, n, strings.Join(failures, "\n"))
	}
	if n < 200 {
		t.Errorf("only %d requests were sent: the load did not run through the rotation", n)
	}
}

// checkPage fetches the product page and says what is wrong with it: a
// status other than 200 or a part of the shop that was unavailable
// (details, reviews or ratings).
func checkPage(url string) error {
	code, body, err := get(url)
	switch {
	case err != nil:
		return err
	case code != 200:
		return fmt.Errorf("status %d: %.200s", code, body)
	case strings.Contains(body, `class="unavailable"`):
		i := strings.Index(body, `class="unavailable"`)
		return fmt.Errorf("part of the page unavailable: %.200s", body[i:])
	case !reviewsVersion.MatchString(body):
		return fmt.Errorf("no reviews version on the page: %.200s", body)
	}
	return nil
}

func caStatus(t *testing.T, m *meshRun) ca.Status {
	t.Helper()
	out, err := m.weft("", "ca", "status", "-o", "json")
	if err != nil {
		t.Fatalf("weft ca status: %v\n%s", err, out)
	}
	var st ca.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("weft ca status -o json: %v\n%s", err, out)
	}
	return st
}

// allOnRoot checks every sidecar's /certs: a leaf the CA lists as signed
// by root, and a trust bundle of root alone.
func allOnRoot(m *meshRun, root string) error {
	out, err := m.weft("", "ca", "status", "-o", "json")
	if err != nil {
		return fmt.Errorf("weft ca status: %v: %s", err, out)
	}
	var st ca.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return err
	}
	issuer := map[string]string{}
	for _, l := range st.Leaves {
		issuer[l.Serial] = l.Issuer
	}
	ms, err := m.statusErr()
	if err != nil {
		return err
	}
	for _, in := range ms.Instances {
		if in.Sidecar == "" {
			continue
		}
		resp, err := http.Get("http://" + in.Sidecar + "/certs")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var certs struct {
			Serial      string `json:"serial"`
			TrustBundle []struct {
				Serial string `json:"serial"`
			} `json:"trust_bundle"`
		}
		if err := json.Unmarshal(body, &certs); err != nil {
			return fmt.Errorf("%s /certs: %v: %s", in.Instance, err, body)
		}
		if issuer[certs.Serial] != root {
			return fmt.Errorf("%s: certificate %s is from %q, not the new root %s", in.Instance, certs.Serial, issuer[certs.Serial], root)
		}
		if len(certs.TrustBundle) != 1 || certs.TrustBundle[0].Serial != root {
			return fmt.Errorf("%s: trust bundle %+v, want the new root %s alone", in.Instance, certs.TrustBundle, root)
		}
	}
	return nil
}
