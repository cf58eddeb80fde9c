package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/controlplane"
)

func newAuthzCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Authorization: check whether a call would be allowed",
	}
	var from, to, path, method, output, requestPrincipal string
	var headers, claims []string
	var port uint32
	check := &cobra.Command{
		Use:   "check --from SOURCE --to SERVICE",
		Short: "Say whether a call from a workload to a service would be allowed (ALLOW or DENY), and which policy decides",
		Long: `Ask the control plane whether a call would be allowed by the
AuthorizationPolicies in force now. It compiles the policies that the
destination's sidecars get, exactly as they get them, and evaluates them with
the source's identity (the SPIFFE ID of its service account and its
namespace). It prints ALLOW or DENY for each workload behind the service,
with the policy and rule that decided, or "no policy applies: allowed".

--from is a workload, service or instance name ("ratings", "reviews-v2", or
name.namespace), a SPIFFE ID (the ingress gateway of weft up is
spiffe://cluster.local/ns/default/sa/ingressgateway), or "none" for a caller
without a sidecar (plaintext). --to is a service.

A call carries no JWT unless --request-principal ISS/SUB says so: it then
carries a valid token (taken as well signed and unexpired) with that issuer
and subject and the claims of --claim NAME=VALUE (repeatable; a name given
twice makes a list; nested claims as in conditions, realm[roles]=admin; aud
and azp give the audiences and presenter). The destination's
RequestAuthentication must accept the issuer and audiences, as its sidecar
would check. Without a token, the output says when a deciding rule matches
on request authentication (requestPrincipals, request.auth.*).

  weft authz check --from ratings --to details
  weft authz check --from productpage --to reviews --path /reviews/0 --method GET
  weft authz check --from none --to ratings --header end-user=jason -o json
  weft authz check --from productpage --to reviews --request-principal https://idp.example.com/alice --claim groups=admins`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			if from == "" || to == "" {
				return fmt.Errorf("--from and --to are both needed")
			}
			q := url.Values{"from": {from}, "to": {to}}
			if path != "" {
				q.Set("path", path)
			}
			if method != "" {
				q.Set("method", method)
			}
			if port != 0 {
				q.Set("port", strconv.FormatUint(uint64(port), 10))
			}
			for _, h := range headers {
				q.Add("header", h)
			}
			if requestPrincipal != "" {
				q.Set("requestPrincipal", requestPrincipal)
			}
			for _, c := range claims {
				q.Add("claim", c)
			}
			var resp controlplane.AuthzCheckResponse
			if err := g.client().do("GET", "/api/v1/authz/check?"+q.Encode(), nil, &resp); err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(resp)
			}
			printAuthz(g.stdout, &resp)
			return nil
		},
	}
	check.Flags().StringVar(&from, "from", "", "source: workload, service, instance, SPIFFE ID, or none")
	check.Flags().StringVar(&to, "to", "", "destination service")
	check.Flags().StringVar(&path, "path", "", "request path (default /)")
	check.Flags().StringVar(&method, "method", "", "request method (default GET)")
	check.Flags().StringArrayVar(&headers, "header", nil, "request header name=value (repeatable)")
	check.Flags().Uint32Var(&port, "port", 0, "destination service port (default: its first port)")
	check.Flags().StringVar(&requestPrincipal, "request-principal", "", "simulate a valid JWT with this issuer/subject (ISS/SUB, split at the last /)")
	check.Flags().StringArrayVar(&claims, "claim", nil, "claim of the simulated JWT, NAME=VALUE (repeatable; needs --request-principal)")
	check.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.AddCommand(check)
	return cmd
}

func printAuthz(w io.Writer, r *controlplane.AuthzCheckResponse) {
	src := r.From
	if r.FromPrincipal != "" {
		src += " (" + r.FromPrincipal + ")"
	} else {
		src += " (no sidecar: plaintext, no principal)"
	}
	if r.RequestPrincipal != "" {
		src += ", with a JWT for " + r.RequestPrincipal
	}
	fmt.Fprintf(w, "%s\nfrom %s\nto   %s\n\n", r.Decision, src, r.To)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tPORT\tDECISION\tPOLICY\tRULE\tREASON")
	for _, res := range r.Results {
		pol, rule := res.Policy, res.Rule
		if pol == "" {
			pol, rule = "-", "-"
		}
		reason := res.Reason
		if res.Audit != "" {
			reason += " (audited by " + res.Audit + ")"
		}
		fmt.Fprintf(tw, "%s\t%d/%s\t%s\t%s\t%s\t%s\n", res.Workload, res.Port, res.Protocol, res.Decision, pol, rule, reason)
	}
	tw.Flush()
	for _, res := range r.Results {
		if res.Note != "" {
			fmt.Fprintf(w, "\nnote (%s): %s\n", res.Workload, res.Note)
		}
	}
}
