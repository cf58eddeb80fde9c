package validate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// meshBase declares reviews (subsets v1, v2, v3) and ratings on port
// 9080.
const meshBase = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]
`

// valuesBase is meshBase followed by another document (lines 1-19 of each
// test's mesh.yaml).
const valuesBase = meshBase + "---\n"

// TestValueFindings checks the text and place of the findings about
// values the sidecar would refuse, and about Istio fields Weft does not
// implement.
func TestValueFindings(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{name: "http route values", yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {regex: "/api/(v1"}
      headers:
        "": {exact: a}
        x-user: {regex: "a("}
      queryParams: {q: {regex: "["}}
    timeout: -1s
    retries: {attempts: 3, backoff: 0s, perTryTimeout: -2s, retryOn: "5xx,gateway-eror,retriable_4xx,999"}
    headers:
      request:
        set: {":path": /x, x-a: "a\nb", host: ok}
        remove: [x-b, host]
      response:
        add: {x-c: "tab\tok"}
        remove: [":status"]
    route:
    - destination: {host: reviews}
      headers: {request: {add: {"x y": z}}}
  - match: [{uri: {regex: "/v[0-9]+/.*"}}]
    rewrite: {uri: /}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /a}}]
    rewrite: {uri: /a, uriRegexRewrite: {match: "(", rewrite: /}}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /b}}]
    redirect: {uri: /x, redirectCode: 304, port: 70000}
  - directResponse: {status: 700}
`, want: []string{
			"mesh.yaml:27: VirtualService default/reviews: spec.http[0].match[0].uri.regex: regex \"/api/(v1\" does not compile (RE2 syntax): error parsing regexp: missing closing ): `/api/(v1`",
			"mesh.yaml:29: VirtualService default/reviews: spec.http[0].match[0].headers[]: header name is empty; give the name of the header to match",
			"mesh.yaml:30: VirtualService default/reviews: spec.http[0].match[0].headers[x-user].regex: regex \"a(\" does not compile (RE2 syntax): error parsing regexp: missing closing ): `a(`",
			"mesh.yaml:31: VirtualService default/reviews: spec.http[0].match[0].queryParams[q].regex: regex \"[\" does not compile (RE2 syntax): error parsing regexp: missing closing ]: `[`",
			"mesh.yaml:32: VirtualService default/reviews: spec.http[0].timeout: timeout -1s is negative; use a positive duration, or 0s for no timeout",
			"mesh.yaml:33: VirtualService default/reviews: spec.http[0].retries.backoff: backoff 0s is not more than 0; use a positive base interval, such as 25ms (the default when it is not set)",
			"mesh.yaml:33: VirtualService default/reviews: spec.http[0].retries.perTryTimeout: perTryTimeout -2s is negative; use a positive duration",
			"mesh.yaml:33: VirtualService default/reviews: spec.http[0].retries.retryOn: retryOn \"999\" is not an HTTP status from 100 to 599",
			"mesh.yaml:33: VirtualService default/reviews: spec.http[0].retries.retryOn: retryOn \"gateway-eror\" is not a retry condition (did you mean gateway-error?); use 5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, or an HTTP status code to retry on",
			"mesh.yaml:36: VirtualService default/reviews: spec.http[0].headers.request.set[:path]: \":path\" is a pseudo-header, which cannot be set (only :authority or host can); use rewrite to change the path",
			"mesh.yaml:36: VirtualService default/reviews: spec.http[0].headers.request.set[x-a]: the value of header \"x-a\" has the control character '\\n'; header values cannot hold line breaks or other control characters (a tab is fine)",
			"mesh.yaml:37: VirtualService default/reviews: spec.http[0].headers.request.remove[1]: \"host\" cannot be removed: the host and the pseudo-headers are part of every request and response; take it out of remove",
			"mesh.yaml:40: VirtualService default/reviews: spec.http[0].headers.response.remove[0]: \":status\" cannot be removed: the host and the pseudo-headers are part of every request and response; take it out of remove",
			"mesh.yaml:43: VirtualService default/reviews: spec.http[0].route[0].headers.request.add[x y]: \"x y\" is not a valid header name; use letters, digits and !#$%&'*+-.^_`|~",
			"mesh.yaml:45: VirtualService default/reviews: spec.http[1].rewrite.uri: uri replaces the path prefix a match matched, but match[0] matches the uri by regex; use uriRegexRewrite instead",
			"mesh.yaml:48: VirtualService default/reviews: spec.http[2].rewrite.uriRegexRewrite.match: regex \"(\" does not compile (RE2 syntax): error parsing regexp: missing closing ): `(`",
			"mesh.yaml:48: VirtualService default/reviews: spec.http[2].rewrite: set uri or uriRegexRewrite, not both",
			"mesh.yaml:51: VirtualService default/reviews: spec.http[3].redirect.port: port 70000 is out of range; use 1-65535",
			"mesh.yaml:51: VirtualService default/reviews: spec.http[3].redirect.redirectCode: redirectCode 304 is not supported; use 301 (the default), 302, 303, 307 or 308",
			"mesh.yaml:52: VirtualService default/reviews: spec.http[4].directResponse.status: status 700 is not an HTTP status from 200 to 599",
		}},
		{name: "weights that would wrap an int32 to 100", yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 2147483647}
    - {destination: {host: reviews, subset: v2}, weight: 2147483647}
    - {destination: {host: reviews, subset: v3}, weight: 102}
`, want: []string{
			"mesh.yaml:26: VirtualService default/reviews: spec.http[0].route: weights add up to 4294967396, not 100; adjust them so they total 100",
		}},
		{name: "traffic policy values", yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 0s}, http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}
    loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 1000}}, warmupDurationSecs: 60s}
    outlierDetection: {maxEjectionPercent: 150, minHealthPercent: -1, interval: 0s, baseEjectionTime: -5s}
    tls: {mode: SIMPLE, insecureSkipVerify: true}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 100000000}}}
  subsets:
  - name: v1
    labels: {app: ratings}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 5000087}}}}
`, want: []string{
			"mesh.yaml:26: DestinationRule default/ratings: spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: h2UpgradePolicy UPGRADE is not supported by Weft yet: HTTP/1.1 connections to the service are not upgraded to HTTP/2; remove it to silence this warning, or declare the port's protocol HTTP2 (warning)",
			"mesh.yaml:26: DestinationRule default/ratings: spec.trafficPolicy.connectionPool.http.useClientProtocol: useClientProtocol is not supported by Weft yet: the protocol to the service follows its port's protocol; remove it to silence this warning (warning)",
			"mesh.yaml:26: DestinationRule default/ratings: spec.trafficPolicy.connectionPool.tcp.connectTimeout: connectTimeout 0s is not more than 0; use a positive duration, or leave it out for the default (10s)",
			"mesh.yaml:27: DestinationRule default/ratings: spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize 1000 is not a prime number, as a Maglev table size must be; use a prime such as 65537 (the default) or 131071",
			"mesh.yaml:27: DestinationRule default/ratings: spec.trafficPolicy.loadBalancer.warmupDurationSecs: warmupDurationSecs is not supported by Weft yet: new endpoints get their full share of requests at once; remove it to silence this warning (warning)",
			"mesh.yaml:28: DestinationRule default/ratings: spec.trafficPolicy.outlierDetection.baseEjectionTime: baseEjectionTime -5s is not more than 0; use a positive duration, or leave it out for the default (30s)",
			"mesh.yaml:28: DestinationRule default/ratings: spec.trafficPolicy.outlierDetection.interval: interval 0s is not more than 0; use a positive duration, or leave it out for the default (10s)",
			"mesh.yaml:28: DestinationRule default/ratings: spec.trafficPolicy.outlierDetection.maxEjectionPercent: maxEjectionPercent 150 is not from 0 to 100",
			"mesh.yaml:28: DestinationRule default/ratings: spec.trafficPolicy.outlierDetection.minHealthPercent: minHealthPercent -1 is not from 0 to 100",
			"mesh.yaml:29: DestinationRule default/ratings: spec.trafficPolicy.tls.insecureSkipVerify: insecureSkipVerify is not supported by Weft yet: the server certificate is still verified (against caCertificates, else the system's roots); remove it to silence this warning (warning)",
			"mesh.yaml:32: DestinationRule default/ratings: spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash.ringHash.minimumRingSize: minimumRingSize 100000000 is more than 8388608, the largest ring; use up to 8388608, or leave it out for the default (1024)",
			"mesh.yaml:36: DestinationRule default/ratings: spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize 5000087 is more than 5000011, the largest Maglev table; use a prime up to 5000011, or leave it out for the default (65537)",
		}},
		{name: "ServiceEntry targetPort and hosts in another case", yaml: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 80, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [Shop.example.com, shop.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, targetPort: 70000}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-upper}
spec:
  hosts: [API.example.com, Reviews.default.svc.cluster.local]
  resolution: DNS
  ports: [{number: 80, name: http}]
`, want: []string{
			"mesh.yaml:32: ServiceEntry default/shop: spec.hosts[1]: host shop.example.com is already in hosts as Shop.example.com: host names do not depend on case; declare each host once",
			"mesh.yaml:34: ServiceEntry default/shop: spec.ports[0].targetPort: targetPort 70000 is out of range; use 1-65535, or leave it out to use the port number",
			"mesh.yaml:41: ServiceEntry default/api-upper: spec.hosts[0]: host API.example.com is already declared by ServiceEntry default/api (mesh.yaml:20); declare each host once",
			"mesh.yaml:41: ServiceEntry default/api-upper: spec.hosts[1]: host Reviews.default.svc.cluster.local is already declared by Workload default/reviews (mesh.yaml:1); declare each host once",
		}},
		{name: "VirtualServices with a host in another case", yaml: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-a}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gw]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-b}
spec:
  hosts: [Shop.example.com, Other.example.com, other.example.com]
  gateways: [shop-gw]
  http: [{route: [{destination: {host: reviews}}]}]
`, want: []string{
			"mesh.yaml:39: VirtualService default/shop-b: spec.hosts[0]: host Shop.example.com on gateway default/shop-gw is already routed by VirtualService default/shop-a (mesh.yaml:27) (as shop.example.com); merge the two VirtualServices into one",
			"mesh.yaml:39: VirtualService default/shop-b: spec.hosts[2]: host other.example.com is already in hosts as Other.example.com: host names do not depend on case; list each host once",
		}},
		{name: "Sidecar and VirtualService fields Weft does not implement", yaml: `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: egress, port: {number: 80}}}
  egress:
  - port: {number: 9999, protocol: HTTP, name: http-other}
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  tcp:
  - match: [{destinationSubnets: [10.9.0.0/16]}]
    route: [{destination: {host: reviews}}]
  http:
  - retries: {attempts: 3, retryRemoteLocalities: true}
    route: [{destination: {host: reviews}}]
`, want: []string{
			"mesh.yaml:24: Sidecar default/default: spec.outboundTrafficPolicy.egressProxy: egressProxy is not supported by Weft yet; remove it",
			"mesh.yaml:26: Sidecar default/default: spec.egress[0].port: port is not supported by Weft yet: this egress entry's hosts are visible on every port; remove it to silence this warning (warning)",
			"mesh.yaml:35: VirtualService default/reviews: spec.tcp[0].match[0].destinationSubnets: destinationSubnets is not supported by Weft yet: the route would apply to every destination address; remove it, or match on port",
			"mesh.yaml:38: VirtualService default/reviews: spec.http[0].retries.retryRemoteLocalities: retryRemoteLocalities is not supported by Weft yet: retries pick hosts as the first try does; remove it to silence this warning (warning)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := NewBuilder().Build(parse(t, "mesh.yaml", valuesBase+tc.yaml), nil)
			if diff := cmp.Diff(tc.want, findingTexts(Findings(snap))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBadValueKeepsLastGood: an edit that brings in a value the sidecar
// would refuse leaves the resource's last good version in force.
func TestBadValueKeepsLastGood(t *testing.T) {
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: "/api/v[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v1}}]
`
	const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 2s}}}
`
	b := NewBuilder()
	good := b.Build(parse(t, "mesh.yaml", valuesBase+vs+"---\n"+dr), nil)
	if fs := Findings(good); len(fs) > 0 || len(good.VirtualServices) != 1 || len(good.DestinationRules) != 2 {
		t.Fatalf("setup: findings %v", fs)
	}
	badVS := strings.Replace(vs, `"/api/v[0-9]+"`, `"/api/(v[0-9]+"`, 1)
	badDR := strings.Replace(dr, "2s", "0s", 1)
	snap := b.Build(parse(t, "mesh.yaml", valuesBase+badVS+"---\n"+badDR), nil)
	if len(snap.VirtualServices) != 1 || snap.VirtualServices[0].Spec.GetHttp()[0].GetMatch()[0].GetUri().GetRegex() != "/api/v[0-9]+" {
		t.Errorf("VirtualServices in force = %v, want the last good one", snap.VirtualServices)
	}
	var timeout string
	for _, d := range snap.DestinationRules {
		if d.Name == "ratings" {
			timeout = d.Spec.GetTrafficPolicy().GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration().String()
		}
	}
	if timeout != "2s" {
		t.Errorf("ratings connectTimeout in force = %q, want the last good 2s", timeout)
	}
	for _, st := range snap.Status {
		if (st.Name == "reviews" && st.Kind == config.KindVirtualService || st.Name == "ratings" && st.Kind == config.KindDestinationRule) && (st.State != model.StateInvalid || !st.ServingLastGood) {
			t.Errorf("%s %s: state %v, serving last good %v; want invalid, serving last good", st.Kind, st.Name, st.State, st.ServingLastGood)
		}
	}
}
