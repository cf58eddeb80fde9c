package cli

import (
	"github.com/spf13/cobra"

	"weft.dev/weft/internal/model"
)

// addTelemetryFlags adds the mesh-wide telemetry defaults (the same on
// `weft controlplane` and `weft up`) and returns what they fill in.
func addTelemetryFlags(cmd *cobra.Command) *model.MeshTelemetry {
	t := model.DefaultMeshTelemetry()
	fs := cmd.Flags()
	fs.StringVar(&t.TracingEndpoint, "tracing-endpoint", "", `host:port of an OTLP/gRPC collector (Jaeger, OpenTelemetry collector) the sidecars export spans to (default "": no tracing)`)
	fs.Float64Var(&t.TracingSampling, "tracing-sampling", t.TracingSampling, "percentage of requests traced when no Telemetry resource sets randomSamplingPercentage (0 to 100)")
	fs.BoolVar(&t.AccessLogging, "access-logs", false, "turn sidecar access logs on unless a Telemetry resource turns them off")
	fs.StringVar(&t.RootNamespace, "root-namespace", t.RootNamespace, "the mesh's root namespace: its Telemetry and ProxyConfig without a selector apply to every workload, and its AuthorizationPolicies to the whole mesh")
	return &t
}
