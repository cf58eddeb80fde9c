package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// A real Prometheus (Debian's package) scrapes a weft up mesh through the
// file_sd config weft up writes, and PromQL over istio_requests_total shows
// the demo's canary split by destination_version.
func TestPrometheusScrapesTheMesh(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is not installed: apt-get install -y prometheus (the CI script does)")
	}
	ingress := freePort(t)
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMesh(t, copyDemo(t, ingress), ingress, "--prometheus", "--prometheus-addr", promAddr)
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", ingress)
	waitFor(t, 60*time.Second, "the product page", func() error {
		code, _, err := get(page)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	const n = 400
	if _, err := split(page, n); err != nil {
		t.Fatal(err)
	}

	query := `sum by (destination_version) (istio_requests_total{reporter="source",destination_service_name="reviews",response_code="200"})`
	var byVersion map[string]float64
	waitFor(t, 60*time.Second, "Prometheus to have scraped every request", func() error {
		var err error
		byVersion, err = promQuery(promAddr, query)
		if err != nil {
			return err
		}
		if total := byVersion["v1"] + byVersion["v2"]; total < n {
			return fmt.Errorf("%v requests to reviews v1+v2 so far: %v", total, byVersion)
		}
		return nil
	})
	total := byVersion["v1"] + byVersion["v2"]
	within(t, "Prometheus: v2 share of reviews requests", int(byVersion["v2"]), int(total), 0.10)
	if byVersion["v3"] != 0 {
		t.Errorf("v3 got %v requests without end-user: jason", byVersion["v3"])
	}

	// weft stat reads the same traffic from the sidecars, server side.
	waitFor(t, 30*time.Second, "weft stat to show reviews v1 and v2", func() error {
		out, err := m.weft("", "stat", "reviews", "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var res struct {
			Rows []struct {
				Workload    string  `json:"workload"`
				Version     string  `json:"version"`
				Requests    float64 `json:"requests"`
				SuccessRate float64 `json:"successRate"`
				P99         float64 `json:"p99Ms"`
			} `json:"rows"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, r := range res.Rows {
			if r.Requests > 0 && r.SuccessRate == 1 && r.P99 > 0 {
				seen[r.Version] = true
			}
		}
		if !seen["v1"] || !seen["v2"] {
			return fmt.Errorf("weft stat rows: %s", out)
		}
		return nil
	})
}

// promQuery runs an instant query and returns the value per
// destination_version.
func promQuery(addr, q string) (map[string]float64, error) {
	_, body, err := get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, fmt.Errorf("%v: %.200s", err, body)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query failed: %.300s", body)
	}
	out := map[string]float64{}
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		out[r.Metric["destination_version"]] = v
	}
	return out, nil
}
