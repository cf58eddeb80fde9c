// Package model is the control plane's view of the mesh: an immutable,
// validated snapshot of services, endpoints, workload instances and the
// Istio traffic resources that apply to them.
//
// A Snapshot is built once by the config pipeline (sources -> watcher ->
// validation) and then only read: translation to xDS, the admin API and the
// CLI all read the same value from many goroutines without locks. Nothing in
// a Snapshot may be mutated after it has been published.
package model

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// DomainSuffix is the DNS suffix of mesh-internal hostnames, as in Istio:
// "reviews" in namespace "default" is "reviews.default.svc.cluster.local".
const DomainSuffix = "svc.cluster.local"

// DefaultNamespace is the namespace of resources and proxies that name none.
const DefaultNamespace = "default"

// Protocol is the application protocol of a service port.
type Protocol string

// Protocols a service port can declare (Istio's names). Anything HTTP-like
// is routed at L7; TCP, TLS and Mongo-like protocols are proxied as bytes.
const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolTCP   Protocol = "TCP"
	ProtocolTLS   Protocol = "TLS"
	ProtocolHTTPS Protocol = "HTTPS"
)

// IsHTTP reports whether traffic of this protocol is routed at L7.
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// IsHTTP2 reports whether the upstream must be spoken to in HTTP/2.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// ProtocolFromPort derives a protocol the way Istio does: an explicit
// protocol wins, then appProtocol, then the port name's prefix ("http-web",
// "grpc"). Unknown means TCP.
func ProtocolFromPort(protocol, appProtocol, name string) Protocol {
	for _, s := range []string{protocol, appProtocol} {
		if p, ok := parseProtocol(s); ok {
			return p
		}
	}
	prefix, _, _ := strings.Cut(name, "-")
	if p, ok := parseProtocol(prefix); ok {
		return p
	}
	return ProtocolTCP
}

func parseProtocol(s string) (Protocol, bool) {
	switch strings.ToUpper(s) {
	case "HTTP", "HTTP1", "HTTP/1.1":
		return ProtocolHTTP, true
	case "HTTP2", "H2C":
		return ProtocolHTTP2, true
	case "GRPC", "GRPC-WEB":
		return ProtocolGRPC, true
	case "TCP":
		return ProtocolTCP, true
	case "TLS":
		return ProtocolTLS, true
	case "HTTPS":
		return ProtocolHTTPS, true
	}
	return "", false
}

// Port is one port of a service.
type Port struct {
	// Name is the port's name, unique within its service ("http").
	Name string
	// Number is the port clients dial (the service port).
	Number uint32
	// Protocol is how traffic on the port is handled.
	Protocol Protocol
}

// Resolution says how the proxies find a service's endpoints.
type Resolution int

// Resolutions, as in ServiceEntry.
const (
	// ResolutionStatic: endpoints are IP addresses known to the mesh.
	ResolutionStatic Resolution = iota
	// ResolutionDNS: endpoint addresses are hostnames the proxy resolves.
	ResolutionDNS
	// ResolutionNone: the proxy forwards to the address the caller dialed.
	ResolutionNone
)

func (r Resolution) String() string {
	switch r {
	case ResolutionDNS:
		return "DNS"
	case ResolutionNone:
		return "NONE"
	}
	return "STATIC"
}

// Service is one host in the registry with its ports and endpoints.
type Service struct {
	// Hostname is the fully qualified name ("reviews.default.svc.cluster.local").
	Hostname string
	// Namespace the service belongs to.
	Namespace string
	// Addresses are virtual IPs clients may dial instead of the hostname.
	Addresses []string
	// Ports the service exposes, sorted by number.
	Ports []Port
	// Resolution says how endpoints are found.
	Resolution Resolution
	// MeshExternal is true for services outside the mesh (no sidecar).
	MeshExternal bool
	// Endpoints serve the service, sorted by address then port. Endpoints
	// with a sidecar point at the sidecar's inbound listener.
	Endpoints []*Endpoint
	// SubjectAltNames are identities (SPIFFE IDs, DNS names) its
	// endpoints' certificates may carry under mesh mTLS, besides those of
	// its sidecars' service accounts (a ServiceEntry's subjectAltNames).
	SubjectAltNames []string
	// Source names the resource that declared the service, for errors and
	// the registry view ("ServiceEntry default/ratings", "Workload default/reviews-v1").
	Source string
}

// Port returns the service port with the given number, if any.
func (s *Service) Port(number uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == number {
			return p, true
		}
	}
	return Port{}, false
}

// PortByName returns the service port with the given name, if any.
func (s *Service) PortByName(name string) (Port, bool) {
	for _, p := range s.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}

// Endpoint is one instance serving a service.
type Endpoint struct {
	// Address is an IP address, or a hostname for DNS resolution.
	Address string
	// Ports maps a service port name to the port this endpoint listens on.
	// A port name missing here means the endpoint uses the service port.
	Ports map[string]uint32
	// Labels of the workload (version, app, ...), used by subsets.
	Labels map[string]string
	// ServiceAccount of the workload, for its identity.
	ServiceAccount string
	// Namespace of the workload.
	Namespace string
	// Workload is the name of the workload the endpoint belongs to.
	Workload string
	// Weight is the load-balancing weight; 0 means 1.
	Weight uint32
	// Locality is "region/zone/subzone", possibly empty.
	Locality string
	// Network the endpoint is on, possibly empty.
	Network string
	// Sidecar is true when a Weft sidecar fronts the endpoint.
	Sidecar bool
}

// TargetPort returns the port to dial on this endpoint for a service port.
func (e *Endpoint) TargetPort(p Port) uint32 {
	if n, ok := e.Ports[p.Name]; ok && n != 0 {
		return n
	}
	return p.Number
}

// Instance is one running copy of a Workload in local mode: the app process
// and the sidecar in front of it, with the ports the runtime gave them.
type Instance struct {
	// Name is unique in the namespace ("reviews-v2-0"); the proxy's node ID
	// carries it.
	Name string
	// Namespace of the workload.
	Namespace string
	// Workload is the Workload resource's name ("reviews-v2").
	Workload string
	// Service is the short service name the workload serves ("reviews").
	Service string
	// Labels of the workload, including "app" and "version" where known.
	Labels map[string]string
	// ServiceAccount of the workload.
	ServiceAccount string
	// Locality is where the instance runs, "region/zone/subzone", possibly
	// empty.
	Locality string
	// Address is the IP all the instance's listeners bind (127.0.0.1).
	Address string
	// Ports are the instance's service ports with their runtime ports.
	Ports []InstancePort
	// OutboundPort is the sidecar's outbound (HTTP proxy) port; 0 if none.
	OutboundPort uint32
	// AdminPort is the sidecar's admin port.
	AdminPort uint32
	// StatsPort is where the sidecar serves its Prometheus metrics
	// (/stats/prometheus); 0 if it does not.
	StatsPort uint32
	// Upstreams are the explicit local upstream ports of the instance's
	// sidecar (the Workload's spec.upstreams), in spec order; empty when
	// the workload declares none or has no sidecar.
	Upstreams []InstanceUpstream
}

// InstanceUpstream is one mesh service port an instance's app reaches
// through a local port of its sidecar, without HTTP_PROXY.
type InstanceUpstream struct {
	// Host is the service's fully qualified name
	// ("reviews.default.svc.cluster.local").
	Host string
	// Port is the service port (9080).
	Port uint32
	// LocalPort is where the sidecar listens for it, on 127.0.0.1.
	LocalPort uint32
}

// InstancePort ties a service port to the app's real port and the
// sidecar's inbound port in front of it.
type InstancePort struct {
	// Name of the service port ("http").
	Name string
	// Number of the service port (9080).
	Number uint32
	// Protocol of the port.
	Protocol Protocol
	// AppPort is where the application listens.
	AppPort uint32
	// InboundPort is where the sidecar accepts traffic for AppPort.
	InboundPort uint32
}

// ProxyKey is the namespace-qualified name of an instance: "name.namespace",
// as found in a node ID.
func (i *Instance) ProxyKey() string { return i.Name + "." + i.Namespace }

// Meta identifies a resource in messages: kind, namespace, name, and where
// it was read from.
type Meta struct {
	// Kind is the resource kind ("VirtualService").
	Kind string
	// Namespace of the resource; DefaultNamespace if the file named none.
	Namespace string
	// Name of the resource.
	Name string
	// File the resource was read from; empty for runtime sources.
	File string
	// Line of the resource's first line in File (1-based); 0 if unknown.
	Line int
}

// Key is "Kind namespace/name", the form used in messages.
func (m Meta) Key() string { return fmt.Sprintf("%s %s/%s", m.Kind, m.Namespace, m.Name) }

// Config is one Istio resource after validation. Spec is never mutated once
// the Config is in a Snapshot.
type Config[T any] struct {
	Meta
	// Spec is the resource's spec.
	Spec T
}

// Gateway is an Istio Gateway with the VirtualServices bound to it resolved.
type Gateway = Config[*networking.Gateway]

// VirtualService is a validated Istio VirtualService.
type VirtualService = Config[*networking.VirtualService]

// DestinationRule is a validated Istio DestinationRule.
type DestinationRule = Config[*networking.DestinationRule]

// Sidecar is a validated Istio Sidecar resource.
type Sidecar = Config[*networking.Sidecar]

// Snapshot is the whole mesh at one version. Maps are keyed by hostname;
// slices are sorted by namespace then name so translation is deterministic.
type Snapshot struct {
	// Version increases with every snapshot the control plane builds.
	Version uint64
	// Services by fully qualified hostname.
	Services map[string]*Service
	// Instances of local-mode workloads, keyed by ProxyKey.
	Instances map[string]*Instance
	// VirtualServices in force, hosts resolved to fully qualified names.
	VirtualServices []*VirtualService
	// DestinationRules in force, hosts resolved to fully qualified names.
	DestinationRules []*DestinationRule
	// Sidecars in force.
	Sidecars []*Sidecar
	// Gateways in force.
	Gateways []*Gateway
	// Telemetries in force (telemetry.istio.io Telemetry).
	Telemetries []*Telemetry
	// ProxyConfigs in force (networking.istio.io ProxyConfig).
	ProxyConfigs []*ProxyConfig
	// PeerAuthentications in force (security.istio.io PeerAuthentication).
	PeerAuthentications []*PeerAuthentication
	// AuthorizationPolicies in force (security.istio.io AuthorizationPolicy).
	AuthorizationPolicies []*AuthorizationPolicy
	// RequestAuthentications in force (security.istio.io RequestAuthentication).
	RequestAuthentications []*RequestAuthentication
	// TrustDomain is the mesh's SPIFFE trust domain, for the identities
	// clients expect of endpoints; "" means spiffeid.DefaultTrustDomain.
	// The control plane sets it on every snapshot it builds.
	TrustDomain string
	// MeshTelemetry are the control plane's mesh-wide telemetry defaults;
	// the control plane sets them on every snapshot it builds.
	MeshTelemetry MeshTelemetry
	// Status of every resource read, valid or not.
	Status []ResourceStatus
}

// SortedServices returns the services ordered by hostname.
func (s *Snapshot) SortedServices() []*Service {
	out := make([]*Service, 0, len(s.Services))
	for _, svc := range s.Services {
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out
}

// Severity of a finding.
type Severity string

// Severities. An error keeps the resource out of the mesh; a warning does not.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Finding is one problem with one resource.
type Finding struct {
	// Severity says whether the resource was left out.
	Severity Severity
	// Meta names the resource.
	Meta Meta
	// Line is the line of the offending field in Meta.File, or Meta.Line.
	Line int
	// Field is the dotted path of the offending field ("spec.http[0].route[1].destination.subset").
	Field string
	// Message says what is wrong and what to do.
	Message string
}

// String formats a finding as "file:line: Kind ns/name: field: message".
func (f Finding) String() string {
	var b strings.Builder
	if f.Meta.File != "" {
		line := f.Line
		if line == 0 {
			line = f.Meta.Line
		}
		fmt.Fprintf(&b, "%s:%d: ", f.Meta.File, line)
	}
	if f.Meta.Kind != "" {
		b.WriteString(f.Meta.Key())
		b.WriteString(": ")
	}
	if f.Field != "" {
		b.WriteString(f.Field)
		b.WriteString(": ")
	}
	b.WriteString(f.Message)
	if f.Severity == SeverityWarning {
		b.WriteString(" (warning)")
	}
	return b.String()
}

// State of a resource in the running control plane.
type State string

// States of a resource.
const (
	// StateValid: in force as written.
	StateValid State = "Valid"
	// StateInvalid: rejected; the last good version (if any) stays in force.
	StateInvalid State = "Invalid"
	// StatePartial: in force without the parts its errors name (a
	// Gateway server whose certificate does not load), which are left
	// out while the rest serves.
	StatePartial State = "Partial"
)

// ResourceStatus is what the control plane knows about one resource.
type ResourceStatus struct {
	Meta
	// State says whether the resource is in force.
	State State
	// Findings about the resource, errors first.
	Findings []Finding
	// ServingLastGood is true when the resource is invalid and an earlier
	// valid version of it is still in force.
	ServingLastGood bool
}

// FQDN resolves a host as written in a resource of namespace ns to a fully
// qualified name, like Istio: "reviews" -> "reviews.ns.svc.cluster.local",
// "reviews.other" -> "reviews.other.svc.cluster.local"; names with more
// dots, wildcards and IPs are returned unchanged.
func FQDN(host, ns string) string {
	if host == "" || host == "*" || strings.HasPrefix(host, "*") {
		return host
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + ns + "." + DomainSuffix
	case 1:
		if isIPv4Like(host) {
			return host
		}
		return host + "." + DomainSuffix
	}
	return host
}

func isIPv4Like(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// HostAliases are the names a client in namespace ns may use for a service:
// the FQDN, and the short forms where the service lives in ns or follows
// the cluster-local pattern ("reviews", "reviews.default",
// "reviews.default.svc").
func HostAliases(hostname, ns string) []string {
	out := []string{hostname}
	suffix := "." + DomainSuffix
	if !strings.HasSuffix(hostname, suffix) {
		return out
	}
	base := strings.TrimSuffix(hostname, suffix) // reviews.default
	name, svcNS, ok := strings.Cut(base, ".")
	if !ok || strings.Contains(svcNS, ".") {
		return out
	}
	out = append(out, base+".svc", base)
	if svcNS == ns {
		out = append(out, name)
	}
	return out
}

// ClusterName is Istio's outbound cluster name:
// "outbound|9080|v1|reviews.default.svc.cluster.local".
func ClusterName(direction string, port uint32, subset, host string) string {
	return fmt.Sprintf("%s|%d|%s|%s", direction, port, subset, host)
}

// ParseClusterName splits a name made by ClusterName.
func ParseClusterName(name string) (direction string, port uint32, subset, host string, ok bool) {
	parts := strings.SplitN(name, "|", 4)
	if len(parts) != 4 {
		return "", 0, "", "", false
	}
	var n uint32
	if _, err := fmt.Sscanf(parts[1], "%d", &n); err != nil {
		return "", 0, "", "", false
	}
	return parts[0], n, parts[2], parts[3], true
}

// LabelsMatch reports whether labels contain every key/value of selector.
// An empty selector matches everything.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// RetryConditions are the retryOn conditions of a VirtualService that
// Istio accepts and the sidecars (Envoy's names) know.
var RetryConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// RetryOnItem reads one comma-separated item of a VirtualService's
// retryOn as Istio does: case and '_' for '-' do not matter, and a number
// is an HTTP status to retry on (code, with isCode set).
func RetryOnItem(item string) (name string, code int, isCode bool) {
	name = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(item), "_", "-"))
	if n, err := strconv.Atoi(name); err == nil {
		return name, n, true
	}
	return name, 0, false
}
