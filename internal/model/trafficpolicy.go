package model

import networking "istio.io/api/networking/v1alpha3"

// TrafficPolicy is a DestinationRule's traffic policy resolved for one
// cluster, as Istio resolves it: the rule's, then its port-level settings
// for the port, then the subset's, then the subset's port-level settings,
// each field overriding the one before.
type TrafficPolicy struct {
	LoadBalancer     *networking.LoadBalancerSettings
	ConnectionPool   *networking.ConnectionPoolSettings
	OutlierDetection *networking.OutlierDetection
	TLS              *networking.ClientTLSSettings
}

// ResolveTrafficPolicy resolves dr's policy (dr may be nil) for subset
// (nil: the service as a whole) and port.
func ResolveTrafficPolicy(dr *networking.DestinationRule, subset *networking.Subset, port uint32) TrafficPolicy {
	var p TrafficPolicy
	p.apply(dr.GetTrafficPolicy(), port)
	p.apply(subset.GetTrafficPolicy(), port)
	return p
}

func (p *TrafficPolicy) apply(tp *networking.TrafficPolicy, port uint32) {
	if tp == nil {
		return
	}
	p.set(tp.LoadBalancer, tp.ConnectionPool, tp.OutlierDetection, tp.Tls)
	for _, pl := range tp.PortLevelSettings {
		if pl.GetPort().GetNumber() == port {
			p.set(pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.Tls)
		}
	}
}

func (p *TrafficPolicy) set(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, od *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
	if lb != nil {
		p.LoadBalancer = lb
	}
	if pool != nil {
		p.ConnectionPool = pool
	}
	if od != nil {
		p.OutlierDetection = od
	}
	if tls != nil {
		p.TLS = tls
	}
}
