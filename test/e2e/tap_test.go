package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/tap"
)

// TestTapDemo runs `weft tap reviews --max 5 -o json` against the demo
// while requests flow through the ingress: the events show productpage
// calling reviews with status 200, the command exits by itself after five
// events, and a target that matches nothing fails with a clear message.
func TestTapDemo(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress)
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 60*time.Second, "the product page through the ingress", func() error {
		code, body, err := get(page)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		return nil
	})

	out, err := m.weft("", "tap", "nosuch")
	if err == nil || !strings.Contains(out, `no running instance of service or workload "nosuch"; see weft status`) {
		t.Errorf("weft tap nosuch: err %v, output:\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "weft"), "--admin", m.admin, "--state-dir", m.stateDir,
		"tap", "reviews", "--max", "5", "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Traffic flows until the tap has what it wants.
	var werr error
	for done := false; !done; {
		select {
		case werr = <-exited:
			done = true
		case <-time.After(100 * time.Millisecond):
			_, _, _ = get(page)
		}
	}
	if werr != nil {
		t.Fatalf("weft tap reviews: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", werr, ctx.Err(), stdout.String(), stderr.String())
	}

	var events []tap.Event
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var e tap.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if e.Kind != tap.KindNote {
			events = append(events, e)
		}
	}
	if len(events) != 5 {
		t.Errorf("got %d events, want 5:\n%s", len(events), stdout.String())
	}
	found := false
	for _, e := range events {
		if e.Kind == tap.KindHTTP && e.Source != nil && e.Destination != nil &&
			e.Source.Workload == "productpage-v1" && reviewsVersion.MatchString(e.Destination.Workload) && e.Status == 200 {
			found = true
			// The principal is the verified SPIFFE ID where the hop is mTLS.
			principalOK := e.Destination.Principal == tap.Unknown || e.Destination.Principal == "spiffe://cluster.local/ns/default/sa/reviews"
			if e.Direction != tap.Inbound || !strings.HasPrefix(e.Path, "/reviews") || e.RequestID == "" || !principalOK {
				t.Errorf("productpage -> reviews event: %+v", e)
			}
		}
	}
	if !found {
		t.Errorf("no productpage-v1 -> reviews-vN 200 event in:\n%s", stdout.String())
	}
}
