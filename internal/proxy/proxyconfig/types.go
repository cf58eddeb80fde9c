package proxyconfig

import (
	"net/netip"

	"regexp"
	"time"
	"weft.dev/weft/internal/proxy/rbac"
)

// Listener is a validated Envoy Listener.
type Listener struct {
	// Name is the listener's xDS name ("virtualOutbound", "inbound|9080").
	Name string
	// Address is the host:port to bind, from the socket_address.
	Address string
	// FilterChains are the listener's chains in xDS order.
	FilterChains []*FilterChain
	// DefaultChain is used when no chain matches; nil when absent.
	DefaultChain *FilterChain
	// Transparent is set by Envoy's use_original_dst or the
	// envoy.filters.listener.original_dst listener filter: connections
	// arrive redirected by iptables, and the chain is selected by their
	// original destination (SO_ORIGINAL_DST). Connections that were not
	// redirected are served as on any other listener.
	Transparent bool
	// DetectTimeout bounds the wait for a captured connection's first
	// bytes when no chain declares its destination port, from Envoy's
	// listener_filters_timeout; when that is absent or 0, it is
	// DefaultDetectTimeout. It is 0 on listeners that are not transparent. A client silent that long is taken to be
	// waiting for the server (MySQL, SMTP) and passed through as TCP.
	// On a listener that is not transparent but whose chains match on
	// transport_protocol (mTLS PERMISSIVE), it bounds the wait for the
	// first byte that tells TLS from plaintext: listener_filters_timeout,
	// or DefaultTLSDetectTimeout; a silent client is served as plaintext.
	DetectTimeout time.Duration
	// Unenforced lists fields that were accepted but are not enforced.
	Unenforced []string
}

// DefaultDetectTimeout is the protocol detection timeout of transparent
// listeners that set no listener_filters_timeout: long enough for a
// client-first protocol's first segment on a local hop, short enough not
// to hold up server-first protocols noticeably.
const DefaultDetectTimeout = 100 * time.Millisecond

// DefaultTLSDetectTimeout is the wait for a connection's first byte on a
// listener that tells TLS from plaintext (PERMISSIVE mTLS) when
// listener_filters_timeout is unset: generous, since a TLS client taken
// for a plaintext one would fail.
const DefaultTLSDetectTimeout = time.Second

// MatchesTransport reports whether any chain matches on
// transport_protocol, so connections must be told apart by their first
// bytes (TLS ClientHello or not).
func (l *Listener) MatchesTransport() bool {
	for _, fc := range l.FilterChains {
		if fc.Match.TransportProtocol != "" || fc.TLS != nil {
			return true
		}
	}
	return false
}

// RouteNames returns the RDS route configuration names the listener's HTTP
// chains reference, without duplicates.
func (l *Listener) RouteNames() []string {
	var out []string
	seen := map[string]bool{}
	add := func(fc *FilterChain) {
		if fc == nil || fc.HTTP == nil || fc.HTTP.RDSName == "" || seen[fc.HTTP.RDSName] {
			return
		}
		seen[fc.HTTP.RDSName] = true
		out = append(out, fc.HTTP.RDSName)
	}
	for _, fc := range l.FilterChains {
		add(fc)
	}
	add(l.DefaultChain)
	return out
}

// ChainMatch is the subset of Envoy's FilterChainMatch that Weft uses.
type ChainMatch struct {
	// DestinationPort selects connections or proxied requests to this
	// port; 0 matches any port.
	DestinationPort uint32
	// ServerNames are host names (CONNECT target host or TLS SNI); a
	// leading "*." is a wildcard. Empty matches any name.
	ServerNames []string
	// PrefixRanges are destination IP ranges. Empty matches any address.
	PrefixRanges []netip.Prefix
	// TransportProtocol is TransportProtocolTLS or TransportProtocolRaw
	// (the connection's first bytes are, or are not, a TLS ClientHello);
	// empty matches both.
	TransportProtocol string
}

// FilterChain is one filter chain: exactly one of HTTP or TCP is set.
type FilterChain struct {
	// Name is the chain's name, for logs.
	Name string
	// Match selects the chain.
	Match ChainMatch
	// HTTP is set when the chain ends in an HTTP connection manager.
	HTTP *HTTPConnectionManager
	// TCP is set when the chain ends in a tcp_proxy.
	TCP *TCPProxy
	// TLS, when set, terminates TLS before the filters (the chain's
	// DownstreamTlsContext transport socket).
	TLS *DownstreamTLS
	// RBAC is the chain's envoy.filters.network.rbac filters (TCP
	// chains), compiled; nil when it has none.
	RBAC *rbac.Chain
}

// HTTPConnectionManager is a validated HCM.
type HTTPConnectionManager struct {
	// StatPrefix is the HCM's stat prefix.
	StatPrefix string
	// RDSName names the RDS route configuration; empty when RouteConfig
	// is inline.
	RDSName string
	// RouteConfig is the inline route configuration, nil with RDS.
	RouteConfig *RouteConfig
	// Tracing is the tracing config; nil when requests are not traced.
	Tracing *Tracing
	// AccessLogs are where requests are logged; empty for nowhere.
	AccessLogs []AccessLog
	// RBAC is the HCM's envoy.filters.http.rbac filters, compiled, in
	// order; nil when it has none.
	RBAC *rbac.Chain
	// JWT is the HCM's envoy.filters.http.jwt_authn filter; nil when
	// it has none.
	JWT *JWTAuthn
	// FaultFilter is set when the HCM has a fault filter: only then do
	// routes' faults apply. Fault is that filter's own fault injection,
	// for routes without theirs; nil when it injects nothing.
	FaultFilter bool
	Fault       *Fault
	// CORSFilter is set when the HCM has a CORS filter: only then do
	// routes' CORS policies apply.
	CORSFilter bool
}

// TCPProxy is a validated tcp_proxy filter.
type TCPProxy struct {
	// StatPrefix is the filter's stat prefix.
	StatPrefix string
	// Cluster is the upstream cluster; empty when WeightedClusters is set.
	Cluster string
	// WeightedClusters splits connections by weight.
	WeightedClusters []WeightedCluster
	// IdleTimeout closes a connection idle in both directions for this
	// long; 0 means no idle timeout. Envoy's default is 1h.
	IdleTimeout time.Duration
	// AccessLogs are where connections are logged when they close, as an
	// HTTP connection manager's requests; empty for nowhere.
	AccessLogs []AccessLog
}

// RouteConfig is a validated Envoy RouteConfiguration.
type RouteConfig struct {
	// Name is the route configuration's name ("9080", "http.8080").
	Name string
	// VirtualHosts are the virtual hosts in xDS order.
	VirtualHosts []*VirtualHost
	// RequestHeaders are applied to every request routed by this config.
	RequestHeaders HeaderOps
	// ResponseHeaders are applied to every response.
	ResponseHeaders HeaderOps
	// Unenforced lists fields that were accepted but are not enforced.
	Unenforced []string
}

// VirtualHost is a validated Envoy VirtualHost.
type VirtualHost struct {
	// Name is the virtual host's name ("reviews.default.svc.cluster.local:9080").
	Name string
	// Domains are the host names matched against the authority, in
	// Envoy's syntax ("*", "*.suffix", "prefix.*", exact).
	Domains []string
	// Routes are tried in order; the first match wins.
	Routes []*Route
	// Retry is the virtual host's retry policy, used by routes without
	// their own; nil means no retries.
	Retry *RetryPolicy
	// RequestHeaders are applied to requests matched in this host.
	RequestHeaders HeaderOps
	// ResponseHeaders are applied to responses of this host.
	ResponseHeaders HeaderOps
	// RequireTLS answers a request that did not come over TLS with a
	// redirect to https (require_tls ALL or EXTERNAL_ONLY).
	RequireTLS bool
}

// PathKind says how a route matches the path.
type PathKind int

// Path match kinds.
const (
	// PathPrefix matches a prefix of :path (query included, as Envoy does).
	PathPrefix PathKind = iota
	// PathExact matches the path without the query string.
	PathExact
	// PathRegex fully matches the path without the query string.
	PathRegex
	// PathSeparatedPrefix matches the prefix followed by "/", "?" or the end.
	PathSeparatedPrefix
)

// RouteMatch is a validated Envoy RouteMatch.
type RouteMatch struct {
	// Kind says how Path (or Regex) is matched.
	Kind PathKind
	// Path is the prefix or exact path; empty for regex.
	Path string
	// Regex is the compiled full-match regex for PathRegex.
	Regex *regexp.Regexp
	// CaseInsensitive makes prefix and exact path matching ignore case
	// (Envoy's case_sensitive=false).
	CaseInsensitive bool
	// Headers must all match; pseudo-headers :method, :authority, :path
	// and :scheme are supported.
	Headers []HeaderMatcher
	// QueryParams must all match.
	QueryParams []QueryParamMatcher
	// GRPC requires content-type application/grpc.
	GRPC bool
}

// StringMatchKind is the kind of a string matcher.
type StringMatchKind int

// String matcher kinds.
const (
	// MatchExact compares the whole value.
	MatchExact StringMatchKind = iota
	// MatchPrefix compares a prefix.
	MatchPrefix
	// MatchSuffix compares a suffix.
	MatchSuffix
	// MatchContains looks for a substring.
	MatchContains
	// MatchRegex fully matches a regex.
	MatchRegex
	// MatchPresent only checks presence (headers and query parameters).
	MatchPresent
	// MatchRange checks an integer range [Start, End).
	MatchRange
)

// StringMatcher matches one string value.
type StringMatcher struct {
	// Kind is the comparison.
	Kind StringMatchKind
	// Value is the literal for exact/prefix/suffix/contains (lowercased
	// when IgnoreCase).
	Value string
	// Regex is the compiled full-match regex for MatchRegex.
	Regex *regexp.Regexp
	// IgnoreCase compares case-insensitively (not for regex).
	IgnoreCase bool
}

// HeaderMatcher is a validated Envoy HeaderMatcher.
type HeaderMatcher struct {
	// Name is the lowercased header name, or a pseudo-header.
	Name string
	// Match is the value comparison. For MatchPresent, Present says
	// whether presence or absence is required.
	Match StringMatcher
	// Present is the present_match value for MatchPresent.
	Present bool
	// RangeStart and RangeEnd bound MatchRange: start inclusive, end exclusive.
	RangeStart, RangeEnd int64
	// Invert inverts the result (Envoy's invert_match).
	Invert bool
	// TreatMissingAsEmpty matches a missing header as "".
	TreatMissingAsEmpty bool
}

// QueryParamMatcher is a validated Envoy QueryParameterMatcher.
type QueryParamMatcher struct {
	// Name is the query parameter's name.
	Name string
	// Match compares the parameter's first value; MatchPresent only
	// requires the parameter.
	Match StringMatcher
}

// Route is a validated Envoy Route: exactly one of Action, Redirect and
// Direct is set.
type Route struct {
	// Name is the route's name, possibly empty.
	Name string
	// Match selects requests.
	Match RouteMatch
	// Action forwards to a cluster.
	Action *RouteAction
	// Redirect answers with a redirect.
	Redirect *Redirect
	// Direct answers with a fixed response.
	Direct *DirectResponse
	// RequestHeaders are applied to forwarded requests.
	RequestHeaders HeaderOps
	// ResponseHeaders are applied to responses.
	ResponseHeaders HeaderOps
	// Fault is the route's own fault injection, which replaces the
	// listener's; nil when the route has none.
	Fault *Fault
	// CORS is the route's CORS policy; nil when it has none.
	CORS *CORS
}

// WeightedCluster is one cluster of a weighted split.
type WeightedCluster struct {
	// Name is the cluster's name.
	Name string
	// Weight is the relative weight.
	Weight uint32
	// RequestHeaders are applied to requests sent to this cluster.
	RequestHeaders HeaderOps
	// ResponseHeaders are applied to responses from this cluster.
	ResponseHeaders HeaderOps
}

// Mirror is a request mirror policy: a share of a route's requests is
// also sent to another cluster, whose answers are dropped.
type Mirror struct {
	// Cluster receives the copies.
	Cluster string
	// PerMillion requests in a million are mirrored (a runtime
	// fraction's default value; all when unset, as in Envoy).
	PerMillion uint32
	// KeepHost sends copies with the request's authority unchanged;
	// otherwise "-shadow" is appended to its host, as Envoy does.
	KeepHost bool
	// Unsampled sends copies with their trace context marked not
	// sampled (trace_sampled false, as Istio sets it).
	Unsampled bool
}

// RouteAction is a validated Envoy RouteAction.
type RouteAction struct {
	// Mirrors are the route's request mirror policies.
	Mirrors []Mirror
	// Cluster is the target cluster; empty when WeightedClusters is set.
	Cluster string
	// WeightedClusters splits requests by weight.
	WeightedClusters []WeightedCluster
	// TotalWeight is the sum of WeightedClusters' weights.
	TotalWeight uint32
	// PrefixRewrite replaces the matched prefix (or the whole path for an
	// exact match); empty means no rewrite.
	PrefixRewrite string
	// HasPrefixRewrite tells an empty PrefixRewrite apart from none.
	HasPrefixRewrite bool
	// RegexRewrite rewrites the path (query excluded); nil means none.
	RegexRewrite *RegexRewrite
	// HostRewrite replaces the Host header; empty means keep it.
	HostRewrite string
	// Timeout bounds the whole upstream exchange, starting when the
	// downstream request has been fully received. Envoy's default is 15s;
	// 0 disables it.
	Timeout time.Duration
	// Retry is the retry policy; nil means no retries.
	Retry *RetryPolicy
	// HashPolicies feed consistent-hash load balancers, in order.
	HashPolicies []HashPolicy
	// IdleTimeout resets a stream idle this long; 0 means none.
	IdleTimeout time.Duration
	// MaxStreamDuration bounds the whole stream, counted from when the
	// request started (max_stream_duration.max_stream_duration): a stream
	// still running then is answered 504 (408 while its request body is
	// still coming) or, once its response started, reset. 0 means none.
	// Timeout still applies beside it.
	MaxStreamDuration time.Duration
	// GRPCTimeoutHeader is set when max_stream_duration has a
	// grpc_timeout_header_max: a gRPC request's grpc-timeout header, capped
	// at GRPCTimeoutHeaderMax (0: no cap), less GRPCTimeoutHeaderOffset
	// (down to 0), then bounds that stream instead of both
	// MaxStreamDuration and Timeout. Without the field the header is
	// passed on but not enforced.
	GRPCTimeoutHeader       bool
	GRPCTimeoutHeaderMax    time.Duration
	GRPCTimeoutHeaderOffset time.Duration
}

// StreamTimeouts reports whether the route bounds streams
// (MaxStreamDuration or GRPCTimeoutHeader): the check a request on a route
// without them pays.
func (a *RouteAction) StreamTimeouts() bool {
	return a.MaxStreamDuration > 0 || a.GRPCTimeoutHeader
}

// RegexRewrite is a compiled regex path rewrite.
type RegexRewrite struct {
	// Pattern matches parts of the path.
	Pattern *regexp.Regexp
	// Substitution is the replacement in Go's syntax ($1), converted from
	// Envoy's (\1).
	Substitution string
}

// RetryOn is a set of retry conditions.
type RetryOn uint32

// Retry conditions, named as in Envoy's retry_on.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryConnectFailure
	RetryReset
	RetryRetriableStatusCodes
	RetryRetriable4xx
	RetryRefusedStream
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
	RetryGRPCInternal
	// RetryResetBeforeRequest retries only failures that happened before
	// any of the request was sent (a connection that could not be
	// made), which makes it safe for requests that are not idempotent.
	RetryResetBeforeRequest
)

// RetryPolicy is a validated Envoy RetryPolicy.
type RetryPolicy struct {
	// On is the set of conditions that cause a retry.
	On RetryOn
	// NumRetries is the maximum number of retries (Envoy's default 1).
	NumRetries uint32
	// PerTryTimeout bounds each attempt until response headers arrive; 0
	// means only the route timeout applies.
	PerTryTimeout time.Duration
	// StatusCodes are the retriable status codes for
	// "retriable-status-codes".
	StatusCodes []uint32
	// BaseInterval is the backoff base (default 25ms).
	BaseInterval time.Duration
	// MaxInterval caps the backoff (default 10×BaseInterval).
	MaxInterval time.Duration
	// OtherHosts is Envoy's previous_hosts retry host predicate: a
	// retry goes to a host no earlier attempt of the request went to,
	// picking again up to Reselects times (host_selection_retry_max_attempts,
	// 1 when unset, at most 100) before it takes the last pick anyway.
	OtherHosts bool
	Reselects  uint32
}

// HashKind is the input of a hash policy.
type HashKind int

// Hash policy kinds.
const (
	// HashHeader hashes a request header.
	HashHeader HashKind = iota
	// HashCookie hashes a cookie (no cookie is generated when absent).
	HashCookie
	// HashSourceIP hashes the downstream source IP.
	HashSourceIP
	// HashQueryParam hashes a query parameter.
	HashQueryParam
)

// HashPolicy is one Envoy hash policy.
type HashPolicy struct {
	// Kind is what is hashed.
	Kind HashKind
	// Name is the header (lowercased), cookie or query parameter name.
	Name string
	// Terminal stops evaluating later policies once this one produced a hash.
	Terminal bool
}

// Redirect is a validated Envoy RedirectAction.
type Redirect struct {
	// Scheme replaces the scheme; empty keeps it.
	Scheme string
	// Host replaces the host; empty keeps it.
	Host string
	// Port replaces the port; 0 keeps it.
	Port uint32
	// Path replaces the whole path; empty keeps it.
	Path string
	// PrefixRewrite replaces the matched prefix.
	PrefixRewrite string
	// HasPrefixRewrite tells an empty PrefixRewrite apart from none.
	HasPrefixRewrite bool
	// RegexRewrite rewrites the path.
	RegexRewrite *RegexRewrite
	// Code is the HTTP status (301 by default).
	Code int
	// StripQuery removes the query string.
	StripQuery bool
}

// DirectResponse is a validated Envoy DirectResponseAction.
type DirectResponse struct {
	// Status is the HTTP status.
	Status int
	// Body is the response body, possibly empty.
	Body string
}

// AppendAction is Envoy's HeaderValueOption append action.
type AppendAction int

// Append actions.
const (
	// AppendIfExistsOrAdd appends a value (Envoy's default).
	AppendIfExistsOrAdd AppendAction = iota
	// AddIfAbsent adds only when the header is missing.
	AddIfAbsent
	// OverwriteIfExistsOrAdd sets the header.
	OverwriteIfExistsOrAdd
	// OverwriteIfExists sets the header only when present.
	OverwriteIfExists
)

// HeaderValue is one header to add or set.
type HeaderValue struct {
	// Name is the canonical header name (http.CanonicalHeaderKey) or a
	// pseudo-header such as ":authority".
	Name string
	// Value is the literal value.
	Value string
	// Action says how an existing value is treated.
	Action AppendAction
}

// HeaderOps are header mutations: removals first, then Add in order.
type HeaderOps struct {
	// Remove are canonical header names to delete.
	Remove []string
	// Add are headers to add or set.
	Add []HeaderValue
}

// Empty reports whether there is nothing to do.
func (h HeaderOps) Empty() bool { return len(h.Remove) == 0 && len(h.Add) == 0 }

// DiscoveryType is a cluster's discovery type.
type DiscoveryType int

// Cluster discovery types.
const (
	// DiscoveryStatic uses the cluster's inline load assignment.
	DiscoveryStatic DiscoveryType = iota
	// DiscoveryStrictDNS uses the inline assignment; host names are
	// resolved when dialling.
	DiscoveryStrictDNS
	// DiscoveryLogicalDNS is treated like StrictDNS.
	DiscoveryLogicalDNS
	// DiscoveryEDS receives endpoints over EDS.
	DiscoveryEDS
	// DiscoveryOriginalDst forwards to the request's own destination.
	DiscoveryOriginalDst
)

// LBPolicy is a cluster's load-balancing policy.
type LBPolicy int

// Load-balancing policies.
const (
	// LBRoundRobin is weighted round robin.
	LBRoundRobin LBPolicy = iota
	// LBLeastRequest is power-of-two-choices least request.
	LBLeastRequest
	// LBRandom is weighted random.
	LBRandom
	// LBRingHash is a consistent-hash ring.
	LBRingHash
	// LBMaglev is Maglev consistent hashing.
	LBMaglev
)

// String names the policy as Envoy does.
func (p LBPolicy) String() string {
	switch p {
	case LBLeastRequest:
		return "LEAST_REQUEST"
	case LBRandom:
		return "RANDOM"
	case LBRingHash:
		return "RING_HASH"
	case LBMaglev:
		return "MAGLEV"
	}
	return "ROUND_ROBIN"
}

// Thresholds are circuit-breaker limits (Envoy's defaults are 1024, 1024,
// 1024 and 3).
type Thresholds struct {
	// MaxConnections caps upstream connections of the cluster.
	MaxConnections int64
	// MaxPendingRequests caps requests waiting for a connection.
	MaxPendingRequests int64
	// MaxRequests caps outstanding requests.
	MaxRequests int64
	// MaxRetries caps concurrent retries.
	MaxRetries int64
}

// DefaultThresholds are Envoy's default circuit-breaker limits.
// DefaultCleanupInterval is Envoy's cleanup_interval default: how long
// an ORIGINAL_DST host may go unused before it is forgotten.
const DefaultCleanupInterval = 5 * time.Second

var DefaultThresholds = Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}

// UpstreamProtocol says which HTTP version a cluster speaks.
type UpstreamProtocol int

// Upstream protocol selection.
const (
	// ProtocolDefault is HTTP/1.1, except that gRPC requests use h2c.
	ProtocolDefault UpstreamProtocol = iota
	// ProtocolHTTP1 forces HTTP/1.1 (explicit http_protocol_options).
	ProtocolHTTP1
	// ProtocolHTTP2 forces h2c (explicit http2_protocol_options).
	ProtocolHTTP2
	// ProtocolDownstream uses the downstream request's version.
	ProtocolDownstream
)

// Cluster is a validated Envoy Cluster.
type Cluster struct {
	// Name is the cluster's name ("outbound|9080||reviews.default.svc.cluster.local").
	Name string
	// Type is the discovery type.
	Type DiscoveryType
	// EDSServiceName is the EDS resource name for DiscoveryEDS (the
	// service_name, or the cluster name when empty).
	EDSServiceName string
	// CleanupInterval is how long a DiscoveryOriginalDst host may go
	// unused before it is forgotten (cleanup_interval, 5s by default).
	CleanupInterval time.Duration
	// LB is the load-balancing policy.
	LB LBPolicy
	// ConnectTimeout bounds dialling an endpoint (Envoy's default 5s).
	ConnectTimeout time.Duration
	// Thresholds are the default-priority circuit-breaker limits.
	Thresholds Thresholds
	// Protocol is the upstream HTTP version selection.
	Protocol UpstreamProtocol
	// IdleTimeout closes idle upstream connections (default 1h, as Envoy).
	IdleTimeout time.Duration
	// MaxRequestsPerConnection closes an HTTP/1.1 upstream connection
	// after this many requests; 0 means no limit.
	MaxRequestsPerConnection uint32
	// RingMinSize and RingMaxSize bound a ring hash (defaults 1024 and 8M).
	RingMinSize, RingMaxSize uint64
	// MaglevTableSize is the Maglev table size (a prime, default 65537).
	MaglevTableSize uint64
	// LeastRequestChoices is the number of hosts sampled (default 2).
	LeastRequestChoices uint32
	// LoadAssignment holds the endpoints of STATIC and DNS clusters.
	LoadAssignment *Endpoints
	// TLS is the cluster's transport_socket: how endpoints that no
	// TLSMatches entry selects are reached; nil means plaintext.
	TLS *UpstreamTLS
	// TLSMatches are the transport_socket_matches, tried in order against
	// each endpoint's TLSMeta (see Cluster.TLSFor).
	TLSMatches []TLSMatch
	// Outlier is the cluster's outlier detection; nil when it has none.
	Outlier *Outlier
	// Service is the service host name from the cluster's Weft metadata
	// (filter_metadata["weft"].service), set on inbound clusters; the
	// metrics' destination_service. Empty when absent.
	Service string
	// Unenforced lists fields that were accepted but are not enforced.
	Unenforced []string
}

// Health is an endpoint's health status.
type Health int

// Endpoint health.
const (
	// HealthUnknown counts as healthy.
	HealthUnknown Health = iota
	// HealthHealthy is healthy.
	HealthHealthy
	// HealthUnhealthy is excluded from load balancing.
	HealthUnhealthy
	// HealthDraining is excluded from load balancing.
	HealthDraining
	// HealthDegraded is used only when no healthy endpoint is left.
	HealthDegraded
)

// String names the health as Envoy's /clusters does.
func (h Health) String() string {
	switch h {
	case HealthUnhealthy:
		return "unhealthy"
	case HealthDraining:
		return "draining"
	case HealthDegraded:
		return "degraded"
	}
	return "healthy"
}

// Endpoints is a validated ClusterLoadAssignment.
type Endpoints struct {
	// ClusterName is the EDS resource name.
	ClusterName string
	// Localities are the groups of endpoints.
	Localities []Locality
	// OverprovisioningFactor is policy.overprovisioning_factor in percent:
	// a priority level whose share of available endpoints times this is
	// 100 % or more takes all the load it is offered. Default
	// DefaultOverprovisioningFactor; 0 in a hand-built value means it.
	OverprovisioningFactor uint32
}

// DefaultOverprovisioningFactor is Envoy's overprovisioning factor, 1.4,
// in percent: what an assignment without policy.overprovisioning_factor
// has.
const DefaultOverprovisioningFactor = 140

// Locality is one group of endpoints with a weight and a priority.
type Locality struct {
	// Name is "region/zone/subzone" without trailing empty parts, for
	// display.
	Name string
	// Weight is the locality's load_balancing_weight; 0 when unset.
	Weight uint32
	// Priority is the locality's priority (0 is highest).
	Priority uint32
	// Endpoints are the locality's endpoints.
	Endpoints []Endpoint
}

// Endpoint is one upstream address.
type Endpoint struct {
	// Address is host:port; host may be a name resolved at dial time.
	Address string
	// Weight is the endpoint's load_balancing_weight (default 1).
	Weight uint32
	// Health is the endpoint's health status.
	Health Health
	// TLSMeta is the endpoint's
	// filter_metadata["envoy.transport_socket_match"] (string fields), which
	// selects the cluster's transport socket; nil when absent.
	TLSMeta map[string]string
}
