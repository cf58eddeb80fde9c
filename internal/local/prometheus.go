package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"weft.dev/weft/internal/supervisor"
)

// A local mesh tells Prometheus what to scrape with file-based service
// discovery: weft up keeps <state-dir>/prometheus/sidecars.json in step
// with the running sidecars and gateways, and writes a prometheus.yml that
// reads it. A stock Prometheus started with that file scrapes the mesh:
//
//	prometheus --config.file=<state-dir>/prometheus/prometheus.yml \
//	  --storage.tsdb.path=/tmp/weft-prom --web.listen-address=127.0.0.1:9090
//
// (`weft up --prometheus` starts exactly that when prometheus is on PATH.)

const prometheusConfig = `# Written by weft up: a Prometheus scrape config for this local mesh.
# Sidecars and gateways are listed in sidecars.json (file_sd), rewritten as
# instances come and go; the control plane is in controlplane.json.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
- job_name: weft-sidecars
  metrics_path: /stats/prometheus
  file_sd_configs:
  - files: [sidecars.json]
    refresh_interval: 5s
- job_name: weft-controlplane
  metrics_path: /metrics
  file_sd_configs:
  - files: [controlplane.json]
    refresh_interval: 5s
`

// fileSDGroup is one entry of a Prometheus file_sd file.
type fileSDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// prometheusDir is where the scrape config lives.
func (m *mesh) prometheusDir() string { return filepath.Join(m.stateDir, "prometheus") }

// writePrometheus rewrites the scrape config and target files. Files are
// replaced by rename, so Prometheus never reads half a file.
func (m *mesh) writePrometheus() error {
	dir := m.prometheusDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m.mu.Lock()
	var groups []fileSDGroup
	add := func(in *instance) {
		mi := in.model
		if mi.StatsPort == 0 {
			return
		}
		labels := map[string]string{
			"namespace":     mi.Namespace,
			"weft_instance": mi.Name,
			"workload":      mi.Workload,
		}
		if v := mi.Labels["app"]; v != "" {
			labels["app"] = v
		}
		if v := mi.Labels["version"]; v != "" {
			labels["version"] = v
		}
		groups = append(groups, fileSDGroup{Targets: []string{fmt.Sprintf("127.0.0.1:%d", mi.StatsPort)}, Labels: labels})
	}
	for _, in := range m.running {
		add(in)
	}
	if m.gateway != nil {
		add(m.gateway)
	}
	m.mu.Unlock()
	sort.Slice(groups, func(i, j int) bool { return groups[i].Labels["weft_instance"] < groups[j].Labels["weft_instance"] })
	if groups == nil {
		groups = []fileSDGroup{}
	}
	cp := []fileSDGroup{{Targets: []string{m.cp.AdminAddr()}, Labels: map[string]string{"component": "controlplane"}}}
	for name, v := range map[string]any{"sidecars.json": groups, "controlplane.json": cp} {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return writeFileAtomic(filepath.Join(dir, "prometheus.yml"), []byte(prometheusConfig))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startPrometheus runs a Prometheus server on the scrape config.
func (m *mesh) startPrometheus(ctx context.Context) error {
	addr := m.opts.PrometheusAddr
	if addr == "" {
		addr = "127.0.0.1:9090"
	}
	dir := m.prometheusDir()
	h, err := m.sup.Start(ctx, supervisor.Process{
		Name:  "prometheus",
		Group: groupTelemetry,
		Command: []string{"prometheus",
			"--config.file=" + filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--log.level=warn",
		},
		Ready: supervisor.HTTPReady("http://" + addr + "/-/ready"),
	})
	if err != nil {
		return fmt.Errorf("%w: install it (Debian: apt-get install -y prometheus) or run without --prometheus", err)
	}
	m.mu.Lock()
	m.prometheus = "http://" + addr + "/"
	m.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return h.WaitReady(wctx)
}
