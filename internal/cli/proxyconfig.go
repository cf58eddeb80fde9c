package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/local"
	"weft.dev/weft/internal/proxy/admin"
)

func newProxyConfigCmd(g *globals) *cobra.Command {
	var output, cluster, namespace string
	cmd := &cobra.Command{
		Use:   "proxy-config clusters|endpoints INSTANCE",
		Short: "Show what one sidecar's load balancer sees now: clusters and their priority loads, endpoints and their health",
		Long: `Ask one sidecar (or the ingress gateway) of the running mesh what its load
balancer sees now, from its admin API:

  clusters   each cluster's balancer, requests and connections in flight,
             circuit-breaker overflows, and how its requests are shared
             between priority levels (locality failover moves them as
             outlier detection ejects endpoints)
  endpoints  each endpoint: its health, whether outlier detection has
             ejected it, its locality, priority and weight, and its requests

INSTANCE is an instance ("reviews-v1-0"), or a workload or service with one
running instance.`,
		Example: `  weft proxy-config endpoints productpage-v1-0 --cluster reviews
  weft proxy-config clusters ingressgateway -o json`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"clusters", "endpoints"},
		RunE: func(cmd *cobra.Command, args []string) error {
			what, target := args[0], args[1]
			if what != "clusters" && what != "endpoints" {
				return fmt.Errorf("%q: say clusters or endpoints", what)
			}
			var st local.MeshStatus
			if err := g.client().do("GET", "/api/v1/status", nil, &st); err != nil {
				return err
			}
			in, err := findInstance(st.Instances, target, namespace)
			if err != nil {
				return err
			}
			list, err := sidecarClusters(in)
			if err != nil {
				return err
			}
			list = slices.DeleteFunc(list, func(c admin.ClusterStatus) bool { return !strings.Contains(c.Name, cluster) })
			if output == "json" {
				return writeIndentedJSON(g.stdout, list)
			}
			if what == "clusters" {
				printClusters(g.stdout, list)
			} else {
				printEndpoints(g.stdout, list)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of INSTANCE (default: any, if the name is unique)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "only clusters whose name contains this (\"reviews\", \"outbound|9080|v1|\")")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}

// findInstance picks the instance a proxy-config target names, in
// namespace ns ("": any): an instance, or a workload or service that has
// one.
func findInstance(ins []local.InstanceStatus, target, ns string) (local.InstanceStatus, error) {
	var exact, found []local.InstanceStatus
	for _, in := range ins {
		switch {
		case ns != "" && in.Namespace != ns:
		case in.Instance == target:
			exact = append(exact, in)
		case in.Workload == target || in.Service == target:
			found = append(found, in)
		}
	}
	if len(exact) > 0 {
		found = exact
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return local.InstanceStatus{}, fmt.Errorf("no running instance, workload or service %q; see weft status", target)
	}
	names := make([]string, len(found))
	for i, in := range found {
		names[i] = in.Namespace + "/" + in.Instance
	}
	if len(exact) > 0 {
		return local.InstanceStatus{}, fmt.Errorf("there is an instance %q in more than one namespace (%s); pass --namespace", target, strings.Join(names, ", "))
	}
	return local.InstanceStatus{}, fmt.Errorf("%q has %d instances (%s); name one", target, len(found), strings.Join(names, ", "))
}

// sidecarClusters reads an instance's sidecar's /clusters.
func sidecarClusters(in local.InstanceStatus) ([]admin.ClusterStatus, error) {
	if in.Sidecar == "" {
		return nil, fmt.Errorf("%s has no sidecar", in.Instance)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + in.Sidecar + "/clusters?format=json")
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s's sidecar admin at %s: %w", in.Instance, in.Sidecar, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s's sidecar answered %s: %s", in.Instance, resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Clusters []admin.ClusterStatus `json:"clusters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s's sidecar sent clusters that do not decode: %w", in.Instance, err)
	}
	return out.Clusters, nil
}

func printClusters(w io.Writer, list []admin.ClusterStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tLB\tENDPOINTS\tACTIVE\tCONNECTIONS\tOVERFLOWS\tPRIORITY LOADS")
	for _, c := range list {
		var loads []string
		for _, l := range c.PriorityLoads {
			s := fmt.Sprintf("p%d %d%%", l.Priority, l.Healthy)
			if l.Degraded > 0 {
				s += fmt.Sprintf(" (+%d%% degraded)", l.Degraded)
			}
			if l.Panic {
				s += " panic"
			}
			loads = append(loads, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", c.Name, c.LBPolicy, len(c.Hosts), c.ActiveRequests, c.ActiveConnections, c.Overflows, dash(strings.Join(loads, ", ")))
	}
	tw.Flush()
}

func printEndpoints(w io.Writer, list []admin.ClusterStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTATUS\tOUTLIER CHECK\tLOCALITY\tPRIORITY\tWEIGHT\tACTIVE\tREQUESTS\tERRORS\tCLUSTER")
	for _, c := range list {
		for _, h := range c.Hosts {
			health, ejected := strings.CutSuffix(h.Health, "/failed_outlier_check")
			if health == "" {
				health = "healthy"
			}
			check := "OK"
			if ejected {
				check = "FAILED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", h.Address, strings.ToUpper(health), check, dash(h.Locality), h.Priority, h.Weight, h.Active, h.Total, h.Failures, c.Name)
		}
	}
	tw.Flush()
}
