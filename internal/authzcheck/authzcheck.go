// Package authzcheck answers "would this call be allowed?" for
// `weft authz check`: it translates the destination instance's inbound
// listener exactly as the control plane sends it to the sidecar, parses it
// with the sidecar's own parser (proxyconfig) and evaluates the compiled
// RBAC filters (package rbac) the sidecar would run. The control plane and
// the proxy therefore cannot disagree about a decision.
package authzcheck

import (
	"fmt"
	"net/http"
	"net/netip"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/rbac"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// Request is the call to check.
type Request struct {
	// Principal is the source's SPIFFE ID ("" for a source without a
	// sidecar, which reaches the destination in plaintext).
	Principal string
	// SourceIP is the source's address; 127.0.0.1 when unset.
	SourceIP netip.Addr
	// Port is the destination's service port; 0 picks its first port.
	Port uint32
	// Method, Path and Host of an HTTP request (defaults GET, /, the
	// service's host name); Header its headers.
	Method, Path, Host string
	Header             http.Header
}

// Result is the decision for one destination instance.
type Result struct {
	// Instance and Workload decided about.
	Instance string `json:"instance"`
	Workload string `json:"workload"`
	// Port is the service port and Protocol "http" or "tcp".
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
	// Decision is "ALLOW" or "DENY".
	Decision string `json:"decision"`
	// Action of the deciding policy ("ALLOW", "DENY"); "" when none decided.
	Action string `json:"action,omitempty"`
	// Policy ("<namespace>/<name>") and Rule (its index) that decided; ""
	// when none did.
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Audit names the AUDIT policy that matched, if any.
	Audit string `json:"audit,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

// Check decides req against the inbound listener of inst for req.Port.
func Check(snap *model.Snapshot, inst *model.Instance, req Request) (Result, error) {
	res := Result{Instance: inst.Name, Workload: inst.Workload}
	var port *model.InstancePort
	for i := range inst.Ports {
		if req.Port == 0 || inst.Ports[i].Number == req.Port {
			port = &inst.Ports[i]
			break
		}
	}
	if port == nil {
		return res, fmt.Errorf("workload %s has no port %d", inst.Workload, req.Port)
	}
	res.Port, res.Protocol = port.Number, "tcp"
	if port.Protocol.IsHTTP() {
		res.Protocol = "http"
	}
	p := &xdstranslate.Proxy{
		ID:   xdsmeta.NodeID("sidecar", inst.Address, inst.Name, inst.Namespace),
		Type: xdstranslate.Sidecar, Namespace: inst.Namespace, Name: inst.Name, Workload: inst.Workload,
		Labels: inst.Labels, ServiceAccount: inst.ServiceAccount, Instance: inst,
	}
	xr, err := xdstranslate.Translate(snap, p)
	if err != nil {
		return res, fmt.Errorf("translating the config of %s: %w", inst.Name, err)
	}
	name := xdsmeta.InboundListenerName(port.Number)
	var chain *proxyconfig.FilterChain
	for _, l := range xr.Listeners {
		if l.GetName() != name {
			continue
		}
		pl, err := proxyconfig.ParseListener(l)
		if err != nil {
			return res, fmt.Errorf("listener %s of %s: %w", name, inst.Name, err)
		}
		want := proxyconfig.TransportProtocolRaw
		if req.Principal != "" {
			want = proxyconfig.TransportProtocolTLS
		}
		for _, fc := range pl.FilterChains {
			if fc.Match.TransportProtocol == want || fc.Match.TransportProtocol == "" {
				chain = fc
				break
			}
		}
	}
	if chain == nil {
		res.Decision = "DENY"
		if req.Principal == "" {
			res.Reason = "the port accepts only mTLS (PeerAuthentication STRICT) and the source has no sidecar"
		} else {
			res.Reason = "the port accepts no mTLS (PeerAuthentication DISABLE)"
		}
		return res, nil
	}
	in := &rbac.Input{Principal: req.Principal, SourceIP: req.SourceIP, DestPort: port.InboundPort}
	if !in.SourceIP.IsValid() {
		in.SourceIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	in.RemoteIP = in.SourceIP
	in.DestIP, _ = netip.ParseAddr(inst.Address)
	var rc *rbac.Chain
	if chain.HTTP != nil {
		rc = chain.HTTP.RBAC
		in.HTTP = true
		in.Method, in.Path, in.Host, in.Header = req.Method, req.Path, req.Host, req.Header
		if in.Method == "" {
			in.Method = http.MethodGet
		}
		if in.Path == "" {
			in.Path = "/"
		}
		if in.Header == nil {
			in.Header = http.Header{}
		}
	} else {
		rc = chain.RBAC
	}
	d := rc.Evaluate(in)
	return Explain(res, d), nil
}

// Explain fills res from a decision.
func Explain(res Result, d rbac.Decision) Result {
	res.Decision = "ALLOW"
	if !d.Allowed {
		res.Decision = "DENY"
	}
	if d.Audit != "" {
		if ns, name, rule, ok := rbac.PolicyOrigin(d.Audit); ok {
			res.Audit = fmt.Sprintf("%s/%s rule %s", ns, name, rule)
		} else {
			res.Audit = d.Audit
		}
	}
	if d.Policy != "" {
		res.Action = d.Action.String()
		if ns, name, rule, ok := rbac.PolicyOrigin(d.Policy); ok {
			res.Policy, res.Rule = ns+"/"+name, rule
		} else {
			res.Policy = d.Policy
		}
	}
	switch {
	case !d.Decided:
		res.Reason = "no policy applies: allowed"
	case !d.Allowed && d.Action == rbac.Deny:
		res.Reason = fmt.Sprintf("denied by DENY policy %s, rule %s", res.Policy, res.Rule)
	case !d.Allowed:
		res.Action = "ALLOW"
		res.Reason = "denied: ALLOW policies apply to this workload and no rule of theirs matched"
	case d.Policy != "":
		res.Reason = fmt.Sprintf("allowed by ALLOW policy %s, rule %s", res.Policy, res.Rule)
	default:
		res.Reason = "allowed: no DENY policy matched and no ALLOW policy applies"
	}
	return res
}
