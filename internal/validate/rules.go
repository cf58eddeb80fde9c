package validate

import (
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// fieldRule is one entry of the table of Istio fields Weft does not
// support (or supports only in some forms). A rule fires for every place
// its path is set in a resource of its kind and, if when is not nil, when
// returns true for the value.
type fieldRule struct {
	// kind is the resource kind.
	kind string
	// path is the field's JSON path from the resource root; "[]" stands
	// for every element of a list ("spec.subsets[].trafficPolicy").
	path string
	// severity: an error keeps the resource out of the mesh.
	severity model.Severity
	// message says what is wrong and what to do.
	message string
	// when narrows the rule to some values; nil means any set value.
	when func(v protoreflect.Value) bool
}

// trafficPolicies are the places a DestinationRule holds a TrafficPolicy
// (or a per-port one).
var trafficPolicies = []string{
	"spec.trafficPolicy",
	"spec.trafficPolicy.portLevelSettings[]",
	"spec.subsets[].trafficPolicy",
	"spec.subsets[].trafficPolicy.portLevelSettings[]",
}

// wholePolicies are the TrafficPolicy places (not per-port).
var wholePolicies = []string{"spec.trafficPolicy", "spec.subsets[].trafficPolicy"}

// supportedTLSModes are the client TLS modes Weft's clusters implement.
var supportedTLSModes = map[string]bool{"DISABLE": true, "SIMPLE": true, "MUTUAL": true, "ISTIO_MUTUAL": true}

// fieldRules is the table of unsupported fields. To support a field,
// delete its rule; to reject one more, add a rule.
var fieldRules = slices.Concat(buildRules(), telemetryRules(), proxyConfigRules())

func buildRules() []fieldRule {
	const exportTo = "exportTo is ignored: in Weft every resource is visible to every namespace; remove it to silence this warning"
	rules := []fieldRule{
		{kind: config.KindVirtualService, path: "spec.exportTo", severity: model.SeverityWarning, message: exportTo},
		{kind: config.KindDestinationRule, path: "spec.exportTo", severity: model.SeverityWarning, message: exportTo},
		{kind: config.KindServiceEntry, path: "spec.exportTo", severity: model.SeverityWarning, message: exportTo},
		{kind: config.KindDestinationRule, path: "spec.workloadSelector", severity: model.SeverityError,
			message: "workloadSelector on a DestinationRule is not supported by Weft yet; remove it so the rule applies to every client"},
		{kind: config.KindSidecar, path: "spec.ingress", severity: model.SeverityError,
			message: "ingress is not supported by Weft yet; Weft builds inbound listeners from the Workload's ports, remove it"},
		{kind: config.KindSidecar, path: "spec.egress[].bind", severity: model.SeverityError,
			message: "bind is not supported by Weft yet; remove it"},
		{kind: config.KindSidecar, path: "spec.egress[].captureMode", severity: model.SeverityError,
			message: "captureMode is not supported by Weft yet; remove it"},
		{kind: config.KindSidecar, path: "spec.inboundConnectionPool", severity: model.SeverityError,
			message: "inboundConnectionPool is not supported by Weft yet; remove it"},
		{kind: config.KindSidecar, path: "spec.outboundTrafficPolicy.egressProxy", severity: model.SeverityError,
			message: "egressProxy is not supported by Weft yet; remove it"},
		{kind: config.KindSidecar, path: "spec.egress[].port", severity: model.SeverityWarning,
			message: "port is not supported by Weft yet: this egress entry's hosts are visible on every port; remove it to silence this warning"},
		{kind: config.KindVirtualService, path: "spec.http[].match[].statPrefix", severity: model.SeverityWarning,
			message: "statPrefix is ignored: Weft keeps no statistics per route (the Istio metrics have the destination's labels); remove it to silence this warning"},
		{kind: config.KindVirtualService, path: "spec.tcp[].match[].sourceSubnet", severity: model.SeverityError,
			message: "sourceSubnet is not supported by Weft: the route would apply to clients from every address; remove it, or match on sourceLabels"},
		{kind: config.KindGateway, path: "spec.servers[].bind", severity: model.SeverityError,
			message: "bind is not supported by Weft yet: the gateway's listeners bind every address; remove it"},
		{kind: config.KindGateway, path: "spec.servers[].port.targetPort", severity: model.SeverityWarning,
			message: "targetPort applies to ServiceEntries; a gateway listens on port.number; remove it to silence this warning"},
		{kind: config.KindGateway, path: "spec.servers[].tls.caCertCredentialName", severity: model.SeverityError,
			message: "caCertCredentialName is not supported: Weft reads TLS files; set caCertificates to a file path on the gateway's machine"},
		{kind: config.KindGateway, path: "spec.servers[].tls.ecdhCurves", severity: model.SeverityError,
			message: "ecdhCurves is not supported by Weft yet: the gateway offers Go's default key exchanges (X25519MLKEM768, X25519, P-256, P-384); remove it"},
		{kind: config.KindGateway, path: "spec.servers[].tls.alpnProtocols", severity: model.SeverityWarning,
			message: "alpnProtocols is ignored: the gateway offers h2 and http/1.1 on HTTPS servers; remove it to silence this warning"},
		{kind: config.KindGateway, path: "spec.servers[].tls.insecureSkipVerify", severity: model.SeverityWarning,
			message: "insecureSkipVerify is not supported by Weft yet: a client certificate that fails verification is refused; remove it to silence this warning",
			when:    boolValue},
		{kind: config.KindGateway, path: "spec.servers[].defaultEndpoint", severity: model.SeverityWarning,
			message: "defaultEndpoint is ignored: a gateway routes by its VirtualServices; remove it to silence this warning"},
		{kind: config.KindVirtualService, path: "spec.tcp[].match[].destinationSubnets", severity: model.SeverityError,
			message: "destinationSubnets is not supported by Weft yet: the route would apply to every destination address; remove it, or match on port"},
		{kind: config.KindVirtualService, path: "spec.tls[].match[].destinationSubnets", severity: model.SeverityError,
			message: "destinationSubnets is not supported by Weft yet: the route would apply to every destination address; remove it, or match on sniHosts and port"},
		{kind: config.KindVirtualService, path: "spec.http[].retries.retryRemoteLocalities", severity: model.SeverityWarning,
			message: "retryRemoteLocalities is not supported by Weft yet: retries pick hosts as the first try does; remove it to silence this warning",
			when:    boolValue},
	}
	for _, tp := range wholePolicies {
		rules = append(rules,
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tunnel", severity: model.SeverityError,
				message: "tunnel is not supported by Weft yet; remove it"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".proxyProtocol", severity: model.SeverityError,
				message: "proxyProtocol is not supported by Weft yet; remove it"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".retryBudget", severity: model.SeverityError,
				message: "retryBudget is not supported by Weft yet: retries to the service are bounded by connectionPool.http.maxRetries; set that instead, and remove retryBudget"},
		)
	}
	for _, tp := range trafficPolicies {
		rules = append(rules,
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls.mode", severity: model.SeverityError,
				message: "this TLS mode is not supported; use DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL",
				when: func(v protoreflect.Value) bool {
					return !supportedTLSModes[networking.ClientTLSSettings_TLSmode(v.Enum()).String()]
				}},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls.credentialName", severity: model.SeverityError,
				message: "credentialName is not supported: Weft reads TLS files; set caCertificates (and for MUTUAL clientCertificate and privateKey) to file paths on the client's machine"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls.caCertCredentialName", severity: model.SeverityError,
				message: "caCertCredentialName is not supported: Weft reads TLS files; set caCertificates to a file path on the client's machine"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls.caCrl", severity: model.SeverityError,
				message: "caCrl is not supported by Weft yet: revoked server certificates would be accepted; remove it"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls", severity: model.SeverityError,
				message: "mode MUTUAL needs clientCertificate and privateKey (file paths on the client's machine), the certificate the client presents",
				when: func(v protoreflect.Value) bool {
					t, _ := v.Message().Interface().(*networking.ClientTLSSettings)
					return t.GetMode() == networking.ClientTLSSettings_MUTUAL && t.GetCredentialName() == "" && (t.GetClientCertificate() == "" || t.GetPrivateKey() == "")
				}},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".connectionPool.http.http2KeepAlive", severity: model.SeverityWarning,
				message: "http2KeepAlive is not supported by Weft yet: idle HTTP/2 connections to the service are not pinged; remove it to silence this warning"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.consistentHash.httpCookie.attributes", severity: model.SeverityWarning,
				message: "httpCookie.attributes is not supported by Weft yet: a cookie the sidecar sets has only its name, path and ttl; remove it to silence this warning"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.backendUtilization", severity: model.SeverityError,
				message: "backendUtilization is not supported by Weft yet; use simple: LEAST_REQUEST to favour the least loaded endpoints"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.zoneAwareLbSetting", severity: model.SeverityError,
				message: "zoneAwareLbSetting is not supported by Weft yet; use localityLbSetting"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".outlierDetection.outlierDetectionHttpErrorCodes", severity: model.SeverityError,
				message: "outlierDetectionHttpErrorCodes is not supported by Weft yet: outlier detection counts 5xx responses and connect failures; remove it"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".tls.insecureSkipVerify", severity: model.SeverityWarning,
				message: "insecureSkipVerify is not supported by Weft yet: the server certificate is still verified (against caCertificates, else the system's roots); remove it to silence this warning",
				when:    boolValue},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".connectionPool.http.h2UpgradePolicy", severity: model.SeverityWarning,
				message: "h2UpgradePolicy UPGRADE is not supported by Weft yet: HTTP/1.1 connections to the service are not upgraded to HTTP/2; remove it to silence this warning, or declare the port's protocol HTTP2",
				when: func(v protoreflect.Value) bool {
					return networking.ConnectionPoolSettings_HTTPSettings_H2UpgradePolicy(v.Enum()) == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE
				}},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".connectionPool.http.useClientProtocol", severity: model.SeverityWarning,
				message: "useClientProtocol is not supported by Weft yet: the protocol to the service follows its port's protocol; remove it to silence this warning",
				when:    func(v protoreflect.Value) bool { return v.Bool() }},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.warmupDurationSecs", severity: model.SeverityWarning,
				message: "warmupDurationSecs is not supported by Weft yet: new endpoints get their full share of requests at once; remove it to silence this warning"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.warmup", severity: model.SeverityWarning,
				message: "warmup is not supported by Weft yet: new endpoints get their full share of requests at once; remove it to silence this warning"},
			fieldRule{kind: config.KindDestinationRule, path: tp + ".loadBalancer.consistentHash.httpCookie", severity: model.SeverityError,
				message: "httpCookie needs a name; set httpCookie.name to the cookie to hash on",
				when: func(v protoreflect.Value) bool {
					c, _ := v.Message().Interface().(*networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie)
					return c.GetName() == ""
				}},
		)
	}
	return rules
}

// boolValue is a rule's when for a google.protobuf.BoolValue field: it
// fires when the value is true.
func boolValue(v protoreflect.Value) bool {
	b, _ := v.Message().Interface().(*wrapperspb.BoolValue)
	return b.GetValue()
}

// ruleStep is one segment of a rule's path: a field's JSON name, and
// whether the rule reaches every element of that list ("[]").
type ruleStep struct {
	name string
	each bool
}

// compiledRule is a fieldRule with its path split into steps.
type compiledRule struct {
	*fieldRule
	steps []ruleStep
}

// rulesByKind are fieldRules compiled, by kind.
var rulesByKind = compileRules(fieldRules)

func compileRules(rules []fieldRule) map[string][]compiledRule {
	out := map[string][]compiledRule{}
	for i := range rules {
		r := &rules[i]
		var steps []ruleStep
		for _, seg := range strings.Split(strings.TrimPrefix(r.path, "spec."), ".") {
			name, each := strings.CutSuffix(seg, "[]")
			steps = append(steps, ruleStep{name, each})
		}
		out[r.kind] = append(out[r.kind], compiledRule{r, steps})
	}
	return out
}

// checkFields applies the rules of r's kind to its spec.
func (b *build) checkFields(r *config.Resource, rep *reporter) {
	msg, ok := r.Spec.(proto.Message)
	if !ok {
		return
	}
	rules := rulesByKind[r.Kind]
	for i := range rules {
		rules[i].walk(msg.ProtoReflect(), rules[i].steps, "spec", rep)
	}
}

// walk reports the rule at each place its remaining steps reach a set
// field of m (path names m). Only set fields are visited, so a resource
// that sets none of the rule's fields costs a few lookups.
func (r *compiledRule) walk(m protoreflect.Message, steps []ruleStep, path string, rep *reporter) {
	fd := m.Descriptor().Fields().ByJSONName(steps[0].name)
	if fd == nil {
		return
	}
	last := len(steps) == 1
	if steps[0].each && fd.IsList() {
		list := m.Get(fd).List()
		for i := range list.Len() {
			p := path + "." + steps[0].name + "[" + itoa(i) + "]"
			if last {
				r.found(p, list.Get(i), rep)
			} else {
				r.walk(list.Get(i).Message(), steps[1:], p, rep)
			}
		}
		return
	}
	if !m.Has(fd) {
		return
	}
	p := path + "." + steps[0].name
	if last {
		r.found(p, m.Get(fd), rep)
		return
	}
	r.walk(m.Get(fd).Message(), steps[1:], p, rep)
}

func (r *compiledRule) found(field string, v protoreflect.Value, rep *reporter) {
	if r.when == nil || r.when(v) {
		rep.add(r.severity, field, r.message)
	}
}

// resolves reports whether every step of a rule's path names a field of
// md: a list where the step says "[]", a message (or a list of them, with
// "[]") where another step follows (for tests of the table).
func resolves(md protoreflect.MessageDescriptor, steps []ruleStep) bool {
	fd := md.Fields().ByJSONName(steps[0].name)
	if fd == nil || steps[0].each && !fd.IsList() {
		return false
	}
	if len(steps) == 1 {
		return true // a list or map without "[]": the rule is on the whole
	}
	return !fd.IsMap() && (steps[0].each || !fd.IsList()) && fd.Message() != nil && resolves(fd.Message(), steps[1:])
}

func itoa(i int) string { return strconv.Itoa(i) }
