package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/examples/bookinfo"
	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/local"
	"weft.dev/weft/internal/meshstats"
	"weft.dev/weft/internal/model"
	proxyapp "weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdsserver"
)

func newUpCmd(g *globals) *cobra.Command {
	var opts local.Options
	cmd := &cobra.Command{
		Use:   "up [-f PATH]",
		Short: "Run a whole mesh on this machine: control plane, sidecars, workloads, ingress",
		Long: `Run a mesh on this machine, without root: the control plane, one sidecar per
workload instance, the workloads themselves, an ingress gateway and the admin
API. With no -f, runs the built-in demo shop (open http://127.0.0.1:8080/productpage).

PATH is a folder of YAML (watched: edits apply live) or one YAML file, holding
Weft Workloads beside Istio resources. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.StateDir = g.stateDir
			opts.Logger = g.logger()
			opts.Stdout = g.stdout
			if g.admin != "" {
				opts.AdminAddr = g.admin
			}
			return local.Run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Path, "file", "f", "", "folder or file of mesh config (default: the built-in demo)")
	cmd.Flags().StringVar(&opts.XDSAddr, "xds-addr", "127.0.0.1:15010", "xDS address of the control plane (a free port is used if taken)")
	cmd.Flags().BoolVar(&opts.NoTraffic, "no-traffic", false, "do not run the demo's traffic generator")
	cmd.Flags().BoolVar(&opts.Prometheus, "prometheus", false, "also run Prometheus (the prometheus program on PATH) scraping every sidecar")
	cmd.Flags().StringVar(&opts.PrometheusAddr, "prometheus-addr", "127.0.0.1:9090", "where the Prometheus of --prometheus listens")
	cmd.Flags().StringVar(&opts.ProxyBinary, "proxy-binary", "", "sidecar binary (default: weft-proxy beside weft, else 'weft proxy')")
	addUpCAFlags(cmd, &opts)
	opts.Telemetry = addTelemetryFlags(cmd)
	return cmd
}

func newControlPlaneCmd(g *globals) *cobra.Command {
	var opts controlplane.Options
	cmd := &cobra.Command{
		Use:   "controlplane --config DIR",
		Short: "Run the control plane alone: watch a folder of config and serve xDS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Logger = g.logger()
			cp, err := controlplane.New(opts)
			if err != nil {
				return err
			}
			return cp.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&opts.ConfigDir, "config", "", "folder of YAML config to load and watch (required)")
	cmd.Flags().StringVar(&opts.XDSAddr, "xds-addr", "127.0.0.1:15010", "address to serve xDS (plaintext) on")
	cmd.Flags().StringVar(&opts.AdminAddr, "admin-addr", "127.0.0.1:15014", "address to serve the admin API on (loopback unless --admin-allow-remote)")
	cmd.Flags().BoolVar(&opts.AdminAllowRemote, "admin-allow-remote", false, "allow --admin-addr to be reachable from other hosts; the admin API has no authentication yet (tap stays loopback-only)")
	addControlPlaneCAFlags(cmd, &opts)
	opts.Telemetry = addTelemetryFlags(cmd)
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newProxyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "proxy [flags]",
		Short:              "Run the sidecar proxy (the same as the weft-proxy binary)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := proxyapp.Main(cmd.Context(), args, g.stdout, g.stderr); code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
}

func newDemoAppCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "demo-app NAME [flags]",
		Short:              "Run one app of the built-in demo (productpage, details, reviews, ratings, traffic)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("name an app: productpage, details, reviews, ratings or traffic")
			}
			if code := bookinfo.Run(cmd.Context(), args[0], args[1:], g.stdout, g.stderr); code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
}

func newAnalyzeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "analyze PATH...",
		Short: "Check mesh config offline; one line per problem, exit 1 on errors",
		Long: `Check files or folders of mesh config without a running mesh. Each finding is
printed as 'file:line: Kind namespace/name: field: message'. The exit code is 1
if any finding is an error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := validate.Analyze(g.stdout, args); code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
}

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate resources and apply them to the running mesh",
		Long: `Validate the resources in FILE ('-' for standard input) against the running
mesh's config, and if nothing becomes invalid, write them into its config folder.
The change is live when the command returns. A rejected change says why and
changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, name, err := readInput(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			q := url.Values{"file": {name}}
			if dryRun {
				q.Set("dryRun", "true")
			}
			var res controlplane.ApplyResult
			if err := g.client().do("POST", "/api/v1/apply?"+q.Encode(), data, &res); err != nil {
				return err
			}
			printApplyResult(g.stdout, res, "applied", dryRun)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file of YAML resources, or - for standard input (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; change nothing")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func printApplyResult(w io.Writer, res controlplane.ApplyResult, verb string, dryRun bool) {
	suffix := ""
	if dryRun {
		suffix = " (dry run: nothing written)"
	}
	for _, c := range res.Changed {
		fmt.Fprintf(w, "%s %s%s\n", c, verb, suffix)
	}
	for _, wa := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wa)
	}
	if !dryRun && res.Version != 0 {
		fmt.Fprintf(w, "config version %d is live\n", res.Version)
	}
}

func newGetCmd(g *globals) *cobra.Command {
	var output, namespace string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List resources of the running mesh with their status",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"kind": {args[0]}}
			if len(args) == 2 {
				q.Set("name", args[1])
			}
			if namespace != "" {
				q.Set("namespace", namespace)
			}
			var res []controlplane.ResourceView
			if err := g.client().do("GET", "/api/v1/resources?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			switch output {
			case "json":
				return writeIndentedJSON(g.stdout, res)
			case "yaml":
				for i, r := range res {
					if i > 0 {
						fmt.Fprintln(g.stdout, "---")
					}
					fmt.Fprint(g.stdout, r.YAML)
				}
				return nil
			}
			if len(res) == 0 {
				fmt.Fprintf(g.stderr, "no %s found\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tSTATE\tFILE")
			for _, r := range res {
				state := r.State
				switch {
				case r.ServingLastGood:
					state += " (last good in force)"
				case r.State == string(model.StatePartial):
					state += " (in force without what its errors name)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s:%d\n", r.Kind, r.Namespace, r.Name, state, r.File, r.Line)
			}
			tw.Flush()
			for _, r := range res {
				for _, f := range r.Findings {
					fmt.Fprintln(g.stdout, "  "+f)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only this namespace")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a resource from the running mesh's config (refused if it would break another)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := fmt.Sprintf("/api/v1/resources/%s/%s/%s", url.PathEscape(args[0]), url.PathEscape(namespace), url.PathEscape(args[1]))
			var res controlplane.ApplyResult
			if err := g.client().do("DELETE", path, nil, &res); err != nil {
				return err
			}
			printApplyResult(g.stdout, res, "deleted", false)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of the resource")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running mesh: services, instances, sidecars and readiness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st local.MeshStatus
			if err := g.client().do("GET", "/api/v1/status", nil, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(g.stdout, st)
			}
			local.PrintStatus(g.stdout, st)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}

func newStatCmd(g *globals) *cobra.Command {
	var output string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "stat [SERVICE|WORKLOAD]",
		Short: "Success rate, requests per second and latency per workload version",
		Long: `Show the golden signals of every workload version (or those of one service or
workload) over a recent window: success rate, requests per second and latency
percentiles, as the serving sidecars recorded them. The control plane scrapes the
sidecars itself; Prometheus is not needed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"window": {window.String()}}
			if len(args) == 1 {
				q.Set("target", args[0])
			}
			var res meshstats.Result
			if err := g.client().do("GET", "/api/v1/stat?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(g.stdout, res)
			}
			if len(res.Rows) == 0 {
				fmt.Fprintln(g.stderr, "no traffic recorded yet (the sidecars are scraped every few seconds)")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tSERVICE\tWORKLOAD\tVERSION\tSUCCESS\tRPS\tP50\tP95\tP99")
			for _, r := range res.Rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f%%\t%.1f\t%s\t%s\t%s\n", r.Namespace, r.Service, r.Workload, dash(r.Version),
					100*r.SuccessRate, r.RPS, meshstats.FormatMs(r.P50), meshstats.FormatMs(r.P95), meshstats.FormatMs(r.P99))
			}
			tw.Flush()
			fmt.Fprintf(g.stdout, "(over the last %s)\n", res.Window.Round(time.Second))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().DurationVarP(&window, "window", "w", time.Minute, "how far back to look (at most 15m)")
	return cmd
}

func newLogsCmd(g *globals) *cobra.Command {
	var q local.LogQuery
	var service, workload, instance, output string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Search the access logs and app output of every instance in one place",
		Long: `Search what every process of the local mesh wrote: the apps' own output, the
sidecars' logs and their JSON access logs (when access logging is on: one line
per HTTP request and per closed TCP connection), kept by weft up under
<state-dir>/logs, size-bounded and rotated. Works while the mesh runs and after
it stopped.`,
		Example: `  weft logs --service reviews --since 5m
  weft logs --status 5xx
  weft logs --trace 4bf92f3577b34da6a3ce929d0e0e4736
  weft logs --workload productpage-v1 --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q.StateDir = g.stateDir
			q.JSON = output == "json"
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			if service != "" || workload != "" || instance != "" {
				q.Instances = map[string]bool{}
				if instance != "" {
					q.Instances[instance] = true
				}
			}
			if service != "" || workload != "" {
				var st local.MeshStatus
				if err := g.client().do("GET", "/api/v1/status", nil, &st); err != nil {
					return fmt.Errorf("finding the instances of %s: %w", service+workload, err)
				}
				for _, in := range st.Instances {
					if (service != "" && in.Service == service) || (workload != "" && in.Workload == workload) {
						q.Instances[in.Instance] = true
					}
				}
				if len(q.Instances) == 0 {
					return fmt.Errorf("no instance of %s in the running mesh; see weft status", service+workload)
				}
			}
			return local.SearchLogs(cmd.Context(), q, g.stdout)
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only instances of this service")
	cmd.Flags().StringVar(&workload, "workload", "", "only instances of this workload")
	cmd.Flags().StringVar(&instance, "instance", "", "only this instance (e.g. reviews-v2-0)")
	cmd.Flags().DurationVar(&since, "since", 0, "only lines from this long ago (e.g. 10m)")
	cmd.Flags().BoolVarP(&q.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().StringVar(&q.Status, "status", "", "only access log lines of HTTP requests with this response code: 5xx, 4xx, 503... (TCP connections have none)")
	cmd.Flags().StringVar(&q.Trace, "trace", "", "only lines that mention this trace ID")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func newProxyStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "Show every connected proxy's xDS sync state per type (SYNCED, STALE, NACKED)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st []xdsserver.ProxyStatus
			if err := g.client().do("GET", "/debug/syncz", nil, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(g.stdout, st)
			}
			printProxyStatus(g.stdout, st)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printProxyStatus(w io.Writer, st []xdsserver.ProxyStatus) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no proxy is connected")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROXY\tTYPE\tNAMESPACE\tLDS\tRDS\tCDS\tEDS")
	var errs []string
	for _, p := range st {
		cols := map[string]string{}
		for _, ts := range p.Types {
			cols[ts.Type] = ts.State
			if ts.Error != "" {
				errs = append(errs, fmt.Sprintf("%s %s: %s", p.ID, ts.Type, ts.Error))
			}
		}
		name := p.Name
		if name == "" {
			name = p.ID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, p.Type, p.Namespace,
			dash(cols["LDS"]), dash(cols["RDS"]), dash(cols["CDS"]), dash(cols["EDS"]))
	}
	tw.Flush()
	sort.Strings(errs)
	for _, e := range errs {
		fmt.Fprintln(w, "NACK: "+e)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
