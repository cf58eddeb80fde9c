package proxyconfig

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"weft.dev/weft/internal/xdsmeta"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key for
// upstream HTTP settings.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster defaults, as Envoy's.
const (
	defaultConnectTimeout = 5 * time.Second
	defaultUpstreamIdle   = time.Hour
	defaultRingMin        = 1024
	defaultMaglevSize     = 65537
)

// Limits of the load balancers, as Envoy's: a ring hash ring has at most
// MaxRingSize entries, a Maglev table at most MaxMaglevTableSize (a prime,
// IsPrime).
const (
	MaxRingSize        = 8 * 1024 * 1024
	MaxMaglevTableSize = 5000011
)

// ParseCluster validates an Envoy Cluster.
func ParseCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if c.GetName() == "" {
		return nil, errors.New("cluster has no name")
	}
	out := &Cluster{
		Name:                c.GetName(),
		ConnectTimeout:      durationOr(c.GetConnectTimeout(), defaultConnectTimeout),
		Thresholds:          DefaultThresholds,
		IdleTimeout:         defaultUpstreamIdle,
		RingMinSize:         defaultRingMin,
		RingMaxSize:         MaxRingSize,
		MaglevTableSize:     defaultMaglevSize,
		LeastRequestChoices: 2,
	}
	fail := func(format string, args ...any) (*Cluster, error) {
		return nil, fmt.Errorf("cluster %q: %s", c.GetName(), fmt.Sprintf(format, args...))
	}
	if out.ConnectTimeout <= 0 {
		return fail("connect_timeout must be > 0")
	}
	if md := c.GetMetadata().GetFilterMetadata()[xdsmeta.MetaFilter]; md != nil {
		out.Service = md.GetFields()[xdsmeta.MetaService].GetStringValue()
	}
	switch t := c.GetClusterDiscoveryType().(type) {
	case nil:
		out.Type = DiscoveryStatic
	case *clusterv3.Cluster_Type:
		switch t.Type {
		case clusterv3.Cluster_STATIC:
			out.Type = DiscoveryStatic
		case clusterv3.Cluster_STRICT_DNS:
			out.Type = DiscoveryStrictDNS
		case clusterv3.Cluster_LOGICAL_DNS:
			out.Type = DiscoveryLogicalDNS
		case clusterv3.Cluster_EDS:
			out.Type = DiscoveryEDS
		case clusterv3.Cluster_ORIGINAL_DST:
			out.Type = DiscoveryOriginalDst
		default:
			return fail("type %v is not supported", t.Type)
		}
	default:
		return fail("cluster_type extensions are not supported")
	}
	if out.Type == DiscoveryOriginalDst {
		out.CleanupInterval = DefaultCleanupInterval
		if ci := c.GetCleanupInterval(); ci != nil {
			if out.CleanupInterval = ci.AsDuration(); out.CleanupInterval <= 0 {
				return fail("cleanup_interval must be more than 0")
			}
		}
	}
	if out.Type == DiscoveryEDS {
		out.EDSServiceName = c.GetEdsClusterConfig().GetServiceName()
		if out.EDSServiceName == "" {
			out.EDSServiceName = c.GetName()
		}
		if c.GetLoadAssignment() != nil {
			return fail("an EDS cluster must not have a load_assignment")
		}
	}
	switch out.Type {
	case DiscoveryStatic, DiscoveryStrictDNS, DiscoveryLogicalDNS:
		if c.GetLoadAssignment() == nil {
			return fail("load_assignment is required for a %v cluster", c.GetType())
		}
		ep, err := ParseEndpoints(c.GetLoadAssignment())
		if err != nil {
			return fail("load_assignment: %v", err)
		}
		ep.ClusterName = c.GetName()
		out.LoadAssignment = ep
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LB = LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LB = LBLeastRequest
		if n := c.GetLeastRequestLbConfig().GetChoiceCount(); n != nil {
			if n.GetValue() < 2 {
				return fail("least_request_lb_config.choice_count must be >= 2")
			}
			out.LeastRequestChoices = n.GetValue()
		}
	case clusterv3.Cluster_RANDOM:
		out.LB = LBRandom
	case clusterv3.Cluster_RING_HASH:
		out.LB = LBRingHash
		if rc := c.GetRingHashLbConfig(); rc != nil {
			if rc.GetMinimumRingSize() != nil {
				out.RingMinSize = rc.GetMinimumRingSize().GetValue()
			}
			if rc.GetMaximumRingSize() != nil {
				out.RingMaxSize = rc.GetMaximumRingSize().GetValue()
			}
			if out.RingMinSize == 0 || out.RingMinSize > out.RingMaxSize || out.RingMaxSize > MaxRingSize {
				return fail("ring_hash_lb_config: need 0 < minimum_ring_size <= maximum_ring_size <= %d", MaxRingSize)
			}
		}
	case clusterv3.Cluster_MAGLEV:
		out.LB = LBMaglev
		if mc := c.GetMaglevLbConfig(); mc != nil && mc.GetTableSize() != nil {
			out.MaglevTableSize = mc.GetTableSize().GetValue()
			if !IsPrime(out.MaglevTableSize) || out.MaglevTableSize > MaxMaglevTableSize {
				return fail("maglev_lb_config.table_size %d must be a prime <= %d", out.MaglevTableSize, MaxMaglevTableSize)
			}
		}
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		// Envoy's only policy for ORIGINAL_DST: the connection's own
		// destination is the host, there is nothing to balance.
		if out.Type != DiscoveryOriginalDst {
			return fail("lb_policy %v is not supported except on ORIGINAL_DST clusters", c.GetLbPolicy())
		}
	default:
		return fail("lb_policy %v is not supported", c.GetLbPolicy())
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			out.Unenforced = append(out.Unenforced, fmt.Sprintf("cluster %q: circuit_breakers for priority HIGH", c.GetName()))
			continue
		}
		set := func(dst *int64, v interface{ GetValue() uint32 }, present bool) {
			if present {
				*dst = int64(v.GetValue())
			}
		}
		set(&out.Thresholds.MaxConnections, t.GetMaxConnections(), t.GetMaxConnections() != nil)
		set(&out.Thresholds.MaxPendingRequests, t.GetMaxPendingRequests(), t.GetMaxPendingRequests() != nil)
		set(&out.Thresholds.MaxRequests, t.GetMaxRequests(), t.GetMaxRequests() != nil)
		set(&out.Thresholds.MaxRetries, t.GetMaxRetries(), t.GetMaxRetries() != nil)
	}
	if anyOpts, ok := c.GetTypedExtensionProtocolOptions()[HTTPProtocolOptionsKey]; ok {
		opts := &httpv3.HttpProtocolOptions{}
		if err := anyOpts.UnmarshalTo(opts); err != nil {
			return fail("typed_extension_protocol_options[%q]: %v", HTTPProtocolOptionsKey, err)
		}
		switch p := opts.GetUpstreamProtocolOptions().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			switch p.ExplicitHttpConfig.GetProtocolConfig().(type) {
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
				out.Protocol = ProtocolHTTP2
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
				out.Protocol = ProtocolHTTP1
			default:
				return fail("explicit_http_config: only http_protocol_options and http2_protocol_options are supported")
			}
		case *httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig:
			out.Protocol = ProtocolDownstream
		case *httpv3.HttpProtocolOptions_AutoConfig:
			// Without TLS there is no ALPN: follow the downstream protocol.
			out.Protocol = ProtocolDownstream
		}
		if it := opts.GetCommonHttpProtocolOptions().GetIdleTimeout(); it != nil {
			out.IdleTimeout = it.AsDuration()
		}
		out.MaxRequestsPerConnection = opts.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue()
	} else if c.GetHttp2ProtocolOptions() != nil { //nolint:staticcheck // deprecated field still sent by older control planes
		out.Protocol = ProtocolHTTP2
	}
	if err := parseClusterTLS(c, out); err != nil {
		return fail("%v", err)
	}
	od, err := parseOutlier(c, &out.Unenforced)
	if err != nil {
		return fail("%v", err)
	}
	out.Outlier = od
	if len(c.GetHealthChecks()) > 0 {
		out.Unenforced = append(out.Unenforced, fmt.Sprintf("cluster %q: health_checks", c.GetName()))
	}
	if c.GetLbSubsetConfig() != nil {
		out.Unenforced = append(out.Unenforced, fmt.Sprintf("cluster %q: lb_subset_config", c.GetName()))
	}
	return out, nil
}

// ParseEndpoints validates a ClusterLoadAssignment.
func ParseEndpoints(cla *endpointv3.ClusterLoadAssignment) (*Endpoints, error) {
	out := &Endpoints{ClusterName: cla.GetClusterName(), OverprovisioningFactor: DefaultOverprovisioningFactor}
	if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil {
		if f.GetValue() == 0 {
			return nil, fmt.Errorf("policy.overprovisioning_factor must be > 0")
		}
		out.OverprovisioningFactor = f.GetValue()
	}
	for i, l := range cla.GetEndpoints() {
		loc := Locality{Priority: l.GetPriority()}
		if lw := l.GetLoadBalancingWeight(); lw != nil {
			if lw.GetValue() == 0 {
				return nil, fmt.Errorf("endpoints[%d]: load_balancing_weight must be > 0", i)
			}
			loc.Weight = lw.GetValue()
		}
		if lo := l.GetLocality(); lo != nil {
			loc.Name = xdsmeta.FormatLocality(lo.GetRegion(), lo.GetZone(), lo.GetSubZone())
		}
		for j, le := range l.GetLbEndpoints() {
			ep := le.GetEndpoint()
			if ep == nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: only endpoint is supported", i, j)
			}
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil || sa.GetAddress() == "" {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: needs a socket_address", i, j)
			}
			port := sa.GetPortValue()
			if port == 0 || port > 65535 {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: port %d is out of range", i, j, port)
			}
			e := Endpoint{Address: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(port), 10)), Weight: 1}
			if w := le.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: load_balancing_weight must be > 0", i, j)
				}
				e.Weight = w.GetValue()
			}
			if md := le.GetMetadata().GetFilterMetadata()[TransportSocketMatchKey]; md != nil {
				e.TLSMeta = stringFields(md)
			}
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY:
				e.Health = HealthHealthy
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_TIMEOUT:
				e.Health = HealthUnhealthy
			case corev3.HealthStatus_DRAINING:
				e.Health = HealthDraining
			case corev3.HealthStatus_DEGRADED:
				e.Health = HealthDegraded
			default:
				e.Health = HealthUnknown
			}
			loc.Endpoints = append(loc.Endpoints, e)
		}
		out.Localities = append(out.Localities, loc)
	}
	return out, nil
}

// IsPrime reports whether n is a prime (n is at most a few million here).
func IsPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	lim := uint64(math.Sqrt(float64(n)))
	for d := uint64(2); d <= lim; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
