package controlplane

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/model"
)

func TestCheckTelemetry(t *testing.T) {
	tests := []struct {
		name string
		in   *model.MeshTelemetry
		want model.MeshTelemetry
		err  string
	}{
		{name: "defaults", want: model.MeshTelemetry{RootNamespace: "istio-system", TracingSampling: 1}},
		{name: "set", in: &model.MeshTelemetry{TracingSampling: 100, TracingEndpoint: "127.0.0.1:4317", AccessLogging: true, RootNamespace: "mesh"},
			want: model.MeshTelemetry{TracingSampling: 100, TracingEndpoint: "127.0.0.1:4317", AccessLogging: true, RootNamespace: "mesh"}},
		{name: "sampling out of range", in: &model.MeshTelemetry{TracingSampling: 101}, err: "--tracing-sampling 101 is out of range"},
		{name: "endpoint without port", in: &model.MeshTelemetry{TracingEndpoint: "jaeger"}, err: `--tracing-endpoint "jaeger": want host:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Telemetry: tc.in}
			err := checkTelemetry(&opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *opts.Telemetry); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
