// Package xdstranslate turns a model.Snapshot into the Envoy xDS v3
// resources one proxy needs, following the contract in docs/architecture.md
// ("The xDS contract"). Everything here is a pure function of its inputs:
// no I/O, no clocks, deterministic output order.
//
// A Translator is built once per model.Snapshot. It computes the parts every
// proxy shares (outbound clusters and endpoints) once, and caches listeners
// and routes by the inputs that shape them (proxy type, namespace, labels,
// Sidecar scope, local ports), so proxies with identical inputs share them.
package xdstranslate

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// ProxyType says which shape of resources a proxy gets.
type ProxyType string

// Proxy types.
const (
	// Sidecar is a Weft sidecar (WEFT_PROXY=sidecar).
	Sidecar ProxyType = "sidecar"
	// Gateway is a Weft gateway proxy (WEFT_PROXY=gateway).
	Gateway ProxyType = "gateway"
	// Proxyless is a gRPC application with its own xDS client (no WEFT_PROXY).
	Proxyless ProxyType = "proxyless"
)

// Proxy describes the xDS client resources are built for.
type Proxy struct {
	// ID is the node ID the proxy sent.
	ID string
	// Type selects the shape of the resources.
	Type ProxyType
	// Namespace of the proxy; model.DefaultNamespace if it sent none.
	Namespace string
	// Name is the instance name ("reviews-v2-0"), possibly empty.
	Name string
	// Workload is the workload name ("reviews-v2"), possibly empty.
	Workload string
	// Labels of the workload; used by sourceLabels, Sidecar and Gateway selectors.
	Labels map[string]string
	// ServiceAccount of the workload, possibly empty.
	ServiceAccount string
	// IP is the proxy's address from the node ID, possibly empty.
	IP string
	// Instance is the local-mode instance under key name.namespace, if the
	// snapshot has one; it gives the ports a sidecar binds.
	Instance *model.Instance
	// Capture is set for a sidecar whose traffic iptables redirects to it
	// (metadata xdsmeta.MetaInterceptionMode = "REDIRECT").
	Capture bool
	// Locality is where the proxy runs, "region/zone/subzone" in canonical
	// form (LocalityString): the node's locality, or its local-mode
	// instance's. Empty: unknown, and locality-aware clusters are served
	// as they are shared.
	Locality string
	// CertProvider is, for a proxyless gRPC client, the certificate
	// provider instance of its bootstrap that holds its workload
	// certificate and the mesh's trust bundle (metadata
	// xdsmeta.MetaCertProvider); its clusters then originate mesh mTLS.
	// Empty: plaintext.
	CertProvider string
}

// ProxyFromNode builds a Proxy from what a node sent: the node ID (Istio
// shape, parsed with xdsmeta.ParseNodeID) and its metadata. Metadata wins
// over the ID. A node that sends nothing is a proxyless client in the
// default namespace; no node is ever refused. snap may be nil.
func ProxyFromNode(node *core.Node, snap *model.Snapshot) *Proxy {
	p := &Proxy{ID: node.GetId(), Type: Proxyless}
	if l := node.GetLocality(); l != nil {
		p.Locality = LocalityString(l.GetRegion(), l.GetZone(), l.GetSubZone())
	}
	if info, ok := xdsmeta.ParseNodeID(node.GetId()); ok {
		p.Name, p.Namespace, p.IP = info.Name, info.Namespace, info.IP
	}
	fields := node.GetMetadata().GetFields()
	str := func(key string) string { return fields[key].GetStringValue() }
	if v := str(xdsmeta.MetaNamespace); v != "" {
		p.Namespace = v
	}
	if v := str(xdsmeta.MetaName); v != "" {
		p.Name = v
	}
	p.Workload = str(xdsmeta.MetaWorkloadName)
	p.ServiceAccount = str(xdsmeta.MetaServiceAccount)
	p.Capture = str(xdsmeta.MetaInterceptionMode) == xdsmeta.InterceptionRedirect
	switch str(xdsmeta.MetaProxyType) {
	case xdsmeta.ProxyTypeSidecar:
		p.Type = Sidecar
	case xdsmeta.ProxyTypeGateway:
		p.Type = Gateway
	default:
		p.CertProvider = str(xdsmeta.MetaCertProvider)
	}
	if l := fields[xdsmeta.MetaLabels].GetStructValue(); l != nil {
		p.Labels = make(map[string]string, len(l.GetFields()))
		for k, v := range l.GetFields() {
			if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
				p.Labels[k] = s.StringValue
			}
		}
	}
	if p.Namespace == "" {
		p.Namespace = model.DefaultNamespace
	}
	if snap != nil && p.Name != "" {
		if inst := snap.Instances[p.Name+"."+p.Namespace]; inst != nil {
			p.Instance = inst
			if p.Workload == "" {
				p.Workload = inst.Workload
			}
			if p.ServiceAccount == "" {
				p.ServiceAccount = inst.ServiceAccount
			}
			if len(p.Labels) == 0 && len(inst.Labels) > 0 {
				p.Labels = inst.Labels
			}
			if p.Locality == "" {
				p.Locality = CanonicalLocality(inst.Locality)
			}
		}
	}
	return p
}

// WithSnapshot returns a copy of p with Instance looked up in snap, for
// proxies that outlive the snapshot they were described against.
func (p *Proxy) WithSnapshot(snap *model.Snapshot) *Proxy {
	q := *p
	q.Instance = nil
	if snap != nil && p.Name != "" {
		q.Instance = snap.Instances[p.Name+"."+p.Namespace]
		if q.Locality == "" && q.Instance != nil {
			q.Locality = CanonicalLocality(q.Instance.Locality)
		}
	}
	return &q
}
