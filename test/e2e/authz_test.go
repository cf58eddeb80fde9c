package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemoAuthorization runs the demo with its policies
// (examples/demo/authz.yaml): the product page works through the ingress
// (gateway -> productpage -> details, reviews -> ratings); ratings calling
// details through its own sidecar gets 403 "RBAC: access denied"; and
// `weft authz check` says the same.
func TestDemoAuthorization(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress, "--no-traffic")
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 60*time.Second, "the product page with details and ratings", func() error {
		code, body, err := get(page)
		if err != nil {
			return err
		}
		if code != 200 || !reviewsVersion.MatchString(body) {
			return fmt.Errorf("status %d: %.300s", code, body)
		}
		return nil
	})
	outbound := ""
	for _, in := range m.status(t).Instances {
		if in.Service == "ratings" {
			outbound = in.Outbound
		}
	}
	if outbound == "" {
		t.Fatal("no outbound address for ratings")
	}
	resp, err := viaProxy(outbound).Get("http://details:9080/details/0")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	if resp.StatusCode != 403 || strings.TrimSpace(body) != "RBAC: access denied" {
		t.Errorf("ratings -> details: %d %q, want 403 RBAC: access denied", resp.StatusCode, body)
	}
	out, err := m.weft("", "authz", "check", "--from", "ratings", "--to", "details")
	if err != nil || !strings.HasPrefix(out, "DENY\n") {
		t.Errorf("weft authz check --from ratings --to details: %v\n%s", err, out)
	}
	// The gateway is no registered instance: name it by its SPIFFE ID.
	out, err = m.weft("", "authz", "check", "--from", "spiffe://cluster.local/ns/default/sa/ingressgateway", "--to", "productpage")
	if err != nil || !strings.HasPrefix(out, "ALLOW\n") {
		t.Errorf("weft authz check --from <gateway> --to productpage: %v\n%s", err, out)
	}
	out, err = m.weft("", "authz", "check", "--from", "reviews", "--to", "ratings", "--path", "/ratings/0")
	if err != nil || !strings.HasPrefix(out, "ALLOW\n") || !strings.Contains(out, "default/ratings-callers") {
		t.Errorf("weft authz check --from reviews --to ratings: %v\n%s", err, out)
	}

	// The ingress gateway enforces the policies that select it
	// (examples/demo/ingress-auth.yaml): the shop's API needs a token,
	// the pages do not.
	token, err := os.ReadFile("../../examples/demo/demo-user.jwt")
	if err != nil {
		t.Fatal(err)
	}
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/products/0/reviews", ingress)
	for _, tc := range []struct {
		name    string
		headers []string
		code    int
		body    string
	}{
		{name: "no token", code: 403, body: "RBAC: access denied"},
		{name: "the demo token", headers: []string{"Authorization", "Bearer " + strings.TrimSpace(string(token))}, code: 200, body: `"reviews":`},
		{name: "a tampered token", headers: []string{"Authorization", "Bearer " + strings.TrimSpace(string(token)) + "x"}, code: 401, body: "Jwt verification fails"},
	} {
		code, body, err := get(api, tc.headers...)
		if err != nil || code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("gateway, %s: %d %q (%v), want %d %q", tc.name, code, body, err, tc.code, tc.body)
		}
	}
}
