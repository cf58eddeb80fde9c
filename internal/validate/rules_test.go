package validate

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1beta1 "istio.io/api/networking/v1beta1"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"weft.dev/weft/internal/config"
)

// translatedDestinationRuleFields are the DestinationRule fields Weft
// applies, as JSON paths with "[]" for lists, written for the top-level
// trafficPolicy (the same fields of a subset's policy and of
// portLevelSettings are read alike).
var translatedDestinationRuleFields = []string{
	"spec.host",
	"spec.subsets[].name",
	"spec.subsets[].labels",
	"spec.trafficPolicy.port.number",
	"spec.trafficPolicy.connectionPool.tcp.maxConnections",
	"spec.trafficPolicy.connectionPool.tcp.connectTimeout",
	"spec.trafficPolicy.connectionPool.tcp.idleTimeout",
	"spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration",
	"spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.probes",
	"spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time",
	"spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval",
	"spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
	"spec.trafficPolicy.connectionPool.http.http2MaxRequests",
	"spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection",
	"spec.trafficPolicy.connectionPool.http.maxRetries",
	"spec.trafficPolicy.connectionPool.http.idleTimeout",
	"spec.trafficPolicy.connectionPool.http.maxConcurrentStreams",
	"spec.trafficPolicy.loadBalancer.simple",
	"spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName",
	"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
	"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.path",
	"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
	"spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp",
	"spec.trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName",
	"spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize",
	"spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
	"spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[].from",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[].to",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.failover[].from",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.failover[].to",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[]",
	"spec.trafficPolicy.loadBalancer.localityLbSetting.enabled",
	"spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
	"spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors",
	"spec.trafficPolicy.outlierDetection.consecutive5xxErrors",
	"spec.trafficPolicy.outlierDetection.consecutiveErrors",
	"spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors",
	"spec.trafficPolicy.outlierDetection.interval",
	"spec.trafficPolicy.outlierDetection.baseEjectionTime",
	"spec.trafficPolicy.outlierDetection.maxEjectionPercent",
	"spec.trafficPolicy.outlierDetection.minHealthPercent",
	"spec.trafficPolicy.outlierDetection.failurePercentageThreshold",
	"spec.trafficPolicy.tls.mode",
	"spec.trafficPolicy.tls.clientCertificate",
	"spec.trafficPolicy.tls.privateKey",
	"spec.trafficPolicy.tls.caCertificates",
	"spec.trafficPolicy.tls.subjectAltNames[]",
	"spec.trafficPolicy.tls.sni",
}

// accountedFields are, per kind, the fields Weft applies or reports in
// its own checks (rather than through fieldRules), as JSON paths with "[]"
// for lists.
var accountedFields = map[string][]string{
	config.KindDestinationRule: translatedDestinationRuleFields,
	// fault.abort.http2Error and fault.delay.exponentialDelay are reported
	// by checkFault.
	config.KindVirtualService: {
		"spec.hosts[]",
		"spec.gateways[]",
		"spec.http[].name",
		"spec.http[].match[].name",
		"spec.http[].match[].uri.exact",
		"spec.http[].match[].uri.prefix",
		"spec.http[].match[].uri.regex",
		"spec.http[].match[].scheme.exact",
		"spec.http[].match[].scheme.prefix",
		"spec.http[].match[].scheme.regex",
		"spec.http[].match[].method.exact",
		"spec.http[].match[].method.prefix",
		"spec.http[].match[].method.regex",
		"spec.http[].match[].authority.exact",
		"spec.http[].match[].authority.prefix",
		"spec.http[].match[].authority.regex",
		"spec.http[].match[].headers",
		"spec.http[].match[].port",
		"spec.http[].match[].sourceLabels",
		"spec.http[].match[].gateways[]",
		"spec.http[].match[].queryParams",
		"spec.http[].match[].ignoreUriCase",
		"spec.http[].match[].withoutHeaders",
		"spec.http[].match[].sourceNamespace",
		"spec.http[].route[].destination.host",
		"spec.http[].route[].destination.subset",
		"spec.http[].route[].destination.port.number",
		"spec.http[].route[].weight",
		"spec.http[].route[].headers.request.set",
		"spec.http[].route[].headers.request.add",
		"spec.http[].route[].headers.request.remove[]",
		"spec.http[].route[].headers.response.set",
		"spec.http[].route[].headers.response.add",
		"spec.http[].route[].headers.response.remove[]",
		"spec.http[].redirect.uri",
		"spec.http[].redirect.authority",
		"spec.http[].redirect.port",
		"spec.http[].redirect.derivePort",
		"spec.http[].redirect.scheme",
		"spec.http[].redirect.redirectCode",
		"spec.http[].redirect.prefixRewrite",
		"spec.http[].directResponse.status",
		"spec.http[].directResponse.body.string",
		"spec.http[].directResponse.body.bytes",
		"spec.http[].delegate.name",
		"spec.http[].delegate.namespace",
		"spec.http[].rewrite.uri",
		"spec.http[].rewrite.authority",
		"spec.http[].rewrite.uriRegexRewrite.match",
		"spec.http[].rewrite.uriRegexRewrite.rewrite",
		"spec.http[].timeout",
		"spec.http[].retries.attempts",
		"spec.http[].retries.perTryTimeout",
		"spec.http[].retries.retryOn",
		"spec.http[].retries.retryIgnorePreviousHosts",
		"spec.http[].retries.backoff",
		"spec.http[].fault.delay.percent",
		"spec.http[].fault.delay.fixedDelay",
		"spec.http[].fault.delay.exponentialDelay",
		"spec.http[].fault.delay.percentage.value",
		"spec.http[].fault.abort.httpStatus",
		"spec.http[].fault.abort.grpcStatus",
		"spec.http[].fault.abort.http2Error",
		"spec.http[].fault.abort.percentage.value",
		"spec.http[].mirror.host",
		"spec.http[].mirror.subset",
		"spec.http[].mirror.port.number",
		"spec.http[].mirrors[].destination.host",
		"spec.http[].mirrors[].destination.subset",
		"spec.http[].mirrors[].destination.port.number",
		"spec.http[].mirrors[].percentage.value",
		"spec.http[].mirrorPercent",
		"spec.http[].mirrorPercentage.value",
		"spec.http[].corsPolicy.allowOrigin[]",
		"spec.http[].corsPolicy.allowOrigins[].exact",
		"spec.http[].corsPolicy.allowOrigins[].prefix",
		"spec.http[].corsPolicy.allowOrigins[].regex",
		"spec.http[].corsPolicy.allowMethods[]",
		"spec.http[].corsPolicy.allowHeaders[]",
		"spec.http[].corsPolicy.exposeHeaders[]",
		"spec.http[].corsPolicy.maxAge",
		"spec.http[].corsPolicy.allowCredentials",
		"spec.http[].corsPolicy.unmatchedPreflights",
		"spec.http[].headers.request.set",
		"spec.http[].headers.request.add",
		"spec.http[].headers.request.remove[]",
		"spec.http[].headers.response.set",
		"spec.http[].headers.response.add",
		"spec.http[].headers.response.remove[]",
		"spec.tls[].match[].sniHosts[]",
		"spec.tls[].match[].port",
		"spec.tls[].match[].sourceLabels",
		"spec.tls[].match[].gateways[]",
		"spec.tls[].match[].sourceNamespace",
		"spec.tls[].route[].destination.host",
		"spec.tls[].route[].destination.subset",
		"spec.tls[].route[].destination.port.number",
		"spec.tls[].route[].weight",
		"spec.tcp[].match[].port",
		"spec.tcp[].match[].sourceLabels",
		"spec.tcp[].match[].gateways[]",
		"spec.tcp[].match[].sourceNamespace",
		"spec.tcp[].route[].destination.host",
		"spec.tcp[].route[].destination.subset",
		"spec.tcp[].route[].destination.port.number",
		"spec.tcp[].route[].weight",
	},
	// Checked by checkAuthorizationPolicy, which reports what Weft does
	// not support (CUSTOM and its provider, targetRef, serviceAccounts,
	// trustDomains).
	config.KindAuthorizationPolicy: {
		"spec.selector.matchLabels",
		"spec.targetRef.group",
		"spec.targetRef.kind",
		"spec.targetRef.name",
		"spec.targetRef.namespace",
		"spec.targetRefs[].group",
		"spec.targetRefs[].kind",
		"spec.targetRefs[].name",
		"spec.targetRefs[].namespace",
		"spec.rules[].from[].source.principals[]",
		"spec.rules[].from[].source.notPrincipals[]",
		"spec.rules[].from[].source.requestPrincipals[]",
		"spec.rules[].from[].source.notRequestPrincipals[]",
		"spec.rules[].from[].source.namespaces[]",
		"spec.rules[].from[].source.notNamespaces[]",
		"spec.rules[].from[].source.serviceAccounts[]",
		"spec.rules[].from[].source.notServiceAccounts[]",
		"spec.rules[].from[].source.ipBlocks[]",
		"spec.rules[].from[].source.notIpBlocks[]",
		"spec.rules[].from[].source.remoteIpBlocks[]",
		"spec.rules[].from[].source.notRemoteIpBlocks[]",
		"spec.rules[].from[].source.trustDomains[]",
		"spec.rules[].from[].source.notTrustDomains[]",
		"spec.rules[].to[].operation.hosts[]",
		"spec.rules[].to[].operation.notHosts[]",
		"spec.rules[].to[].operation.ports[]",
		"spec.rules[].to[].operation.notPorts[]",
		"spec.rules[].to[].operation.methods[]",
		"spec.rules[].to[].operation.notMethods[]",
		"spec.rules[].to[].operation.paths[]",
		"spec.rules[].to[].operation.notPaths[]",
		"spec.rules[].when[].key",
		"spec.rules[].when[].values[]",
		"spec.rules[].when[].notValues[]",
		"spec.action",
		"spec.provider.name",
	},
	// Checked by checkRequestAuthentication, which reports targetRef,
	// fromCookies, outputClaimToHeaders, spaceDelimitedClaims and timeout.
	config.KindRequestAuthentication: {
		"spec.selector.matchLabels",
		"spec.targetRef.group",
		"spec.targetRef.kind",
		"spec.targetRef.name",
		"spec.targetRef.namespace",
		"spec.targetRefs[].group",
		"spec.targetRefs[].kind",
		"spec.targetRefs[].name",
		"spec.targetRefs[].namespace",
		"spec.jwtRules[].issuer",
		"spec.jwtRules[].audiences[]",
		"spec.jwtRules[].jwksUri",
		"spec.jwtRules[].jwks",
		"spec.jwtRules[].fromHeaders[].name",
		"spec.jwtRules[].fromHeaders[].prefix",
		"spec.jwtRules[].fromParams[]",
		"spec.jwtRules[].outputPayloadToHeader",
		"spec.jwtRules[].fromCookies[]",
		"spec.jwtRules[].forwardOriginalToken",
		"spec.jwtRules[].outputClaimToHeaders[].header",
		"spec.jwtRules[].outputClaimToHeaders[].claim",
		"spec.jwtRules[].timeout",
		"spec.jwtRules[].spaceDelimitedClaims[]",
		"spec.jwtRules[].presence",
	},
	// Checked by checkProxyConfig; applied by the local runtime when it
	// starts a proxy (model.ProxySettingsFor).
	config.KindProxyConfig: {
		"spec.selector.matchLabels",
		"spec.concurrency",
		"spec.environmentVariables",
	},
	// Checked by checkTelemetry.
	config.KindTelemetry: {
		"spec.selector.matchLabels",
		"spec.tracing[].match.mode",
		"spec.tracing[].providers[].name",
		"spec.tracing[].randomSamplingPercentage",
		"spec.tracing[].disableSpanReporting",
		"spec.tracing[].customTags",
		"spec.accessLogging[].match.mode",
		"spec.accessLogging[].providers[].name",
		"spec.accessLogging[].disabled",
		"spec.accessLogging[].filter.expression",
	},
	config.KindServiceEntry: {
		"spec.hosts[]", "spec.addresses[]", "spec.ports[].number", "spec.ports[].protocol", "spec.ports[].name",
		"spec.ports[].targetPort", "spec.location", "spec.resolution", "spec.endpoints[].address", "spec.endpoints[].ports",
		"spec.endpoints[].labels", "spec.endpoints[].network", "spec.endpoints[].locality", "spec.endpoints[].weight",
		"spec.endpoints[].serviceAccount", "spec.workloadSelector.labels", "spec.subjectAltNames[]",
	},
	config.KindWorkloadEntry: {
		"spec.address", "spec.ports", "spec.labels", "spec.network", "spec.locality", "spec.weight", "spec.serviceAccount",
	},
	config.KindSidecar: {
		"spec.workloadSelector.labels", "spec.egress[].hosts[]", "spec.outboundTrafficPolicy.mode",
	},
	config.KindPeerAuthentication: {
		"spec.selector.matchLabels", "spec.mtls.mode", "spec.portLevelMtls",
	},
	config.KindGateway: {
		"spec.selector", "spec.servers[].port.number", "spec.servers[].port.protocol", "spec.servers[].port.name",
		"spec.servers[].hosts[]", "spec.servers[].name",
		"spec.servers[].tls.httpsRedirect", "spec.servers[].tls.mode", "spec.servers[].tls.serverCertificate",
		"spec.servers[].tls.privateKey", "spec.servers[].tls.caCertificates", "spec.servers[].tls.minProtocolVersion",
		"spec.servers[].tls.maxProtocolVersion", "spec.servers[].tls.cipherSuites[]",
		// Reported by checkServerTLS.
		"spec.servers[].tls.caCrl", "spec.servers[].tls.credentialName", "spec.servers[].tls.credentialNames[]",
		"spec.servers[].tls.tlsCertificates[].serverCertificate", "spec.servers[].tls.tlsCertificates[].privateKey",
		"spec.servers[].tls.tlsCertificates[].caCertificates", "spec.servers[].tls.subjectAltNames[]",
		"spec.servers[].tls.verifyCertificateSpki[]", "spec.servers[].tls.verifyCertificateHash[]",
	},
}

// istioSpecs are empty specs of the Istio kinds Weft reads.
var istioSpecs = map[string]proto.Message{
	config.KindDestinationRule:       &networking.DestinationRule{},
	config.KindVirtualService:        &networking.VirtualService{},
	config.KindServiceEntry:          &networking.ServiceEntry{},
	config.KindWorkloadEntry:         &networking.WorkloadEntry{},
	config.KindSidecar:               &networking.Sidecar{},
	config.KindGateway:               &networking.Gateway{},
	config.KindPeerAuthentication:    &security.PeerAuthentication{},
	config.KindAuthorizationPolicy:   &security.AuthorizationPolicy{},
	config.KindRequestAuthentication: &security.RequestAuthentication{},
	config.KindTelemetry:             &telemetry.Telemetry{},
	config.KindProxyConfig:           &networkingv1beta1.ProxyConfig{},
}

// TestFieldsAccountedFor: every field of the Istio kinds in
// accountedFields, as the istio.io/api in go.mod defines them, is either
// applied or reported by Weft, so that no field a user sets is silently
// ignored. A new field (after an istio.io/api update) fails here until it
// is implemented or reported.
func TestFieldsAccountedFor(t *testing.T) {
	for kind, fields := range accountedFields {
		t.Run(kind, func(t *testing.T) {
			accounted := map[string]bool{}
			for _, p := range fields {
				accounted[p] = true
			}
			seen := map[string]bool{}
			for _, leaf := range leafPaths(istioSpecs[kind].ProtoReflect().Descriptor(), "spec") {
				// A subset's policy and portLevelSettings hold the fields
				// of the top-level trafficPolicy, read alike.
				norm := strings.Replace(leaf, "spec.subsets[].trafficPolicy", "spec.trafficPolicy", 1)
				norm = strings.Replace(norm, ".portLevelSettings[]", "", 1)
				seen[norm] = true
				if accounted[norm] || ruled(kind, leaf) {
					continue
				}
				t.Errorf("%s field %s is neither applied nor reported: implement it and list it in accountedFields, or add a fieldRule", kind, leaf)
			}
			for _, p := range fields {
				if !seen[p] {
					t.Errorf("accountedFields lists %s, which %s does not have", p, kind)
				}
			}
		})
	}
}

// ruled reports whether a rule of kind names path, or a field above it
// whatever its value (a rule with a condition on a message, such as one
// checking several of its fields together, accounts for none of them).
func ruled(kind, path string) bool {
	for _, r := range fieldRules {
		if r.kind != kind {
			continue
		}
		if path == r.path || r.when == nil && (strings.HasPrefix(path, r.path+".") || strings.HasPrefix(path, r.path+"[]")) {
			return true
		}
	}
	return false
}

// leafPaths lists the JSON paths of md's fields that hold values (scalars,
// enums, maps, well-known wrapper types), "[]" marking lists.
func leafPaths(md protoreflect.MessageDescriptor, prefix string) []string {
	var out []string
	fs := md.Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		p := prefix + "." + f.JSONName()
		if f.IsList() {
			p += "[]"
		}
		if m := f.Message(); m != nil && !f.IsMap() && m.ParentFile().Package() != "google.protobuf" {
			out = append(out, leafPaths(m, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}
