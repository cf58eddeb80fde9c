package config

import (
	"google.golang.org/protobuf/proto"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// KindTelemetry is Istio's Telemetry (telemetry.istio.io); its spec
// decodes into *telemetry.Telemetry of istio.io/api/telemetry/v1alpha1,
// which telemetry.istio.io/v1 aliases.
const KindTelemetry = "Telemetry"

// kindAPIVersions are the apiVersions of Istio kinds outside
// networking.istio.io (those use istioAPIVersions).
var kindAPIVersions = map[string][]string{
	KindTelemetry: {"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"},
}

func init() {
	istioKinds[KindTelemetry] = func() proto.Message { return &telemetry.Telemetry{} }
}
