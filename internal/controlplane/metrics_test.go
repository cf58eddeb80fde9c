package controlplane

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"weft.dev/weft/internal/model"
)

// TestObserveBuildCountsStates: a build's invalid and partly left out
// resources are counted apart.
func TestObserveBuildCountsStates(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	m.observeBuild(&model.Snapshot{Status: []model.ResourceStatus{
		{State: model.StateValid}, {State: model.StateInvalid}, {State: model.StateInvalid},
		{State: model.StatePartial},
	}}, 0)
	if got := testutil.ToFloat64(m.invalid); got != 2 {
		t.Errorf("weft_config_invalid_resources = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.partial); got != 1 {
		t.Errorf("weft_config_partial_resources = %v, want 1", got)
	}
}
