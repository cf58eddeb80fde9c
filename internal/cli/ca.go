package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/controlplane"
	"weft.dev/weft/internal/local"
	"weft.dev/weft/internal/spiffeid"
)

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Inspect the mesh's certificate authority",
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the CA's roots and intermediates and every workload certificate issued, with expiry",
		Long: `Show where the running mesh's workload certificates come from, and its
certificate authority: its roots (the trust bundle) and intermediates with
their expiry, and every workload certificate (SVID) it has issued that has not
expired yet: instance, SPIFFE ID, serial and expiry.

When the mesh runs with --spiffe-socket, the SPIFFE Workload API (a SPIRE
agent) issues the workload certificates: the status shows the socket, the
control plane's own SPIFFE ID and the trust bundle it reads from there; the
built-in CA then signs only the control plane's TLS certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st controlplane.CAStatus
			if err := g.client().do("GET", "/api/v1/ca", nil, &st); err != nil {
				return err
			}
			if output == "json" {
				return writeIndentedJSON(g.stdout, st)
			}
			printCAStatus(g.stdout, st, time.Now())
			return nil
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.AddCommand(status, newCARotateCmd(g))
	return cmd
}

func newCARotateCmd(g *globals) *cobra.Command {
	var stage, issue, retire bool
	cmd := &cobra.Command{
		Use:   "rotate (--stage | --issue-from-new | --retire-old)",
		Short: "Rotate the CA's root without downtime, one step at a time",
		Long: `Rotate the self-signed root of the mesh's CA in three steps, each refused
while it would break trust (the refusal names the instances not ready yet):

  --stage           create a new root beside the old one; the trust bundle
                    carries both and reaches every sidecar (they poll it)
  --issue-from-new  sign with the new root; sidecars renew at once. Only
                    once every sidecar reports the two-root bundle.
  --retire-old      drop the old root from the bundle. Only once every
                    sidecar uses a certificate from the new root.

'weft ca status' shows the stage and who is ready. A plug-in CA (--cacerts)
is rotated by replacing its files instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var steps []string
			for _, f := range []struct {
				on   bool
				step string
			}{{stage, ca.StepStage}, {issue, ca.StepIssueFromNew}, {retire, ca.StepRetireOld}} {
				if f.on {
					steps = append(steps, f.step)
				}
			}
			if len(steps) != 1 {
				var st ca.Status
				if err := g.client().do("GET", "/api/v1/ca", nil, &st); err != nil {
					return err
				}
				hint := ""
				if st.Rotation.NextStep != "" {
					hint = fmt.Sprintf(" (rotation stage %s: the next step is --%s)", st.Rotation.Stage, st.Rotation.NextStep)
				}
				return fmt.Errorf("give exactly one of --stage, --issue-from-new, --retire-old%s", hint)
			}
			body, _ := json.Marshal(map[string]string{"step": steps[0]})
			var rs ca.RotationStatus
			if err := g.client().do("POST", "/api/v1/ca/rotate", body, &rs); err != nil {
				return err
			}
			switch steps[0] {
			case ca.StepStage:
				fmt.Fprintf(g.stdout, "new root %s staged: the trust bundle now carries both roots\nnext: weft ca rotate --issue-from-new, once weft ca status shows every instance ready\n", rs.NewRoot.Serial)
			case ca.StepIssueFromNew:
				fmt.Fprintf(g.stdout, "signing with the new root %s: sidecars renew on their next bundle poll\nnext: weft ca rotate --retire-old, once weft ca status shows every instance ready\n", rs.SigningRoot)
			case ca.StepRetireOld:
				fmt.Fprintf(g.stdout, "old root retired: the trust bundle holds only %s; rotation done\n", rs.SigningRoot)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&stage, "stage", false, "step 1: create a new root and trust both")
	cmd.Flags().BoolVar(&issue, "issue-from-new", false, "step 2: sign workload certificates with the new root")
	cmd.Flags().BoolVar(&retire, "retire-old", false, "step 3: drop the old root from the trust bundle")
	return cmd
}

// printRotation writes the rotation's stage and who is ready.
func printRotation(w io.Writer, r ca.RotationStatus) {
	if r.NextStep == "" {
		return
	}
	if r.Stage == ca.StageNone {
		fmt.Fprintf(w, "root rotation: none in progress (start one with weft ca rotate --stage)\n\n")
		return
	}
	fmt.Fprintf(w, "root rotation: stage %s, old root %s, new root %s, signing with %s; next: weft ca rotate --%s\n",
		r.Stage, r.OldRoot.Serial, r.NewRoot.Serial, r.SigningRoot, r.NextStep)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tREADY\tWHY NOT")
	for _, in := range r.Instances {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", in.Instance, in.Ready, in.Why)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// printCAStatus writes `weft ca status` as tables.
func printCAStatus(w io.Writer, cs controlplane.CAStatus, now time.Time) {
	st := cs.Status
	if id := cs.Identity; id.Source == controlplane.IdentitySourceSPIFFE {
		fmt.Fprintf(w, "workload certificates: issued by the SPIFFE Workload API at %s (SPIRE), trust domain %s\n", id.SPIFFESocket, st.TrustDomain)
		if id.ControlPlaneID == "" {
			fmt.Fprintf(w, "control plane: no SVID from the Workload API yet (is it registered with the agent? see its log)\n")
		} else {
			fmt.Fprintf(w, "control plane: %s, trust bundle updated %s\n", id.ControlPlaneID, id.Updated.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SPIFFE ROOT\tSERIAL\tEXPIRES\tLEFT")
		for _, c := range id.Bundle {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Subject, c.Serial, c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter, now))
		}
		tw.Flush()
		fmt.Fprintf(w, "\nthe built-in %s CA signs only the control plane's TLS certificate (sidecars verify it with %s)\n\n", st.Mode, st.TrustBundleFile)
		printCATable(w, st, now)
		return
	}
	fmt.Fprintf(w, "workload certificates: issued by the built-in CA\n")
	fmt.Fprintf(w, "trust domain %s, %s CA, workload certificates live %s\n", st.TrustDomain, st.Mode, st.LeafLifetime)
	fmt.Fprintf(w, "trust bundle: %s\n\n", st.TrustBundleFile)
	printRotation(w, st.Rotation)
	printCATable(w, st, now)
	fmt.Fprintln(w)
	if len(st.Leaves) == 0 {
		fmt.Fprintln(w, "no workload certificate issued yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSPIFFE ID\tSERIAL\tEXPIRES\tLEFT")
	for _, l := range st.Leaves {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Instance, l.SPIFFEID, l.Serial, l.NotAfter.UTC().Format(time.RFC3339), left(l.NotAfter, now))
	}
	tw.Flush()
}

// printCATable writes the CA's roots and intermediates.
func printCATable(w io.Writer, st ca.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tSUBJECT\tSERIAL\tEXPIRES\tLEFT")
	for _, c := range st.Roots {
		fmt.Fprintf(tw, "root\t%s\t%s\t%s\t%s\n", c.Subject, c.Serial, c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter, now))
	}
	for _, c := range st.Intermediates {
		fmt.Fprintf(tw, "intermediate\t%s\t%s\t%s\t%s\n", c.Subject, c.Serial, c.NotAfter.UTC().Format(time.RFC3339), left(c.NotAfter, now))
	}
	tw.Flush()
}

// left says how long until t, coarsely: "3649d", "23h", "59m", "40s",
// "expired".
func left(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	default:
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
}

// addUpCAFlags adds weft up's CA flags.
func addUpCAFlags(cmd *cobra.Command, opts *local.Options) {
	cmd.Flags().StringVar(&opts.CAAddr, "ca-addr", "127.0.0.1:15012", "address of the control plane's CA (TLS; a free port is used if taken)")
	cmd.Flags().StringVar(&opts.CACerts, "cacerts", "", "folder of a plug-in CA (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) to use instead of the self-signed root in <state-dir>/ca")
	cmd.Flags().StringVar(&opts.TrustDomain, "trust-domain", spiffeid.DefaultTrustDomain, "trust domain of workload SPIFFE IDs")
	cmd.Flags().DurationVar(&opts.CertTTL, "cert-ttl", ca.DefaultLeafTTL, "lifetime of workload certificates (renewed at 50-80 %); minutes or more")
	cmd.Flags().StringVar(&opts.SPIFFESocket, "spiffe-socket", "", `SPIFFE Workload API (a SPIRE agent), e.g. unix:///run/spire/agent.sock: sidecars get their certificates from it instead of the built-in CA (see docs/spire.md; default "": the built-in CA)`)
}

// addControlPlaneCAFlags adds the CA flags of `weft controlplane`.
func addControlPlaneCAFlags(cmd *cobra.Command, opts *controlplane.Options) {
	cmd.Flags().StringVar(&opts.CAAddr, "ca-addr", "127.0.0.1:15012", "address to serve the CA (TLS) on")
	cmd.Flags().StringVar(&opts.CA.Dir, "ca-dir", "", `folder of the CA's self-signed root, created on first start (default "": no CA unless --cacerts)`)
	cmd.Flags().StringVar(&opts.CA.PluginDir, "cacerts", "", "folder of a plug-in CA (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
	cmd.Flags().StringVar(&opts.CA.TrustDomain, "trust-domain", spiffeid.DefaultTrustDomain, "trust domain of workload SPIFFE IDs")
	cmd.Flags().DurationVar(&opts.CA.LeafTTL, "cert-ttl", ca.DefaultLeafTTL, "lifetime of workload certificates; minutes or more")
	cmd.Flags().StringVar(&opts.CA.SPIFFESocket, "spiffe-socket", "", `SPIFFE Workload API (a SPIRE agent), e.g. unix:///run/spire/agent.sock, whose trust bundle the CA port also trusts for sidecars' client certificates; the control plane needs a registration entry (default "": none)`)
}
