package controlplane

import (
	"fmt"
	"net"
	"strconv"

	"weft.dev/weft/internal/model"
)

// checkTelemetry defaults and checks the mesh-wide telemetry settings.
func checkTelemetry(opts *Options) error {
	if opts.Telemetry == nil {
		d := model.DefaultMeshTelemetry()
		opts.Telemetry = &d
	}
	t := *opts.Telemetry
	if t.RootNamespace == "" {
		t.RootNamespace = model.DefaultRootNamespace
	}
	if t.TracingSampling < 0 || t.TracingSampling > 100 {
		return fmt.Errorf("--tracing-sampling %v is out of range; use 0 to 100", t.TracingSampling)
	}
	if t.TracingEndpoint != "" {
		host, port, err := net.SplitHostPort(t.TracingEndpoint)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			return fmt.Errorf("--tracing-endpoint %q: want host:port of an OTLP/gRPC collector, e.g. 127.0.0.1:4317", t.TracingEndpoint)
		}
	}
	opts.Telemetry = &t
	return nil
}
