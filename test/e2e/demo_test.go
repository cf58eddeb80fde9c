package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weft.dev/weft/internal/testcerts"
)

var reviewsVersion = regexp.MustCompile(`reviews-v[123]`)

// split sends n requests to the product page and counts the reviews
// version that answered each one. Any failure is returned.
func split(url string, n int, headers ...string) (map[string]int, error) {
	counts := map[string]int{}
	for range n {
		code, body, err := get(url, headers...)
		if err != nil {
			return counts, err
		}
		if code != 200 {
			return counts, fmt.Errorf("status %d: %.300s", code, body)
		}
		v := reviewsVersion.FindString(body)
		if v == "" {
			return counts, fmt.Errorf("no reviews version in the page: %.500s", body)
		}
		counts[v]++
	}
	return counts, nil
}

// within checks that k successes of n are consistent with probability p:
// inside five standard deviations of the binomial mean.
func within(t *testing.T, what string, k, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(k)-mean) > 5*sd {
		t.Errorf("%s: %d of %d, want about %.0f (p=%.2f, 5 sigma = %.1f)", what, k, n, mean, p, 5*sd)
	}
}

func TestDemoMesh(t *testing.T) {
	ingress := freePort(t)
	m := startMesh(t, copyDemo(t, ingress), ingress)
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)

	waitFor(t, 60*time.Second, "the product page through the ingress", func() error {
		code, body, err := get(page)
		if err != nil {
			return err
		}
		if code != 200 || !reviewsVersion.MatchString(body) {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "6 workload instances and the ingress to be ready", func() error {
		st, err := m.statusErr()
		if err != nil {
			return err
		}
		ready := 0
		for _, in := range st.Instances {
			if in.Ready {
				ready++
			}
		}
		if ready != 7 || len(st.Instances) != 7 {
			return fmt.Errorf("%d of %d instances ready, want 7: %+v", ready, len(st.Instances), st.Instances)
		}
		return nil
	})
	// Every sidecar's first config is its own: none started before the
	// model knew its instance and rejected a config without its ports.
	if out := m.out.String(); strings.Contains(out, "NACK") {
		t.Errorf("a proxy rejected its config while the demo started:\n%s", grepLines(out, "NACK"))
	}

	t.Run("dashboard", func(t *testing.T) {
		code, body, err := get("http://" + m.admin + "/")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"reviews-v2-0", "ingressgateway", fmt.Sprintf("http://127.0.0.1:%d/", ingress)} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("dashboard (status %d) lacks %q", code, want)
			}
		}
	})

	t.Run("canary 90/10", func(t *testing.T) {
		counts, err := split(page, 500)
		if err != nil {
			t.Fatal(err)
		}
		if counts["reviews-v3"] != 0 {
			t.Errorf("reviews-v3 answered %d requests without end-user: jason", counts["reviews-v3"])
		}
		within(t, "reviews-v2", counts["reviews-v2"], 500, 0.10)
	})

	t.Run("jason always gets v3", func(t *testing.T) {
		counts, err := split(page, 50, "end-user", "jason")
		if err != nil {
			t.Fatal(err)
		}
		if counts["reviews-v3"] != 50 {
			t.Errorf("end-user: jason got %v, want reviews-v3 every time", counts)
		}
	})

	t.Run("apply a new weight with no failed request", func(t *testing.T) {
		var failures, sent atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ { // bounded: stops on signal or after 20000 requests
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if _, err := split(page, 1); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
		out, err := m.weft(reviews5050, "apply", "-f", "-")
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("weft apply: %v\n%s", err, out)
		}
		if !strings.Contains(out, "VirtualService default/reviews applied") {
			t.Errorf("weft apply said %q", out)
		}
		counts, err := split(page, 400)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		within(t, "reviews-v2 after apply", counts["reviews-v2"], 400, 0.5)
		if f := failures.Load(); f != 0 {
			t.Errorf("%d of %d requests failed during the change; first: %v", f, sent.Load(), firstErr.Load())
		}
	})

	t.Run("fault injection for one user", func(t *testing.T) {
		// Istio's fault injection task on the demo: ratings fails for
		// jason (whose reviews-v3 asks it), and for nobody else.
		fault := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
`
		// The demo's own ratings routes come back after.
		m.apply(t, fault, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 0.5s, retryOn: "gateway-error,connect-failure,reset"}
`)
		waitFor(t, 10*time.Second, "jason's ratings to fail with the injected abort", func() error {
			code, body, err := get(page, "end-user", "jason")
			if err != nil {
				return err
			}
			if code != 200 || !strings.Contains(body, "ratings are unavailable right now (500") || !strings.Contains(body, "fault filter abort") {
				return fmt.Errorf("status %d: %.300s", code, body)
			}
			return nil
		})
		// Others are untouched: pages that asked ratings (reviews-v2's,
		// one in ten or in two, by the split in force) have their stars.
		asked := 0
		for i := 0; i < 300 && asked < 3; i++ {
			code, body, err := get(page)
			if err != nil {
				t.Fatal(err)
			}
			if code != 200 || strings.Contains(body, "ratings are unavailable") {
				t.Fatalf("a request without end-user got status %d: %.300s", code, body)
			}
			if strings.Contains(body, "reviews-v2") {
				asked++
			}
		}
		if asked < 3 {
			t.Errorf("only %d of 300 pages came from reviews-v2, which asks ratings", asked)
		}
		// The access log of reviews-v3's sidecar names the fault.
		waitFor(t, 10*time.Second, "weft logs to show the injected abort", func() error {
			out, err := m.weft("", "logs", "--status", "500", "--service", "reviews")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "/ratings/") || !strings.Contains(out, " 500 FI ") {
				return fmt.Errorf("weft logs --status 500 --service reviews:\n%s", out)
			}
			return nil
		})
	})

	t.Run("mirroring to a version that takes no traffic", func(t *testing.T) {
		mirror := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v3}
`
		m.apply(t, mirror, reviews5050)
		waitFor(t, 15*time.Second, "reviews-v3's sidecar to log mirrored copies", func() error {
			// Only v1 answers the page; v3 gets the copies, with the
			// shadow host.
			counts, err := split(page, 5)
			if err != nil {
				return err
			}
			if counts["reviews-v1"] != 5 {
				return fmt.Errorf("the page came from %v, want reviews-v1 only", counts)
			}
			out, err := m.weft("", "logs", "--service", "reviews", "--since", "1m")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "reviews-v3") && strings.Contains(l, "access GET reviews-shadow:9080/reviews/") && strings.Contains(l, " 200 ") {
					return nil
				}
			}
			return fmt.Errorf("no mirrored request in reviews-v3's access log:\n%s", grepLines(out, "reviews-v3"))
		})
	})

	t.Run("delegate", func(t *testing.T) {
		// The README's demo: jason's requests handed to the testers'
		// VirtualService, which cannot be deleted while it is used.
		delegating := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    delegate: {name: reviews-testers}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-testers, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /reviews/}}]
    route: [{destination: {host: reviews, subset: v2}}]
`
		m.apply(t, delegating, "")
		t.Cleanup(func() {
			if out, err := m.weft(reviews5050, "apply", "-f", "-"); err != nil {
				t.Errorf("weft apply: %v\n%s", err, out)
			}
			if out, err := m.weft("", "delete", "virtualservice", "reviews-testers"); err != nil {
				t.Errorf("weft delete: %v\n%s", err, out)
			}
		})
		waitFor(t, 15*time.Second, "jason's reviews from the testers' routes", func() error {
			counts, err := split(page, 10, "end-user", "jason")
			if err != nil || counts["reviews-v2"] != 10 {
				return fmt.Errorf("jason got %v (%v), want reviews-v2 only", counts, err)
			}
			return nil
		})
		if counts, err := split(page, 10); err != nil || counts["reviews-v1"] != 10 {
			t.Errorf("others got %v (%v), want reviews-v1 only", counts, err)
		}
		if out, err := m.weft("", "delete", "virtualservice", "reviews-testers"); err == nil || !strings.Contains(out, "is not a delegate in force") {
			t.Errorf("deleting a delegate in use: %v\n%s; want it refused", err, out)
		}
	})

	t.Run("locality failover", func(t *testing.T) {
		// The README's demo: reviews by locality from productpage's
		// zone (us-east/zone-a, with reviews-v1), then v1 failing.
		traffic, workloads := demoDoc(t, "traffic.yaml", "DestinationRule", "reviews"), demoDoc(t, "workloads.yaml", "Workload", "reviews-v1")
		local := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 2m, maxEjectionPercent: 100}
`
		m.apply(t, local, reviews5050+"---\n"+traffic)
		waitFor(t, 15*time.Second, "reviews from productpage's zone only", func() error {
			counts, err := split(page, 20)
			if err != nil || counts["reviews-v1"] != 20 {
				return fmt.Errorf("the page came from %v (%v), want reviews-v1 only", counts, err)
			}
			return nil
		})
		failing := strings.Replace(workloads, `"--version", "v1"`, `"--version", "v1", "--fail"`, 1)
		if failing == workloads {
			t.Fatalf("reviews-v1's Workload has no --version v1 to add --fail to:\n%s", workloads)
		}
		m.apply(t, failing, workloads)
		// reviews-v1 runs again, with its new command, and fails.
		waitFor(t, 60*time.Second, "reviews-v1-0 to run again, failing", func() error {
			st, err := m.statusErr()
			if err != nil {
				return err
			}
			for _, in := range st.Instances {
				if in.Instance == "reviews-v1-0" && in.Ready {
					return nil
				}
			}
			return fmt.Errorf("reviews-v1-0 is not ready: %+v %v", st.Instances, st.Problems)
		})
		waitFor(t, 60*time.Second, "reviews from the other us-east zone", func() error {
			counts, err := split(page, 20)
			if err != nil || counts["reviews-v2"] != 20 {
				return fmt.Errorf("the page came from %v (%v), want reviews-v2 only", counts, err)
			}
			return nil
		})
		// productpage's sidecar says why: reviews-v1 failed its outlier
		// check, and its priority level takes no requests.
		var v1 string
		for _, in := range m.status(t).Instances {
			if in.Instance == "reviews-v1-0" {
				v1 = in.Address
			}
		}
		if v1 == "" {
			t.Fatal("weft status has no reviews-v1-0")
		}
		out, err := m.weft("", "proxy-config", "endpoints", "productpage-v1-0", "--cluster", "outbound|9080||reviews")
		if err != nil {
			t.Fatalf("weft proxy-config endpoints: %v\n%s", err, out)
		}
		if row := grepLines(out, v1); !strings.Contains(row, "FAILED") || !strings.Contains(row, "us-east/zone-a") {
			t.Errorf("reviews-v1 (%s) is not shown ejected in productpage's sidecar:\n%s", v1, out)
		}
		out, err = m.weft("", "proxy-config", "clusters", "productpage-v1-0", "--cluster", "outbound|9080||reviews")
		if err != nil || !strings.Contains(out, "p0 0%, p1 100%") {
			t.Errorf("weft proxy-config clusters: %v; want priority 0 at 0%% and 1 at 100%%:\n%s", err, out)
		}
	})

	t.Run("HTTPS at the gateway", func(t *testing.T) {
		// The README's demo: an HTTPS server beside the HTTP one, with a
		// certificate from files, then a bad path refused.
		dir := t.TempDir()
		ca := testcerts.NewCA(t, dir)
		cert, key := ca.Issue(t, dir, "bookinfo", testcerts.Leaf{DNSNames: []string{"bookinfo.example.com"}})
		https := freePort(t)
		gateway := func(certFile string) string {
			return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: %d, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, serverCertificate: %s, privateKey: %s}
`, ingress, https, certFile, key)
		}
		m.apply(t, gateway(cert), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
`, ingress))
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", https))
			},
		}}
		defer client.CloseIdleConnections()
		secure := fmt.Sprintf("https://bookinfo.example.com:%d/productpage", https)
		getSecure := func() error {
			resp, err := client.Get(secure)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !reviewsVersion.MatchString(string(b)) {
				return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
			}
			return nil
		}
		waitFor(t, 30*time.Second, "the product page over HTTPS", getSecure)

		out, err := m.weft(gateway("bookinfo.pem"), "apply", "-f", "-")
		if err == nil {
			t.Fatalf("weft apply of a relative certificate path succeeded:\n%s", out)
		}
		for _, want := range []string{"rejected", "Gateway default/bookinfo-gateway", "spec.servers[1].tls.serverCertificate", "not an absolute path"} {
			if !strings.Contains(out, want) {
				t.Errorf("weft apply output lacks %q:\n%s", want, out)
			}
		}
		if err := getSecure(); err != nil {
			t.Errorf("after a refused change the HTTPS server should still serve: %v", err)
		}
	})

	t.Run("a bad change is refused and changes nothing", func(t *testing.T) {
		bad := strings.ReplaceAll(reviews5050, "subset: v2", "subset: v9")
		out, err := m.weft(bad, "apply", "-f", "-")
		if err == nil {
			t.Fatalf("weft apply of an unknown subset succeeded:\n%s", out)
		}
		for _, want := range []string{"rejected", "VirtualService default/reviews", "destination.subset", "v9"} {
			if !strings.Contains(out, want) {
				t.Errorf("weft apply output lacks %q:\n%s", want, out)
			}
		}
		counts, err := split(page, 40)
		if err != nil {
			t.Fatal(err)
		}
		if counts["reviews-v1"] == 0 || counts["reviews-v2"] == 0 {
			t.Errorf("after a refused change the 50/50 split should still serve both: %v", counts)
		}
	})

	t.Run("weft logs finds an injected failure", func(t *testing.T) {
		// A service whose only endpoint refuses connections: a call to it
		// from productpage's sidecar fails with 503 UF.
		dead := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dead, namespace: default}
spec:
  hosts: [dead.default.svc.cluster.local]
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
`
		m.apply(t, dead, "")
		var outbound string
		for _, in := range m.status(t).Instances {
			if in.Instance == "productpage-v1-0" {
				outbound = in.Outbound
			}
		}
		waitFor(t, 10*time.Second, "a 503 from the dead service", func() error {
			resp, err := viaProxy(outbound).Get("http://dead/injected-failure")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 503 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
		waitFor(t, 10*time.Second, "weft logs --status 5xx to show it", func() error {
			out, err := m.weft("", "logs", "--status", "5xx", "--service", "productpage")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "/injected-failure 503 UF") {
				return fmt.Errorf("weft logs --status 5xx:\n%s", out)
			}
			if strings.Contains(out, " 200 ") {
				return fmt.Errorf("weft logs --status 5xx shows a 200:\n%s", out)
			}
			return nil
		})
		// The access log says who called: the caller's workload, and on an
		// mTLS hop its verified identity.
		out, err := m.weft("", "logs", "--status", "503", "--service", "productpage", "-o", "json")
		if err != nil || !strings.Contains(out, `"source_workload":"productpage-v1"`) {
			t.Errorf("weft logs -o json lacks the caller's workload (%v):\n%s", err, out)
		}
		out, err = m.weft("", "logs", "--status", "200", "--service", "reviews", "-o", "json")
		if err != nil || !strings.Contains(out, `"source_workload":"productpage-v1","source_namespace":"default","source_principal":"spiffe://cluster.local/ns/default/sa/productpage"`) {
			t.Errorf("reviews' access log lacks productpage's verified identity (%v):\n%.2000s", err, out)
		}
	})

	t.Run("access log filter", func(t *testing.T) {
		// The README's demo: a Telemetry that logs failures and slow
		// requests only; a bad expression is refused at its field.
		quiet := `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter:
      expression: response.code >= 400 || request.duration > duration('1s')
`
		m.apply(t, quiet, "")
		t.Cleanup(func() {
			if out, err := m.weft("", "delete", "telemetry", "errors-only"); err != nil {
				t.Errorf("weft delete: %v\n%s", err, out)
			}
		})
		base := fmt.Sprintf("http://127.0.0.1:%d", ingress)
		try := 0
		waitFor(t, 20*time.Second, "the 404 alone in the access log", func() error {
			try++
			ok, missing := fmt.Sprintf("/productpage?quiet=%d", try), fmt.Sprintf("/no-such-page-%d", try)
			if code, _, err := get(base + ok); err != nil || code != 200 {
				return fmt.Errorf("GET %s: %d %v", ok, code, err)
			}
			if code, _, err := get(base + missing); err != nil || code != 404 {
				return fmt.Errorf("GET %s: %d %v", missing, code, err)
			}
			time.Sleep(time.Second) // the sidecars write their logs off the request path
			out, err := m.weft("", "logs", "--since", "1m")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			access := grepLines(out, "| access ") // the apps log their requests too
			if !strings.Contains(access, missing+" 404 NR") {
				return fmt.Errorf("the 404 is not logged yet")
			}
			if strings.Contains(access, ok+" ") {
				return fmt.Errorf("the 200 was logged:\n%s", grepLines(access, ok))
			}
			return nil
		})
		bad := strings.Replace(quiet, "|| request.duration > duration('1s')", "&& connection.mtls", 1)
		out, err := m.weft(bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "spec.accessLogging[0].filter.expression: `connection.mtls`: not a condition on an attribute Weft can filter access logs on") {
			t.Errorf("weft apply of an untranslatable filter: %v\n%s; want it refused at its field", err, out)
		}
	})

	t.Run("a killed workload is restarted", func(t *testing.T) {
		var pid int
		for _, in := range m.status(t).Instances {
			if in.Instance == "ratings-v1-0" {
				pid = in.PID
			}
		}
		if pid == 0 {
			t.Fatal("ratings-v1-0 has no pid in weft status")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "ratings-v1-0 to be restarted and ready", func() error {
			st, err := m.statusErr()
			if err != nil {
				return err
			}
			for _, in := range st.Instances {
				if in.Instance == "ratings-v1-0" {
					if in.PID != pid && in.PID != 0 && in.Ready && in.Restarts > 0 {
						return nil
					}
					return fmt.Errorf("%+v", in)
				}
			}
			return fmt.Errorf("ratings-v1-0 missing")
		})
	})

	t.Run("SIGTERM leaves no process behind", func(t *testing.T) {
		if err := m.stop(); err != nil {
			t.Fatalf("weft up: %v", err)
		}
		waitFor(t, 10*time.Second, "every mesh process to exit", func() error {
			if left := processesOf(binDir); len(left) > 0 {
				return fmt.Errorf("still running: %v", left)
			}
			return nil
		})
	})
}

const reviews5050 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason-to-v3
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: canary
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
`

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// demoDoc returns the YAML document of the demo's config file that
// declares kind/name.
func demoDoc(t *testing.T, file, kind, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "demo", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "kind: "+kind+"\n") && strings.Contains(doc, "name: "+name+",") {
			return doc + "\n"
		}
	}
	t.Fatalf("%s has no %s %s", file, kind, name)
	return ""
}
