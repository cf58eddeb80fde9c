package validate

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// The values of a DestinationRule's traffic policies that the sidecar's
// xDS client parses (proxyconfig.ParseCluster): one it refuses makes it
// refuse the cluster, which every sidecar shares. Unset fields keep their
// defaults (Istio's, as xdstranslate writes them, else Envoy's) and are
// fine.

// checkTrafficPolicies checks every traffic policy of a DestinationRule:
// the rule's, its subsets', and their per-port settings.
func checkTrafficPolicies(rep *reporter, dr *networking.DestinationRule) {
	check := func(f string, tp *networking.TrafficPolicy) {
		if tp == nil {
			return
		}
		checkPolicyValues(rep, f, tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection())
		for i, p := range tp.GetPortLevelSettings() {
			checkPolicyValues(rep, fmt.Sprintf("%s.portLevelSettings[%d]", f, i), p.GetLoadBalancer(), p.GetConnectionPool(), p.GetOutlierDetection())
		}
	}
	check("spec.trafficPolicy", dr.GetTrafficPolicy())
	for i, s := range dr.GetSubsets() {
		check(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), s.GetTrafficPolicy())
	}
}

// checkPolicyValues checks the parts of one traffic policy (field f).
func checkPolicyValues(rep *reporter, f string, lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, od *networking.OutlierDetection) {
	if d := pool.GetTcp().GetConnectTimeout(); d != nil && d.AsDuration() <= 0 {
		rep.errorf(f+".connectionPool.tcp.connectTimeout", "connectTimeout %v is not more than 0; use a positive duration, or leave it out for the default (10s)", d.AsDuration())
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cf := f + ".loadBalancer.consistentHash"
		switch n := ch.GetMaglev().GetTableSize(); {
		case n == 0: // the default, 65537
		case n > proxyconfig.MaxMaglevTableSize:
			rep.errorf(cf+".maglev.tableSize", "tableSize %d is more than %d, the largest Maglev table; use a prime up to %d, or leave it out for the default (65537)", n, proxyconfig.MaxMaglevTableSize, proxyconfig.MaxMaglevTableSize)
		case !proxyconfig.IsPrime(n):
			rep.errorf(cf+".maglev.tableSize", "tableSize %d is not a prime number, as a Maglev table size must be; use a prime such as 65537 (the default) or 131071", n)
		}
		if n := ch.GetRingHash().GetMinimumRingSize(); n > proxyconfig.MaxRingSize {
			rep.errorf(cf+".ringHash.minimumRingSize", "minimumRingSize %d is more than %d, the largest ring; use up to %d, or leave it out for the default (1024)", n, proxyconfig.MaxRingSize, proxyconfig.MaxRingSize)
		}
		if n := ch.GetMinimumRingSize(); n > proxyconfig.MaxRingSize { //nolint:staticcheck // deprecated field, still read
			rep.errorf(cf+".minimumRingSize", "minimumRingSize %d is more than %d, the largest ring; use up to %d, or leave it out for the default (1024)", n, proxyconfig.MaxRingSize, proxyconfig.MaxRingSize)
		}
	}
	if od != nil {
		of := f + ".outlierDetection"
		if n := od.GetMaxEjectionPercent(); n < 0 || n > 100 {
			rep.errorf(of+".maxEjectionPercent", "maxEjectionPercent %d is not from 0 to 100", n)
		}
		if n := od.GetMinHealthPercent(); n < 0 || n > 100 {
			rep.errorf(of+".minHealthPercent", "minHealthPercent %d is not from 0 to 100", n)
		}
		if d := od.GetInterval(); d != nil && d.AsDuration() <= 0 {
			rep.errorf(of+".interval", "interval %v is not more than 0; use a positive duration, or leave it out for the default (10s)", d.AsDuration())
		}
		if d := od.GetBaseEjectionTime(); d != nil && d.AsDuration() <= 0 {
			rep.errorf(of+".baseEjectionTime", "baseEjectionTime %v is not more than 0; use a positive duration, or leave it out for the default (30s)", d.AsDuration())
		}
	}
}
