package admin

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weft.dev/weft/internal/proxy/proxymetrics"
)

// appScrapeTimeout bounds the fetch of the app's metrics, so a slow app
// never holds up the proxy's own.
const appScrapeTimeout = 2 * time.Second

// mergedMetrics serves the proxy's metrics followed by the app's.
func mergedMetrics(m *proxymetrics.Metrics, appURL string) http.Handler {
	client := &http.Client{Timeout: appScrapeTimeout, Transport: &http.Transport{Proxy: nil}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		own, err := m.Registry.Gather()
		if err != nil {
			http.Error(w, "gathering proxy metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		app, appErr := scrape(r.Context(), client, appURL)
		names := map[string]bool{}
		for _, f := range own {
			names[f.GetName()] = true
		}
		all := own
		for _, f := range app {
			if !names[f.GetName()] {
				all = append(all, f)
			}
		}
		sort.SliceStable(all[len(own):], func(i, j int) bool {
			return all[len(own)+i].GetName() < all[len(own)+j].GetName()
		})
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, f := range all {
			if err := enc.Encode(f); err != nil {
				return
			}
		}
		if appErr != nil {
			// Said in the page, so whoever scrapes sees why app metrics
			// are missing; the proxy's are still served.
			fmt.Fprintf(w, "# app metrics from %s unavailable: %v\n", appURL, appErr)
		}
	})
}

// scrape fetches and parses a Prometheus text exposition.
func scrape(ctx context.Context, c *http.Client, url string) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(families))
	for _, f := range families {
		out = append(out, f)
	}
	return out, nil
}
