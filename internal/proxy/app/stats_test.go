package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

func TestStatsAddrFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "off by default", want: ""},
		{name: "set", args: []string{"--stats-addr", "127.0.0.1:15090"}, want: "127.0.0.1:15090"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := app.ParseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.StatsAddr != tc.want {
				t.Errorf("StatsAddr = %q, want %q", cfg.StatsAddr, tc.want)
			}
		})
	}
}

// TestStatsPort runs a proxy with --stats-addr and checks that the stats
// port serves the admin API's metrics, from the same registry, on
// /stats/prometheus and /metrics, and nothing else.
func TestStatsPort(t *testing.T) {
	cp := proxytest.StartControlPlane(t)
	logs := &proxytest.SyncBuffer{}
	cfg := app.Config{
		XDSAddr: cp.Addr, Name: "stats", NodeID: xdsmeta.NodeID("sidecar", "127.0.0.1", "stats-port", "default"),
		AdminAddr: "127.0.0.1:0", StatsAddr: "127.0.0.1:0",
		XDSBackoffBase: 20 * time.Millisecond, XDSBackoffMax: 200 * time.Millisecond,
	}
	p, err := app.New(cfg, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("proxy did not stop")
		}
	}
	t.Cleanup(stop)

	cp.Set(t, p.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 80, Filter: proxytest.HCMRDS("80")}),
		proxytest.RouteConfig("80", proxytest.VirtualHost("x", []string{"*"}, proxytest.PrefixRoute("/", "c"))),
		proxytest.StaticCluster("c", "127.0.0.1:1"),
	)
	select {
	case <-p.ReadyCh():
	case <-time.After(10 * time.Second):
		t.Fatalf("proxy not ready; logs:\n%s", logs.String())
	}
	stats := p.StatsAddr()
	if stats == "" || stats == p.AdminAddr() {
		t.Fatalf("stats address %q (admin %q)", stats, p.AdminAddr())
	}
	proxyURL := &url.URL{Scheme: "http", Host: p.ListenerAddrs()[xdsmeta.ListenerOutbound]}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	t.Cleanup(tr.CloseIdleConnections)
	resp, _ := get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://anything/x", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request through the proxy: %d, want 503", resp.StatusCode)
	}

	fetch := func(t *testing.T, addr, path string) (int, string) {
		t.Helper()
		resp, body := get(t, http.DefaultClient, "http://"+addr+path, nil)
		return resp.StatusCode, body
	}
	const want = `weft_proxy_requests_total{cluster="c",code="503"} 1`
	for _, tc := range []struct{ name, addr, path string }{
		{"admin /stats/prometheus", p.AdminAddr(), "/stats/prometheus"},
		{"stats /stats/prometheus", stats, "/stats/prometheus"},
		{"stats /metrics", stats, "/metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := fetch(t, tc.addr, tc.path)
			if code != 200 || !strings.Contains(body, want) || !strings.Contains(body, "weft_proxy_ready 1") {
				t.Errorf("%d, want 200 with %s and weft_proxy_ready 1:\n%s", code, want, body)
			}
		})
	}
	t.Run("stats port answers health checks", func(t *testing.T) {
		for _, path := range []string{"/ready", "/healthz/ready"} {
			if code, _ := fetch(t, stats, path); code != http.StatusOK {
				t.Errorf("GET %s on the stats port of a ready proxy = %d, want 200", path, code)
			}
		}
	})
	t.Run("stats port serves nothing else", func(t *testing.T) {
		for _, path := range []string{"/config_dump", "/clusters", "/quitquitquit"} {
			if code, _ := fetch(t, stats, path); code != http.StatusNotFound {
				t.Errorf("GET %s on the stats port = %d, want 404", path, code)
			}
		}
	})

	stop()
	if c, err := net.DialTimeout("tcp", stats, time.Second); err == nil {
		c.Close()
		t.Errorf("stats port %s still accepts after shutdown", stats)
	}
}

func TestStatsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = app.New(app.Config{AdminAddr: "127.0.0.1:0", StatsAddr: ln.Addr().String(), XDSAddr: "127.0.0.1:1"}, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "stats listener on "+ln.Addr().String()) {
		t.Errorf("New with a busy stats address: %v, want an error naming it", err)
	}
}
