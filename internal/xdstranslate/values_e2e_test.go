package xdstranslate_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdstranslate"
)

// These tests build config as the control plane does (config.Parse,
// validate.Builder, xdstranslate) and run the Weft proxy's own xDS
// parsers (proxyconfig.Parse*) on every translated resource: the proxy
// NACKs a resource they refuse, keeping its previous version (or none, on
// a fresh proxy) for every VirtualService on the port or every sidecar
// sharing the cluster. What the proxy would refuse must be an error of
// validation, on the field at fault, so that the resource's last good
// version stays in force instead.

// valuesMesh is a small valid mesh: reviews (subsets v1 and v2), ratings
// and productpage on port 9080.
const valuesMesh = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v1}
spec:
  service: reviews
  labels: {app: reviews, version: v1}
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: ratings}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: productpage}
spec:
  ports: [{name: http, number: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func valuesInstances() []*model.Instance {
	inst := func(name, wl, svc string, labels map[string]string, base uint32) *model.Instance {
		return &model.Instance{Name: name, Namespace: "default", Workload: wl, Service: svc, Labels: labels, Address: "127.0.0.1",
			Ports:        []model.InstancePort{{Name: "http", Number: 9080, Protocol: model.ProtocolHTTP, AppPort: base, InboundPort: base + 1}},
			OutboundPort: base + 2}
	}
	return []*model.Instance{
		inst("reviews-v1-0", "reviews-v1", "reviews", map[string]string{"app": "reviews", "version": "v1"}, 30000),
		inst("ratings-0", "ratings", "ratings", map[string]string{"app": "ratings"}, 30010),
		inst("productpage-0", "productpage", "productpage", map[string]string{"app": "productpage"}, 30020),
	}
}

// valuesProxies are the productpage sidecar and an ingress gateway proxy.
func valuesProxies() []*xdstranslate.Proxy {
	return []*xdstranslate.Proxy{
		{ID: "sidecar~127.0.0.1~productpage-0.default~default.svc.cluster.local", Type: xdstranslate.Sidecar,
			Namespace: "default", Name: "productpage-0", Labels: map[string]string{"app": "productpage"}},
		{ID: "router~127.0.0.1~ingress-0.default~default.svc.cluster.local", Type: xdstranslate.Gateway,
			Namespace: "default", Name: "ingress-0", Labels: map[string]string{"istio": "ingressgateway"}},
	}
}

// buildValues builds valuesMesh plus extra as the control plane does.
func buildValues(extra string) (*config.Set, *model.Snapshot) {
	set, _ := config.Parse("mesh.yaml", []byte(valuesMesh+"---\n"+extra))
	return set, validate.NewBuilder().Build(set, valuesInstances())
}

// proxyRefusals translates snap for valuesProxies and returns what
// xdstranslate or the proxy's xDS client refuses.
func proxyRefusals(snap *model.Snapshot) []string {
	var out []string
	tr := xdstranslate.New(snap)
	for _, p := range valuesProxies() {
		res, err := tr.Translate(p.WithSnapshot(snap))
		if err != nil {
			out = append(out, "Translate: "+err.Error())
		}
		for _, l := range res.Listeners {
			if _, err := proxyconfig.ParseListener(l); err != nil {
				out = append(out, "proxy NACKs listener: "+err.Error())
			}
		}
		for _, r := range res.Routes {
			if _, err := proxyconfig.ParseRouteConfig(r); err != nil {
				out = append(out, "proxy NACKs route: "+err.Error())
			}
		}
		for _, c := range res.Clusters {
			if _, err := proxyconfig.ParseCluster(c); err != nil {
				out = append(out, "proxy NACKs cluster: "+err.Error())
			}
		}
		for _, e := range res.Endpoints {
			if _, err := proxyconfig.ParseEndpoints(e); err != nil {
				out = append(out, "proxy NACKs endpoints: "+err.Error())
			}
		}
	}
	return out
}

// withRejected is snap with the VirtualServices and DestinationRules of
// set that validation left out put in force anyway (hosts resolved as
// validation does): what the proxies would get if validation let them
// through.
func withRejected(set *config.Set, snap *model.Snapshot) *model.Snapshot {
	out := *snap
	out.VirtualServices = slices.Clone(snap.VirtualServices)
	out.DestinationRules = slices.Clone(snap.DestinationRules)
	for _, r := range set.Resources {
		if r.Invalid || slices.ContainsFunc(out.VirtualServices, func(c *model.VirtualService) bool { return c.Meta == r.Meta }) ||
			slices.ContainsFunc(out.DestinationRules, func(c *model.DestinationRule) bool { return c.Meta == r.Meta }) {
			continue
		}
		switch spec := r.Spec.(type) {
		case *networking.VirtualService:
			vs := proto.Clone(spec).(*networking.VirtualService)
			for i, h := range vs.GetHosts() {
				vs.Hosts[i] = model.FQDN(h, r.Namespace)
			}
			out.VirtualServices = append(out.VirtualServices, &model.VirtualService{Meta: r.Meta, Spec: vs})
		case *networking.DestinationRule:
			dr := proto.Clone(spec).(*networking.DestinationRule)
			dr.Host = model.FQDN(dr.GetHost(), r.Namespace)
			out.DestinationRules = append(out.DestinationRules, &model.DestinationRule{Meta: r.Meta, Spec: dr})
		}
	}
	return &out
}

// valueCase is a resource added to valuesMesh and the finding validation
// must report about it.
type valueCase struct {
	name, yaml string
	// field is the finding's field; severity its severity (error when
	// not set); message a part of its message.
	field, message string
	severity       model.Severity
}

// checkValueCase checks that validation reports tc's finding and, for an
// error, that the proxies accept what is left in force. When proxyRefuses,
// the case is one the proxy's xDS client refuses: with the resource put in
// force anyway, a proxy must NACK something (else the case tests nothing).
func checkValueCase(t *testing.T, tc valueCase, proxyRefuses bool) {
	t.Helper()
	set, snap := buildValues(tc.yaml)
	sev := tc.severity
	if sev == "" {
		sev = model.SeverityError
	}
	fs := validate.Findings(snap)
	if !slices.ContainsFunc(fs, func(f model.Finding) bool {
		return f.Field == tc.field && f.Severity == sev && strings.Contains(f.Message, tc.message)
	}) {
		t.Errorf("no %s finding on %s containing %q; findings:\n  %s\nwhat the proxies refuse:\n  %s", sev, tc.field, tc.message,
			strings.Join(findingStrings(fs), "\n  "), strings.Join(proxyRefusals(withRejected(set, snap)), "\n  "))
	}
	if p := proxyRefusals(snap); len(p) > 0 {
		t.Errorf("the proxies refuse the config validation left in force:\n  %s", strings.Join(p, "\n  "))
	}
	if proxyRefuses && len(proxyRefusals(withRejected(set, snap))) == 0 {
		t.Errorf("with the resource in force, no proxy refuses anything: the case does not test what it says")
	}
}

func findingStrings(fs []model.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}

func TestValuesMeshBaseline(t *testing.T) {
	_, snap := buildValues("")
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Fatalf("findings on the valid mesh: %v", fs)
	}
	if p := proxyRefusals(snap); len(p) > 0 {
		t.Fatalf("the proxies refuse the valid mesh: %v", p)
	}
}

func routeVS(route string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n" + route
}

// http route values the proxy refuses.
func TestRouteValuesRefusedByProxy(t *testing.T) {
	const to = "    route: [{destination: {host: reviews}}]\n"
	cases := []valueCase{
		{name: "uri regex does not compile", yaml: routeVS("  - match: [{uri: {regex: \"/api/(v1\"}}]\n" + to),
			field: "spec.http[0].match[0].uri.regex", message: `regex "/api/(v1" does not compile (RE2 syntax)`},
		{name: "uri regex empty", yaml: routeVS("  - match: [{uri: {regex: \"\"}}]\n" + to),
			field: "spec.http[0].match[0].uri.regex", message: "regex is empty"},
		{name: "header regex does not compile", yaml: routeVS("  - match: [{headers: {x-user: {regex: \"a(\"}}}]\n" + to),
			field: "spec.http[0].match[0].headers[x-user].regex", message: `regex "a(" does not compile`},
		{name: "queryParams regex does not compile", yaml: routeVS("  - match: [{queryParams: {q: {regex: \"[\"}}}]\n" + to),
			field: "spec.http[0].match[0].queryParams[q].regex", message: `regex "[" does not compile`},
		{name: "authority regex does not compile", yaml: routeVS("  - match: [{authority: {regex: \"*.example.com\"}}]\n" + to),
			field: "spec.http[0].match[0].authority.regex", message: "does not compile"},
		{name: "uriRegexRewrite does not compile", yaml: routeVS("  - rewrite: {uriRegexRewrite: {match: \"(\", rewrite: /}}\n" + to),
			field: "spec.http[0].rewrite.uriRegexRewrite.match", message: `regex "(" does not compile`},
		{name: "rewrite.uri with a uri regex match", yaml: routeVS("  - match: [{uri: {regex: \"/v[0-9]+/.*\"}}]\n    rewrite: {uri: /}\n" + to),
			field: "spec.http[0].rewrite.uri", message: "match[0] matches the uri by regex; use uriRegexRewrite"},
		{name: "empty header name in match", yaml: routeVS("  - match: [{headers: {\"\": {exact: a}}}]\n" + to),
			field: "spec.http[0].match[0].headers[]", message: "header name is empty"},
		{name: "empty query parameter name in match", yaml: routeVS("  - match: [{queryParams: {\"\": {exact: a}}}]\n" + to),
			field: "spec.http[0].match[0].queryParams[]", message: "query parameter name is empty"},
		{name: "headers.request.remove host", yaml: routeVS("  - headers: {request: {remove: [host]}}\n" + to),
			field: "spec.http[0].headers.request.remove[0]", message: `"host" cannot be removed`},
		{name: "headers.response.remove pseudo-header", yaml: routeVS("  - headers: {response: {remove: [x-a, \":status\"]}}\n" + to),
			field: "spec.http[0].headers.response.remove[1]", message: `":status" cannot be removed`},
		{name: "headers.request.set pseudo-header", yaml: routeVS("  - headers: {request: {set: {\":path\": /x}}}\n" + to),
			field: "spec.http[0].headers.request.set[:path]", message: `":path" is a pseudo-header, which cannot be set`},
		{name: "headers.request.set value with newline", yaml: routeVS("  - headers: {request: {set: {x-a: \"a\\nb\"}}}\n" + to),
			field: "spec.http[0].headers.request.set[x-a]", message: `the value of header "x-a" has the control character '\n'`},
		{name: "destination headers.response.add value with CR", yaml: routeVS("  - route: [{destination: {host: reviews}, headers: {response: {add: {x-a: \"a\\rb\"}}}}]\n"),
			field: "spec.http[0].route[0].headers.response.add[x-a]", message: "has the control character '\\r'"},
		{name: "negative timeout", yaml: routeVS("  - timeout: -1s\n" + to),
			field: "spec.http[0].timeout", message: "timeout -1s is negative"},
		{name: "retries.backoff 0s", yaml: routeVS("  - retries: {attempts: 3, backoff: 0s}\n" + to),
			field: "spec.http[0].retries.backoff", message: "backoff 0s is not more than 0"},
		{name: "retries.backoff negative", yaml: routeVS("  - retries: {attempts: 3, backoff: -2s}\n" + to),
			field: "spec.http[0].retries.backoff", message: "backoff -2s is not more than 0"},
		{name: "directResponse status 700", yaml: routeVS("  - directResponse: {status: 700}\n"),
			field: "spec.http[0].directResponse.status", message: "status 700 is not an HTTP status from 200 to 599"},
		{name: "directResponse status 0", yaml: routeVS("  - directResponse: {status: 0}\n"),
			field: "spec.http[0].directResponse.status", message: "status 0 is not an HTTP status from 200 to 599"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkValueCase(t, tc, true) })
	}
}

// Route values the proxy takes but that Istio refuses and the proxy
// cannot serve as written.
func TestRouteValuesRefusedLikeIstio(t *testing.T) {
	const to = "    route: [{destination: {host: reviews}}]\n"
	cases := []valueCase{
		// The proxy anchors it as ^(?:/a)(/b)$, which compiles and
		// matches something else than RE2 would refuse to.
		{name: "uri regex with a stray parenthesis the anchors would pair", yaml: routeVS("  - match: [{uri: {regex: \"/a)(/b\"}}]\n" + to),
			field: "spec.http[0].match[0].uri.regex", message: "does not compile"},
		{name: "negative perTryTimeout", yaml: routeVS("  - retries: {attempts: 3, perTryTimeout: -1s}\n" + to),
			field: "spec.http[0].retries.perTryTimeout", message: "perTryTimeout -1s is negative"},
		{name: "negative attempts", yaml: routeVS("  - retries: {attempts: -1}\n" + to),
			field: "spec.http[0].retries.attempts", message: "attempts -1 is negative"},
		{name: "directResponse status 101", yaml: routeVS("  - directResponse: {status: 101}\n"),
			field: "spec.http[0].directResponse.status", message: "status 101 is not an HTTP status from 200 to 599"},
		{name: "header name not a token", yaml: routeVS("  - headers: {request: {set: {\"x a\": b}}}\n" + to),
			field: "spec.http[0].headers.request.set[x a]", message: `"x a" is not a valid header name`},
		{name: "redirect port out of range", yaml: routeVS("  - redirect: {uri: /x, port: 70000}\n"),
			field: "spec.http[0].redirect.port", message: "port 70000 is out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkValueCase(t, tc, false) })
	}
}

// A root route's rewrite.uri merged with a delegate route's uri regex
// match is what the proxy refuses in "rewrite.uri with a uri regex match"
// above, though each route is fine alone.
func TestDelegateMergedRewriteRefusedByProxy(t *testing.T) {
	checkValueCase(t, valueCase{name: "merged",
		yaml: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-api}\nspec:\n  http:\n" +
			"  - match: [{uri: {regex: \"/api/v[0-9]+\"}}]\n    route: [{destination: {host: reviews}}]\n---\n" +
			routeVS("  - rewrite: {uri: /}\n    delegate: {name: reviews-api}\n"),
		field: "spec.http[0].delegate", message: "route http[0] of delegate default/reviews-api has a rewrite.uri"}, false)
}

// gatewayServers is a Gateway "gw" on the ingress gateway with the given
// servers (a YAML flow sequence's items).
func gatewayServers(servers string) string {
	return "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [" + servers + "]\n"
}

func trafficPolicyDR(tp string) string {
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings\n  trafficPolicy: " + tp + "\n"
}

// DestinationRule traffic policy values the proxy refuses; the cluster is
// shared by every sidecar.
func TestTrafficPolicyValuesRefusedByProxy(t *testing.T) {
	const tp = "spec.trafficPolicy"
	cases := []valueCase{
		{name: "connectTimeout 0s", yaml: trafficPolicyDR("{connectionPool: {tcp: {connectTimeout: 0s}}}"),
			field: tp + ".connectionPool.tcp.connectTimeout", message: "connectTimeout 0s is not more than 0"},
		{name: "connectTimeout negative", yaml: trafficPolicyDR("{connectionPool: {tcp: {connectTimeout: -1s}}}"),
			field: tp + ".connectionPool.tcp.connectTimeout", message: "connectTimeout -1s is not more than 0"},
		{name: "maglev tableSize not prime", yaml: trafficPolicyDR("{loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 1000}}}}"),
			field: tp + ".loadBalancer.consistentHash.maglev.tableSize", message: "tableSize 1000 is not a prime number"},
		{name: "maglev tableSize too large", yaml: trafficPolicyDR("{loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 5000087}}}}"),
			field: tp + ".loadBalancer.consistentHash.maglev.tableSize", message: "tableSize 5000087 is more than 5000011"},
		{name: "ringHash minimumRingSize too big", yaml: trafficPolicyDR("{loadBalancer: {consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 100000000}}}}"),
			field: tp + ".loadBalancer.consistentHash.ringHash.minimumRingSize", message: "minimumRingSize 100000000 is more than 8388608"},
		{name: "deprecated minimumRingSize too big", yaml: trafficPolicyDR("{loadBalancer: {consistentHash: {httpHeaderName: x, minimumRingSize: 8388609}}}"),
			field: tp + ".loadBalancer.consistentHash.minimumRingSize", message: "minimumRingSize 8388609 is more than 8388608"},
		{name: "outlier maxEjectionPercent 150", yaml: trafficPolicyDR("{outlierDetection: {maxEjectionPercent: 150}}"),
			field: tp + ".outlierDetection.maxEjectionPercent", message: "maxEjectionPercent 150 is not from 0 to 100"},
		{name: "outlier minHealthPercent 150", yaml: trafficPolicyDR("{outlierDetection: {minHealthPercent: 150}}"),
			field: tp + ".outlierDetection.minHealthPercent", message: "minHealthPercent 150 is not from 0 to 100"},
		{name: "outlier interval 0s", yaml: trafficPolicyDR("{outlierDetection: {interval: 0s}}"),
			field: tp + ".outlierDetection.interval", message: "interval 0s is not more than 0"},
		{name: "outlier baseEjectionTime -5s", yaml: trafficPolicyDR("{outlierDetection: {baseEjectionTime: -5s}}"),
			field: tp + ".outlierDetection.baseEjectionTime", message: "baseEjectionTime -5s is not more than 0"},
		{name: "outlier baseEjectionTime 0s", yaml: trafficPolicyDR("{outlierDetection: {baseEjectionTime: 0s}}"),
			field: tp + ".outlierDetection.baseEjectionTime", message: "baseEjectionTime 0s is not more than 0"},
		{name: "portLevelSettings", yaml: trafficPolicyDR("{portLevelSettings: [{port: {number: 9080}, connectionPool: {tcp: {connectTimeout: 0s}}}]}"),
			field: tp + ".portLevelSettings[0].connectionPool.tcp.connectTimeout", message: "connectTimeout 0s is not more than 0"},
		{name: "subset", yaml: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings\n  subsets:\n" +
			"  - {name: v1, labels: {app: ratings}, trafficPolicy: {outlierDetection: {interval: 0s}}}\n",
			field: "spec.subsets[0].trafficPolicy.outlierDetection.interval", message: "interval 0s is not more than 0"},
		{name: "subset portLevelSettings", yaml: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings\n  subsets:\n" +
			"  - {name: v1, labels: {app: ratings}, trafficPolicy: {portLevelSettings: [{port: {number: 9080}, loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 4}}}}]}}\n",
			field: "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash.maglev.tableSize", message: "tableSize 4 is not a prime number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkValueCase(t, tc, true) })
	}
}

// What Istio leaves to defaults, or allows, stays valid.
func TestTrafficPolicyValuesAccepted(t *testing.T) {
	for _, tp := range []string{
		"{outlierDetection: {consecutive5xxErrors: 3}}",
		"{outlierDetection: {maxEjectionPercent: 0, minHealthPercent: 0}}",
		"{outlierDetection: {maxEjectionPercent: 100, minHealthPercent: 100, interval: 1ms, baseEjectionTime: 1ms}}",
		"{connectionPool: {tcp: {maxConnections: 10}}}",
		"{loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {}}}}",
		"{loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 5000011}}}}",
		"{loadBalancer: {consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 8388608}}}}",
	} {
		t.Run(tp, func(t *testing.T) {
			_, snap := buildValues(trafficPolicyDR(tp))
			if fs := validate.Findings(snap); len(fs) > 0 {
				t.Errorf("findings: %v", fs)
			}
			if p := proxyRefusals(snap); len(p) > 0 {
				t.Errorf("the proxies refuse it: %v", p)
			}
		})
	}
}

// A ServiceEntry port's targetPort is range-checked.
func TestServiceEntryTargetPortRefusedByProxy(t *testing.T) {
	checkValueCase(t, valueCase{
		yaml:  "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [ext.example.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http, targetPort: 70000}]\n  endpoints: [{address: 10.0.0.1}]\n",
		field: "spec.ports[0].targetPort", message: "targetPort 70000 is out of range; use 1-65535"}, false)
}

// Hosts are DNS names: the proxy (as Envoy) matches domains without case
// and refuses a route configuration with one domain in two virtual hosts,
// so a conflict is one whatever the case.
func TestHostConflictsIgnoreCase(t *testing.T) {
	const gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shop-gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n"
	gwVS := func(name, hosts string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name + "}\nspec:\n  hosts: " + hosts + "\n  gateways: [shop-gw]\n  http:\n  - route: [{destination: {host: reviews}}]\n---\n"
	}
	se := func(name, hosts string) string {
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + "}\nspec:\n  hosts: " + hosts + "\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n---\n"
	}
	cases := []valueCase{
		{name: "two VirtualServices on a gateway", yaml: gw + gwVS("shop-a", "[shop.example.com]") + gwVS("shop-b", "[Shop.example.com]"),
			field: "spec.hosts[0]", message: "host Shop.example.com on gateway default/shop-gw is already routed by VirtualService default/shop-a (mesh.yaml:"},
		{name: "one VirtualService on a gateway", yaml: gw + gwVS("shop", "[shop.example.com, Shop.example.com]"),
			field: "spec.hosts[1]", message: "host Shop.example.com is already in hosts as shop.example.com"},
		{name: "two ServiceEntries", yaml: se("api", "[api.example.com]") + se("api-upper", "[API.example.com]"),
			field: "spec.hosts[0]", message: "host API.example.com is already declared by ServiceEntry default/api (mesh.yaml:"},
		{name: "two ServiceEntries, the upper-case one first", yaml: se("api-upper", "[API.example.com]") + se("api", "[Api.Example.com]"),
			field: "spec.hosts[0]", message: "host Api.Example.com is already declared by ServiceEntry default/api-upper (mesh.yaml:"},
		{name: "one ServiceEntry", yaml: se("api", "[api.example.com, API.example.com]"),
			field: "spec.hosts[1]", message: "host API.example.com is already in hosts as api.example.com"},
		{name: "a ServiceEntry for a Workload's service", yaml: strings.Replace(se("ratings-upper", "[Ratings.default.svc.cluster.local]"), "number: 80", "number: 9080", 1),
			field: "spec.hosts[0]", message: "host Ratings.default.svc.cluster.local is already declared by Workload default/ratings (mesh.yaml:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkValueCase(t, tc, false) })
	}
}

// translateValues builds valuesMesh plus extra and returns the findings
// and the xDS content hashes for valuesProxies.
func translateValues(t *testing.T, extra string, capture bool) ([]model.Finding, []xdstranslate.Hashes) {
	t.Helper()
	_, snap := buildValues(extra)
	tr := xdstranslate.New(snap)
	var out []xdstranslate.Hashes
	for _, p := range valuesProxies() {
		p.Capture = capture && p.Type == xdstranslate.Sidecar
		res, err := tr.Translate(p.WithSnapshot(snap))
		if err != nil {
			t.Fatalf("translate: %v", err)
		}
		out = append(out, res.Hashes)
	}
	return validate.Findings(snap), out
}

// Istio fields Weft does not implement are reported, not silently
// ignored: each case has the resource with the field and without it, and
// where validation would report nothing, the xDS must differ.
func TestUnsupportedIstioFieldsReported(t *testing.T) {
	const tcpSvc = "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: db}\nspec:\n  ports: [{name: tcp, number: 5432}]\n---\n" +
		"apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {name: db2}\nspec:\n  ports: [{name: tcp, number: 5432}]\n---\n"
	sidecar := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n" + spec
	}
	const to = "    route: [{destination: {host: reviews}}]\n"
	const tp = "spec.trafficPolicy"
	cases := []struct {
		valueCase
		without string
		capture bool
	}{
		{valueCase{name: "Sidecar egress[].port",
			yaml:  sidecar("  egress:\n  - port: {number: 9999, protocol: HTTP, name: http-other}\n    hosts: [\"./*\"]\n"),
			field: "spec.egress[0].port", message: "port is not supported by Weft yet", severity: model.SeverityWarning},
			sidecar("  egress:\n  - hosts: [\"./*\"]\n"), false},
		{valueCase{name: "VirtualService tcp[].match[].destinationSubnets",
			yaml:  tcpSvc + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{destinationSubnets: [10.9.0.0/16]}]\n    route: [{destination: {host: db2}}]\n",
			field: "spec.tcp[0].match[0].destinationSubnets", message: "destinationSubnets is not supported by Weft yet"},
			tcpSvc + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - route: [{destination: {host: db2}}]\n", false},
		{valueCase{name: "VirtualService retries.retryOn with a misspelt condition",
			yaml:  routeVS("  - retries: {attempts: 3, retryOn: \"5xx,gateway-eror\"}\n" + to),
			field: "spec.http[0].retries.retryOn", message: `retryOn "gateway-eror" is not a retry condition (did you mean gateway-error?); use 5xx, gateway-error,`},
			routeVS("  - retries: {attempts: 3, retryOn: \"5xx\"}\n" + to), false},
		{valueCase{name: "VirtualService retries.retryOn with a status out of range",
			yaml:  routeVS("  - retries: {attempts: 3, retryOn: \"5xx,999\"}\n" + to),
			field: "spec.http[0].retries.retryOn", message: `retryOn "999" is not an HTTP status from 100 to 599`},
			routeVS("  - retries: {attempts: 3, retryOn: \"5xx\"}\n" + to), false},
		{valueCase{name: "VirtualService retries.retryRemoteLocalities",
			yaml:  routeVS("  - retries: {attempts: 3, retryRemoteLocalities: true}\n" + to),
			field: "spec.http[0].retries.retryRemoteLocalities", message: "retryRemoteLocalities is not supported by Weft yet", severity: model.SeverityWarning},
			routeVS("  - retries: {attempts: 3}\n" + to), false},
		{valueCase{name: "VirtualService redirect.redirectCode 304 (served as 301)",
			yaml:  routeVS("  - redirect: {uri: /x, redirectCode: 304}\n"),
			field: "spec.http[0].redirect.redirectCode", message: "redirectCode 304 is not supported; use 301 (the default), 302, 303, 307 or 308"},
			routeVS("  - redirect: {uri: /x}\n"), false},
		{valueCase{name: "DestinationRule tls.insecureSkipVerify",
			yaml:  trafficPolicyDR("{tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, insecureSkipVerify: true}}"),
			field: tp + ".tls.insecureSkipVerify", message: "insecureSkipVerify is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}}"), false},
		{valueCase{name: "DestinationRule connectionPool.http.h2UpgradePolicy",
			yaml:  trafficPolicyDR("{connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}"),
			field: tp + ".connectionPool.http.h2UpgradePolicy", message: "h2UpgradePolicy UPGRADE is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{connectionPool: {http: {}}}"), false},
		{valueCase{name: "DestinationRule connectionPool.http.useClientProtocol",
			yaml:  trafficPolicyDR("{portLevelSettings: [{port: {number: 9080}, connectionPool: {http: {useClientProtocol: true}}}]}"),
			field: tp + ".portLevelSettings[0].connectionPool.http.useClientProtocol", message: "useClientProtocol is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{portLevelSettings: [{port: {number: 9080}, connectionPool: {http: {}}}]}"), false},
		{valueCase{name: "DestinationRule loadBalancer.warmupDurationSecs",
			yaml:  trafficPolicyDR("{loadBalancer: {simple: LEAST_REQUEST, warmupDurationSecs: 60s}}"),
			field: tp + ".loadBalancer.warmupDurationSecs", message: "warmupDurationSecs is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{loadBalancer: {simple: LEAST_REQUEST}}"), false},
		{valueCase{name: "VirtualService tcp[].match[].sourceSubnet",
			yaml:  tcpSvc + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{sourceSubnet: 10.9.0.0/16}]\n    route: [{destination: {host: db2}}]\n",
			field: "spec.tcp[0].match[0].sourceSubnet", message: "sourceSubnet is not supported by Weft"},
			tcpSvc + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - route: [{destination: {host: db2}}]\n", false},
		{valueCase{name: "Gateway servers[].bind",
			yaml:  gatewayServers(`{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"], bind: 127.0.0.5}`),
			field: "spec.servers[0].bind", message: "bind is not supported by Weft yet"},
			gatewayServers(`{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}`), false},
		{valueCase{name: "Gateway servers[].tls.ecdhCurves",
			yaml:  gatewayServers(`{port: {number: 8443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH, ecdhCurves: [P-256]}}`),
			field: "spec.servers[0].tls.ecdhCurves", message: "ecdhCurves is not supported by Weft yet"},
			gatewayServers(`{port: {number: 8443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH}}`), false},
		{valueCase{name: "Gateway servers[].tls.alpnProtocols",
			yaml:  gatewayServers(`{port: {number: 8443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH, alpnProtocols: [h2]}}`),
			field: "spec.servers[0].tls.alpnProtocols", message: "alpnProtocols is ignored", severity: model.SeverityWarning},
			gatewayServers(`{port: {number: 8443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH}}`), false},
		{valueCase{name: "DestinationRule tls.credentialName (would be plaintext)",
			yaml:  trafficPolicyDR("{tls: {mode: SIMPLE, credentialName: reviews-ca}}"),
			field: tp + ".tls.credentialName", message: "credentialName is not supported: Weft reads TLS files"},
			trafficPolicyDR("{tls: {mode: SIMPLE}}"), false},
		{valueCase{name: "DestinationRule tls MUTUAL without a client certificate (would be plaintext)",
			yaml:  trafficPolicyDR("{tls: {mode: MUTUAL, caCertificates: /etc/ca.pem}}"),
			field: tp + ".tls", message: "mode MUTUAL needs clientCertificate and privateKey"},
			trafficPolicyDR("{tls: {mode: MUTUAL, caCertificates: /etc/ca.pem, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem}}"), false},
		{valueCase{name: "DestinationRule tls.caCrl",
			yaml:  trafficPolicyDR("{tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, caCrl: /etc/crl.pem}}"),
			field: tp + ".tls.caCrl", message: "caCrl is not supported by Weft yet: revoked server certificates would be accepted"},
			trafficPolicyDR("{tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}}"), false},
		{valueCase{name: "DestinationRule retryBudget",
			yaml:  trafficPolicyDR("{retryBudget: {percent: 20}}"),
			field: tp + ".retryBudget", message: "retryBudget is not supported by Weft yet"},
			trafficPolicyDR("{connectionPool: {http: {maxRetries: 3}}}"), false},
		{valueCase{name: "DestinationRule outlierDetectionHttpErrorCodes",
			yaml:  trafficPolicyDR("{outlierDetection: {consecutive5xxErrors: 3, outlierDetectionHttpErrorCodes: [429]}}"),
			field: tp + ".outlierDetection.outlierDetectionHttpErrorCodes", message: "outlierDetectionHttpErrorCodes is not supported by Weft yet"},
			trafficPolicyDR("{outlierDetection: {consecutive5xxErrors: 3}}"), false},
		{valueCase{name: "DestinationRule connectionPool.http.http2KeepAlive",
			yaml:  trafficPolicyDR("{connectionPool: {http: {http2KeepAlive: {interval: 10s, timeout: 3s}}}}"),
			field: tp + ".connectionPool.http.http2KeepAlive", message: "http2KeepAlive is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{connectionPool: {http: {}}}"), false},
		{valueCase{name: "DestinationRule consistentHash.httpCookie.attributes",
			yaml:  trafficPolicyDR("{loadBalancer: {consistentHash: {httpCookie: {name: s, ttl: 60s, attributes: [{name: SameSite, value: Strict}]}}}}"),
			field: tp + ".loadBalancer.consistentHash.httpCookie.attributes", message: "httpCookie.attributes is not supported by Weft yet", severity: model.SeverityWarning},
			trafficPolicyDR("{loadBalancer: {consistentHash: {httpCookie: {name: s, ttl: 60s}}}}"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkValueCase(t, tc.valueCase, false)
			// The method: without the finding, the field would be ignored.
			_, with := translateValues(t, tc.yaml, tc.capture)
			_, without := translateValues(t, tc.without, tc.capture)
			if tc.severity == model.SeverityWarning && !slices.Equal(with, without) {
				t.Errorf("the field changes the xDS: Weft implements it, the warning is wrong")
			}
		})
	}
}

// The method above tells a field that is read from one that is not.
func TestIgnoredFieldCheckSeesReadFields(t *testing.T) {
	const to = "    route: [{destination: {host: reviews}}]\n"
	_, a := translateValues(t, routeVS("  - retries: {attempts: 3, retryOn: \"5xx\"}\n"+to), false)
	_, b := translateValues(t, routeVS("  - retries: {attempts: 3, retryOn: \"5xx,gateway-error\"}\n"+to), false)
	if a[0] == b[0] {
		t.Fatalf("a read field gives the same hashes")
	}
}

// Every retryOn condition the translation knows is valid.
func TestRetryOnConditionsValid(t *testing.T) {
	const to = "    route: [{destination: {host: reviews}}]\n"
	on := "5xx,gateway-error,reset,reset-before-request,connect-failure,envoy-ratelimited,retriable-4xx,refused-stream," +
		"retriable-status-codes,retriable-headers,http3-post-connect-failure,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable,503,GATEWAY_ERROR, 5xx"
	_, snap := buildValues(routeVS("  - retries: {attempts: 3, retryOn: \"" + on + "\"}\n" + to))
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Errorf("findings: %v", fs)
	}
	if p := proxyRefusals(snap); len(p) > 0 {
		t.Errorf("the proxies refuse it: %v", p)
	}
}

// redirect.derivePort FROM_REQUEST_PORT redirects to the port of the
// route configuration, as Istio does: the service port for a sidecar, the
// server port for a gateway.
func TestRedirectDerivePort(t *testing.T) {
	const gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shop-gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n"
	vs := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  gateways: [shop-gw, mesh]\n  http:\n" +
		"  - redirect: {uri: /v2, derivePort: FROM_REQUEST_PORT}\n"
	_, snap := buildValues(gw + vs)
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Fatalf("findings: %v", fs)
	}
	tr := xdstranslate.New(snap)
	got := map[string]uint32{}
	for _, p := range valuesProxies() {
		res, err := tr.Translate(p.WithSnapshot(snap))
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range res.Routes {
			if _, err := proxyconfig.ParseRouteConfig(rc); err != nil {
				t.Errorf("proxy NACKs route: %v", err)
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					if rd, ok := r.GetAction().(*route.Route_Redirect); ok {
						got[string(p.Type)+" "+rc.GetName()] = rd.Redirect.GetPortRedirect()
					}
				}
			}
		}
	}
	want := map[string]uint32{"sidecar 9080": 9080, "gateway http.8080": 8080}
	if !maps.Equal(got, want) {
		t.Errorf("port_redirect by proxy and route configuration = %v, want %v", got, want)
	}
}

// retryIgnorePreviousHosts: false lets a retry go back to a host already
// tried (no previous_hosts predicate); unset or true keeps the predicate.
func TestRetryIgnorePreviousHosts(t *testing.T) {
	const to = "    route: [{destination: {host: reviews}}]\n"
	for _, tc := range []struct {
		set  string
		want bool
	}{{"", true}, {", retryIgnorePreviousHosts: true", true}, {", retryIgnorePreviousHosts: false", false}} {
		_, snap := buildValues(routeVS("  - retries: {attempts: 3" + tc.set + "}\n" + to))
		if fs := validate.Findings(snap); len(fs) > 0 {
			t.Fatalf("%q: findings: %v", tc.set, fs)
		}
		res, err := xdstranslate.Translate(snap, valuesProxies()[0].WithSnapshot(snap))
		if err != nil {
			t.Fatal(err)
		}
		var rp *route.RetryPolicy
		for _, rc := range res.Routes {
			for _, vh := range rc.GetVirtualHosts() {
				if strings.HasPrefix(vh.GetName(), "reviews.") {
					rp = vh.GetRoutes()[0].GetRoute().GetRetryPolicy()
				}
			}
		}
		if rp == nil {
			t.Fatalf("%q: no retry policy on the reviews route", tc.set)
		}
		if got := len(rp.GetRetryHostPredicate()) > 0; got != tc.want {
			t.Errorf("%q: previous_hosts predicate %v, want %v", tc.set, got, tc.want)
		}
		r, err := proxyconfig.ParseRouteConfig(res.Routes[0])
		if err != nil || r == nil {
			t.Errorf("%q: the proxy refuses the route: %v", tc.set, err)
		}
	}
}

// A route's name is its http entry's name, then its match's, as Istio
// names it ("reviews-v2.jason"); access logs and taps show it.
func TestRouteNamesWithMatchNames(t *testing.T) {
	_, snap := buildValues(routeVS("  - name: reviews-v2\n    match: [{name: jason, headers: {end-user: {exact: jason}}}, {uri: {prefix: /v2}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n"))
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Fatalf("findings: %v", fs)
	}
	res, err := xdstranslate.Translate(snap, valuesProxies()[0].WithSnapshot(snap))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			if strings.HasPrefix(vh.GetName(), "reviews.") {
				for _, r := range vh.GetRoutes() {
					got = append(got, r.GetName())
				}
			}
		}
	}
	if want := []string{"reviews-v2.jason", "reviews-v2"}; !slices.Equal(got, want) {
		t.Errorf("route names %v, want %v", got, want)
	}
}
