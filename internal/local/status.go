package local

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// MeshStatus is the answer of /api/v1/status: what `weft status` prints.
type MeshStatus struct {
	// Version of the mesh model in force.
	Version uint64 `json:"version"`
	// Admin is the admin API address (also the dashboard).
	Admin string `json:"admin"`
	// XDS is the control plane's xDS address.
	XDS string `json:"xds"`
	// ConfigDir is the watched config folder.
	ConfigDir string `json:"configDir"`
	// Ingress lists the gateway URLs.
	Ingress []string `json:"ingress"`
	// Instances are the workload instances and gateways, sorted.
	Instances []InstanceStatus `json:"instances"`
	// Problems are config errors and workloads that cannot run.
	Problems []string `json:"problems"`
	// ScrapeConfig is the Prometheus config (file_sd) for the mesh.
	ScrapeConfig string `json:"scrapeConfig"`
	// Prometheus is the URL of the Prometheus that weft up started, if any.
	Prometheus string `json:"prometheus,omitempty"`
}

// InstanceStatus is one workload instance (app + sidecar) or gateway.
type InstanceStatus struct {
	// Service the instance serves ("reviews"), or "ingress" for a gateway.
	Service string `json:"service"`
	// Namespace of the workload.
	Namespace string `json:"namespace"`
	// Instance name ("reviews-v2-0").
	Instance string `json:"instance"`
	// Workload is the Workload resource's name ("reviews-v2").
	Workload string `json:"workload"`
	// Version label, if any.
	Version string `json:"version"`
	// Locality of the workload ("region/zone/subzone"), if it has one.
	Locality string `json:"locality,omitempty"`
	// Address the sidecar accepts traffic for the app on (its inbound
	// listener), or the gateway's listen address.
	Address string `json:"address"`
	// App is the app's own address (what the sidecar forwards to).
	App string `json:"app,omitempty"`
	// Sidecar is the sidecar's admin address.
	Sidecar string `json:"sidecar"`
	// Stats is the sidecar's metrics address (/stats/prometheus, with the
	// app's own metrics merged when the Workload asks for it).
	Stats string `json:"stats,omitempty"`
	// Outbound is the sidecar's outbound (HTTP proxy) address, the app's
	// HTTP_PROXY.
	Outbound string `json:"outbound,omitempty"`
	// Upstreams are the sidecar's explicit local upstream ports, from
	// "<fqdn>:<service port>" to the local address the app dials
	// ("reviews.default.svc.cluster.local:9080" -> "127.0.0.1:40123").
	Upstreams map[string]string `json:"upstreams,omitempty"`
	// Ready is true when both the sidecar and the app are ready.
	Ready bool `json:"ready"`
	// State of the app process (running, restarting, exited...).
	State string `json:"state"`
	// Restarts of the app and its sidecar.
	Restarts int `json:"restarts"`
	// PID of the app process (of the proxy for a gateway); 0 if not running.
	PID int `json:"pid"`
	// SidecarPID of the sidecar process; 0 if none.
	SidecarPID int `json:"sidecarPid,omitempty"`
	// ProxyConfigs are the ProxyConfigs ("namespace/name") that set how
	// the instance's proxy runs, from the mesh-wide one to its own.
	ProxyConfigs []string `json:"proxyConfigs,omitempty"`
}

// PrintStatus writes the status table.
func PrintStatus(w io.Writer, st MeshStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tVERSION\tLOCALITY\tADDRESS\tSIDECAR\tREADY\tRESTARTS")
	for _, in := range st.Instances {
		ready := "no"
		if in.Ready {
			ready = "yes"
		}
		if !in.Ready && in.State != "" {
			ready = "no (" + in.State + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", in.Service, in.Instance, orDash(in.Version), orDash(in.Locality), in.Address, in.Sidecar, ready, in.Restarts)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, in := range st.Instances {
		if len(in.ProxyConfigs) > 0 {
			fmt.Fprintf(w, "proxy:     %s/%s follows ProxyConfig %s\n", in.Namespace, in.Instance, strings.Join(in.ProxyConfigs, ", "))
		}
	}
	for _, u := range st.Ingress {
		fmt.Fprintf(w, "ingress:   %s\n", u)
	}
	fmt.Fprintf(w, "admin:     http://%s/   (dashboard, /metrics, /debug/syncz)\n", st.Admin)
	fmt.Fprintf(w, "xDS:       %s\n", st.XDS)
	fmt.Fprintf(w, "config:    %s   (config version %d; edit files or use weft apply)\n", st.ConfigDir, st.Version)
	if st.Prometheus != "" {
		fmt.Fprintf(w, "metrics:   %s   (Prometheus scraping every sidecar)\n", st.Prometheus)
	} else if st.ScrapeConfig != "" {
		fmt.Fprintf(w, "metrics:   weft stat; or prometheus --config.file=%s\n", st.ScrapeConfig)
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "problem:   %s\n", p)
	}
}
