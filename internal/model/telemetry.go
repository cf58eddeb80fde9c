package model

import (
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// Telemetry is a validated Istio Telemetry resource
// (telemetry.istio.io/v1 and v1alpha1 share these Go types).
type Telemetry = Config[*telemetry.Telemetry]

// Names of the only telemetry providers Weft knows. A Telemetry resource
// may name them in its providers lists (or name none, which means them).
const (
	// TracingProviderName is the mesh's tracing provider: OpenTelemetry
	// spans exported over OTLP/gRPC to MeshTelemetry.TracingEndpoint.
	TracingProviderName = "otel"
	// AccessLogProviderName is the mesh's access log provider: the
	// proxy's JSON lines on its stdout (Istio's built-in "envoy").
	AccessLogProviderName = "envoy"
)

// DefaultRootNamespace is the mesh's root namespace when none is set: a
// Telemetry or ProxyConfig there without a selector applies to every
// proxy.
const DefaultRootNamespace = "istio-system"

// MeshTelemetry are the mesh-wide telemetry defaults: static control
// plane settings (flags of `weft controlplane` and `weft up`) that
// Telemetry resources override.
type MeshTelemetry struct {
	// RootNamespace is the namespace whose selector-less Telemetry and
	// ProxyConfig apply mesh-wide; "" means DefaultRootNamespace.
	RootNamespace string
	// TracingSampling is the percentage (0 to 100) of requests traced when
	// no Telemetry sets randomSamplingPercentage. Default 1.
	TracingSampling float64
	// TracingEndpoint is the OTLP/gRPC collector's host:port; "" means
	// spans are not exported and proxies get no tracing config.
	TracingEndpoint string
	// AccessLogging turns access logs on for every proxy unless a
	// Telemetry turns them off. Default false.
	AccessLogging bool
}

// DefaultMeshTelemetry returns the defaults: 1 % sampling, no collector,
// access logs off, root namespace istio-system.
func DefaultMeshTelemetry() MeshTelemetry {
	return MeshTelemetry{RootNamespace: DefaultRootNamespace, TracingSampling: 1}
}

// Root returns the root namespace, defaulted.
func (m MeshTelemetry) Root() string {
	if m.RootNamespace == "" {
		return DefaultRootNamespace
	}
	return m.RootNamespace
}
