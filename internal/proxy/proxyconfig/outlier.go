package proxyconfig

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Outlier is a cluster's outlier detection (passive health checking): a
// host that answers with a run of errors is ejected from load balancing
// for a while. Weft applies Envoy's consecutive-error detectors.
type Outlier struct {
	// Consecutive5xx ejects a host after this many 5xx answers (and
	// local failures: connect, reset, timeout) in a row, with
	// probability Enforcing5xx percent; 0 turns it off.
	Consecutive5xx, Enforcing5xx uint32
	// ConsecutiveGateway does the same for gateway errors (502, 503, 504
	// and local failures); Envoy enforces it at 0 % unless told.
	ConsecutiveGateway, EnforcingGateway uint32
	// BaseEjection is how long a first ejection lasts; the n-th in a row
	// lasts n times as long, at most MaxEjection. Interval is how long a
	// host must stay in service for its count of ejections to drop by one.
	BaseEjection, MaxEjection, Interval time.Duration
	// MaxEjectionPercent bounds the share of the cluster's hosts that are
	// ejected at once (one host may always be).
	MaxEjectionPercent uint32
	// PanicPercent is Envoy's healthy panic threshold (Istio's
	// minHealthPercent; default 50): when the priority levels' healths
	// add up to less than 100 %, a level with fewer than this share of
	// its hosts available (not ejected, EDS healthy or degraded) balances
	// over all of its hosts, ignoring health and ejections; 0 turns
	// panic off. A cluster without outlier detection never panics.
	PanicPercent float64
}

// parseOutlier validates a cluster's outlier_detection with Envoy's
// defaults; nil when the cluster has none.
func parseOutlier(c *clusterv3.Cluster, unenforced *[]string) (*Outlier, error) {
	od := c.GetOutlierDetection()
	if od == nil {
		return nil, nil
	}
	u32 := func(v *wrapperspb.UInt32Value, def uint32) uint32 {
		if v == nil {
			return def
		}
		return v.GetValue()
	}
	dur := func(d *durationpb.Duration, def time.Duration) time.Duration {
		if d == nil {
			return def
		}
		return d.AsDuration()
	}
	out := &Outlier{
		Consecutive5xx:     u32(od.GetConsecutive_5Xx(), 5),
		Enforcing5xx:       u32(od.GetEnforcingConsecutive_5Xx(), 100),
		ConsecutiveGateway: u32(od.GetConsecutiveGatewayFailure(), 5),
		EnforcingGateway:   u32(od.GetEnforcingConsecutiveGatewayFailure(), 0),
		BaseEjection:       dur(od.GetBaseEjectionTime(), 30*time.Second),
		MaxEjection:        dur(od.GetMaxEjectionTime(), 300*time.Second),
		Interval:           dur(od.GetInterval(), 10*time.Second),
		MaxEjectionPercent: u32(od.GetMaxEjectionPercent(), 10),
		PanicPercent:       50,
	}
	if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p != nil {
		out.PanicPercent = p.GetValue()
	}
	switch {
	case out.Enforcing5xx > 100 || out.EnforcingGateway > 100 || out.MaxEjectionPercent > 100:
		return nil, fmt.Errorf("outlier_detection: an enforcing percentage or max_ejection_percent is over 100")
	case out.BaseEjection <= 0 || out.Interval <= 0:
		return nil, fmt.Errorf("outlier_detection: base_ejection_time and interval must be more than 0")
	case out.PanicPercent < 0 || out.PanicPercent > 100:
		return nil, fmt.Errorf("common_lb_config.healthy_panic_threshold %v is not from 0 to 100", out.PanicPercent)
	}
	out.MaxEjection = max(out.MaxEjection, out.BaseEjection)
	// Envoy's other detectors: success rate is on unless its enforcing
	// percentage is 0 (Istio sets 0); failure percentage and local-origin
	// splitting are off unless set.
	if u32(od.GetEnforcingSuccessRate(), 100) > 0 {
		*unenforced = append(*unenforced, fmt.Sprintf("cluster %q: outlier_detection success rate detection (enforcing_success_rate is not 0)", c.GetName()))
	}
	if u32(od.GetEnforcingFailurePercentage(), 0) > 0 || u32(od.GetEnforcingFailurePercentageLocalOrigin(), 0) > 0 {
		*unenforced = append(*unenforced, fmt.Sprintf("cluster %q: outlier_detection failure percentage detection", c.GetName()))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		*unenforced = append(*unenforced, fmt.Sprintf("cluster %q: outlier_detection split_external_local_origin_errors (local failures count as 5xx and gateway errors)", c.GetName()))
	}
	return out, nil
}
