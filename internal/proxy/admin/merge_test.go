package admin_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"weft.dev/weft/internal/proxy/admin"
	"weft.dev/weft/internal/proxy/proxymetrics"
)

func TestMergedAppMetrics(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE shop_orders_total counter\nshop_orders_total{kind=\"book\"} 7\n"+
			"# TYPE weft_proxy_requests_total counter\nweft_proxy_requests_total{cluster=\"fake\",code=\"200\"} 999\n")
	}))
	defer app.Close()
	m := proxymetrics.New()
	m.Request("outbound|8000||httpbin.default.svc.cluster.local", 200, "")

	get := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return string(b)
	}

	page := get(admin.StatsHandler(m, nil, app.URL+"/metrics"))
	for _, want := range []string{
		`shop_orders_total{kind="book"} 7`,
		`weft_proxy_requests_total{cluster="outbound|8000||httpbin.default.svc.cluster.local",code="200"} 1`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("merged page lacks %s", want)
		}
	}
	if strings.Contains(page, `cluster="fake"`) {
		t.Error("the app's family with the proxy's name was merged; the proxy's must win")
	}

	// An app that is down: the proxy's metrics are still served, with a
	// note saying why the app's are missing.
	app.Close()
	page = get(admin.StatsHandler(m, nil, app.URL+"/metrics"))
	if !strings.Contains(page, "weft_proxy_requests_total") || !strings.Contains(page, "# app metrics from "+app.URL+"/metrics unavailable") {
		t.Errorf("page with the app down:\n%s", page)
	}
}
