package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// testCA is a real Weft CA serving CSRs on loopback.
type testCA struct {
	a      *ca.Authority
	tokens *ca.Tokens
	addr   string
}

func startCA(t testing.TB, leafTTL time.Duration) *testCA {
	t.Helper()
	a, err := ca.New(ca.Options{Dir: t.TempDir(), LeafTTL: leafTTL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tokens := ca.NewTokens()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig())))
	caapi.Register(srv, ca.NewService(a, tokens))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return &testCA{a: a, tokens: tokens, addr: ln.Addr().String()}
}

// proxyOptions gives a proxy of the service account sa its credential.
func (c *testCA) proxyOptions(t testing.TB, instance, sa string) proxytest.ProxyOptions {
	t.Helper()
	id := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa}
	tok, err := c.tokens.Issue(instance+".default", id)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), instance+".token")
	if err := os.WriteFile(f, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return proxytest.ProxyOptions{Workload: instance, ServiceAccount: sa, CAAddr: c.addr, CARootFile: c.a.TrustBundleFile(), BootstrapTokenFile: f}
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
}

func meshValidation(sans ...string) *tlsv3.CommonTlsContext_CombinedValidationContext {
	vc := &tlsv3.CertificateValidationContext{}
	for _, s := range sans {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		})
	}
	return &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
		DefaultValidationContext: vc, ValidationContextSdsSecretConfig: sds("ROOTCA"),
	}}
}

// withAutoMTLS gives a cluster Weft's auto mTLS transport socket matches.
func withAutoMTLS(c *clusterv3.Cluster, sans ...string) *clusterv3.Cluster {
	up := &tlsv3.UpstreamTlsContext{Sni: "outbound_.9080_._.reviews.default.svc.cluster.local", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
		ValidationContextType:          meshValidation(sans...),
	}}
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: proxytest.MustAny(up)}}},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: proxytest.MustAny(&rawbufferv3.RawBuffer{})}}},
	}
	return c
}

// sidecarCLA is a load assignment whose endpoints have a sidecar.
func sidecarCLA(name string, addrs ...string) proto.Message {
	cla := proxytest.CLA(name, addrs...)
	for _, le := range cla.Endpoints[0].LbEndpoints {
		le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
		}}
	}
	return cla
}

// inboundMTLS builds an HTTP inbound listener for port 9080 in a
// PeerAuthentication mode ("STRICT", "PERMISSIVE", "DISABLE"), as Weft's
// control plane does, and its cluster to appAddr.
func inboundMTLS(mode, appAddr string) []proto.Message {
	msgs := proxytest.Inbound(9080, appAddr, true)
	l := msgs[0].(*listenerv3.Listener)
	msgs[1] = proxytest.WithService(msgs[1].(*clusterv3.Cluster), "reviews.default.svc.cluster.local", 9080)
	if mode == "DISABLE" {
		return msgs
	}
	plain := l.FilterChains[0]
	dn := &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
		ValidationContextType:          meshValidation(),
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}}
	secure := &listenerv3.FilterChain{Name: "mtls", FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"}, Filters: plain.Filters,
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: proxytest.MustAny(dn)}}}
	l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
	if mode == "STRICT" {
		l.FilterChains = []*listenerv3.FilterChain{secure}
		return msgs
	}
	raw := proto.Clone(plain).(*listenerv3.FilterChain)
	raw.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
	l.FilterChains = []*listenerv3.FilterChain{secure, raw}
	return msgs
}

const (
	reviewsID     = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
	productpageID = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
	reviewsHost   = "reviews.default.svc.cluster.local"
	reviewsOut    = "outbound|9080||reviews.default.svc.cluster.local"
)

// meshPair is a client sidecar (productpage) and a server sidecar
// (reviews) with workload certificates from one CA, and reviews' app.
type meshPair struct {
	cp             *proxytest.ControlPlane
	client, server *proxytest.Proxy
	inbound        string // the server sidecar's inbound address
	ca             *testCA
}

// startMeshPair starts the pair; mode is the server's PeerAuthentication
// mode and cluster builds the client's cluster to reviews.
func startMeshPair(t *testing.T, leafTTL time.Duration, mode string, cluster func(*clusterv3.Cluster) *clusterv3.Cluster) *meshPair {
	t.Helper()
	return startMeshPairApp(t, leafTTL, mode, cluster, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reviews ok") })
}

// startMeshPairApp is startMeshPair with h as the reviews app.
func startMeshPairApp(t *testing.T, leafTTL time.Duration, mode string, cluster func(*clusterv3.Cluster) *clusterv3.Cluster, h http.HandlerFunc) *meshPair {
	t.Helper()
	app := httptest.NewServer(h)
	t.Cleanup(app.Close)
	c := startCA(t, leafTTL)
	cp := proxytest.StartControlPlane(t)
	server := proxytest.StartProxy(t, cp, "reviews-v1-0", c.proxyOptions(t, "reviews-v1-0", "bookinfo-reviews"))
	cp.Set(t, server.NodeID(), inboundMTLS(mode, app.Listener.Addr().String())...)
	server.WaitReady(t)
	inbound := server.ListenerAddr(t, xdsmeta.InboundListenerName(9080))
	client := proxytest.StartProxy(t, cp, "productpage-v1-0", c.proxyOptions(t, "productpage-v1-0", "bookinfo-productpage"))
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 9080, Filter: proxytest.HCMRDS("9080")}),
		proxytest.RouteConfig("9080", proxytest.VirtualHost(reviewsHost+":9080", []string{"reviews", "reviews:9080"}, proxytest.PrefixRoute("/", reviewsOut))),
		cluster(proxytest.EDSCluster(reviewsOut, clusterv3.Cluster_ROUND_ROBIN)),
		sidecarCLA(reviewsOut, inbound),
	)
	client.WaitReady(t)
	return &meshPair{cp: cp, client: client, server: server, inbound: inbound, ca: c}
}

func mtlsGet(t *testing.T, c *http.Client, u string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func mustGet200(t *testing.T, c *http.Client, u string) {
	t.Helper()
	code, body, err := mtlsGet(t, c, u)
	if err != nil || code != 200 || body != "reviews ok" {
		t.Fatalf("GET %s = %d %q %v", u, code, body, err)
	}
}

// promLine reports whether the proxy's metrics have a series of name
// whose labels include every one of labels.
func promLine(t *testing.T, p *proxytest.Proxy, name string, labels ...string) bool {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestMTLSStrict: the client sidecar originates mTLS with its SVID, the
// server sidecar (STRICT) verifies it and reports the client's principal;
// a plaintext client and a client whose certificate comes from another
// root are refused.
func TestMTLSStrict(t *testing.T) {
	m := startMeshPair(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster { return withAutoMTLS(c, reviewsID) })
	mustGet200(t, m.client.HTTPClient(t), "http://reviews:9080/")

	if !promLine(t, m.server, "istio_requests_total", `reporter="destination"`, `source_principal="`+productpageID+`"`,
		`destination_principal="`+reviewsID+`"`, `connection_security_policy="mutual_tls"`, `response_code="200"`) {
		t.Errorf("server metrics lack the mTLS series")
	}
	if !promLine(t, m.client, "istio_requests_total", `reporter="source"`, `source_principal="`+productpageID+`"`, `destination_principal="`+reviewsID+`"`) {
		t.Errorf("client metrics lack the principals")
	}

	// Plaintext straight to the inbound port is refused.
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if code, body, err := mtlsGet(t, plain, "http://"+m.inbound+"/"); err == nil {
		t.Errorf("plaintext under STRICT: %d %q, want the connection refused", code, body)
	}

	// A certificate from another root is refused.
	other := otherRootClient(t, "spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
	if code, body, err := mtlsGet(t, other, "https://"+m.inbound+"/"); err == nil {
		t.Errorf("client with a foreign root: %d %q, want the handshake refused", code, body)
	}
	// TLS without a client certificate is refused.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, body, err := mtlsGet(t, noCert, "https://"+m.inbound+"/"); err == nil {
		t.Errorf("TLS client without a certificate: %d %q, want the handshake refused", code, body)
	}
}

// TestMTLSWrongServerIdentity: the client refuses a server whose SPIFFE
// ID is not the one the control plane expects for the endpoint.
func TestMTLSWrongServerIdentity(t *testing.T) {
	m := startMeshPair(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster {
		return withAutoMTLS(c, "spiffe://cluster.local/ns/default/sa/someone-else")
	})
	code, _, err := mtlsGet(t, m.client.HTTPClient(t), "http://reviews:9080/")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("GET = %d %v, want 503 (upstream connect failure)", code, err)
	}
}

// TestMTLSPermissive: one port serves mTLS from a sidecar and plaintext
// from a client without one.
func TestMTLSPermissive(t *testing.T) {
	m := startMeshPair(t, time.Hour, "PERMISSIVE", func(c *clusterv3.Cluster) *clusterv3.Cluster { return withAutoMTLS(c, reviewsID) })
	mustGet200(t, m.client.HTTPClient(t), "http://reviews:9080/")
	plain := &http.Client{Timeout: 5 * time.Second}
	mustGet200(t, plain, "http://"+m.inbound+"/")
	if !promLine(t, m.server, "istio_requests_total", `source_principal="`+productpageID+`"`, `connection_security_policy="mutual_tls"`) {
		t.Errorf("server metrics lack the mTLS request")
	}
	if !promLine(t, m.server, "istio_requests_total", `source_principal="unknown"`, `connection_security_policy="none"`) {
		t.Errorf("server metrics lack the plaintext request")
	}
}

// TestMTLSDestinationRuleDisable: a cluster without a transport socket
// (DestinationRule tls.mode DISABLE) sends plaintext even to a sidecar.
func TestMTLSDestinationRuleDisable(t *testing.T) {
	m := startMeshPair(t, time.Hour, "PERMISSIVE", func(c *clusterv3.Cluster) *clusterv3.Cluster { return c })
	mustGet200(t, m.client.HTTPClient(t), "http://reviews:9080/")
	if !promLine(t, m.server, "istio_requests_total", `source_principal="unknown"`, `connection_security_policy="none"`, `response_code="200"`) {
		t.Errorf("server metrics: want a plaintext request")
	}
	if promLine(t, m.server, "istio_requests_total", `connection_security_policy="mutual_tls"`) {
		t.Errorf("server metrics: an mTLS request with tls mode DISABLE")
	}
}

// TestMTLSRotationUnderLoad: leaves that live 4 s are renewed every 2-3 s
// on both sides while requests flow without pause; none fails.
func TestMTLSRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	m := startMeshPair(t, 4*time.Second, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster { return withAutoMTLS(c, reviewsID) })
	client := m.client.HTTPClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	startC, startS := m.client.Identity().Renewals(), m.server.Identity().Renewals()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				// Fresh connections now and then, so new handshakes
				// happen while leaves rotate.
				u := "http://reviews:9080/"
				if i%2 == 1 {
					u += "?close"
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				req.Close = i%2 == 1
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if err == nil {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}(i)
	}
	proxytest.Eventually(t, 25*time.Second, "three renewals on each side", func() bool {
		return m.client.Identity().Renewals()-startC >= 3 && m.server.Identity().Renewals()-startS >= 3
	})
	cancel()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed (first: %v), %d succeeded", failed.Load(), firstErr.Load(), ok.Load())
	}
	t.Logf("%d requests, renewals client %d server %d", ok.Load(), m.client.Identity().Renewals()-startC, m.server.Identity().Renewals()-startS)
}

// otherRootClient is an HTTPS client with a certificate for id from a
// root the mesh does not trust.
func otherRootClient(t *testing.T, id string) *http.Client {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, rootCert, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// TestMTLSHTTP2: a cluster that speaks HTTP/2 upstream negotiates h2 by
// ALPN over the sidecars' mTLS.
func TestMTLSHTTP2(t *testing.T) {
	m := startMeshPair(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster { return proxytest.HTTP2(withAutoMTLS(c, reviewsID)) })
	mustGet200(t, m.client.HTTPClient(t), "http://reviews:9080/")
	if !promLine(t, m.server, "istio_requests_total", `source_principal="`+productpageID+`"`, `connection_security_policy="mutual_tls"`) {
		t.Errorf("server metrics lack the mTLS request")
	}
}

// meshClient is an HTTP client with a workload certificate for id signed
// by c's CA, as a mesh peer (a gateway, another sidecar) has.
func meshClient(t *testing.T, c *testCA, id string) *http.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := spiffeid.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.a.Sign(ca.Caller{ID: sid, Instance: "test-client"}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key}
	for rest := iss.ChainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// TestForwardedProtoFromMeshPeers: a request that a mesh peer sends over
// mTLS to a sidecar's inbound keeps its X-Forwarded-Proto (a gateway that
// terminated HTTPS says https), as Istio's sidecars keep it.
func TestForwardedProtoFromMeshPeers(t *testing.T) {
	m := startMeshPairApp(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster { return withAutoMTLS(c, reviewsID) },
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("X-Forwarded-Proto")) })
	req, _ := http.NewRequest("GET", "https://"+m.inbound+"/", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := meshClient(t, m.ca, productpageID).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "https" {
		t.Errorf("the app got %d X-Forwarded-Proto %q from a mesh peer's request; want https", resp.StatusCode, b)
	}
}

// TestMTLSServiceEntrySubjectAltNames: a ServiceEntry's subjectAltNames,
// translated by the control plane into an ISTIO_MUTUAL cluster, decide
// which server identities the client sidecar accepts in a real handshake.
func TestMTLSServiceEntrySubjectAltNames(t *testing.T) {
	for _, tc := range []struct {
		sans string
		want int
	}{
		{`["spiffe://cluster.local/ns/vms/sa/other", "` + reviewsID + `"]`, http.StatusOK},
		{`["spiffe://cluster.local/ns/vms/sa/other", "reviews.example.com"]`, http.StatusServiceUnavailable},
	} {
		t.Run(tc.sans, func(t *testing.T) {
			snap := meshModel(t, "se.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{name: http, number: 9080, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
  subjectAltNames: `+tc.sans+`
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`)
			res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{Type: xdstranslate.Sidecar, Namespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			var socket *corev3.TransportSocket
			for _, c := range res.Clusters {
				if c.GetName() == "outbound|9080||reviews.default.svc.cluster.local" {
					socket = c.GetTransportSocket()
				}
			}
			if socket == nil {
				t.Fatal("the translated cluster has no transport socket")
			}
			m := startMeshPair(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster {
				c.TransportSocket = socket
				return c
			})
			code, _, err := mtlsGet(t, m.client.HTTPClient(t), "http://reviews:9080/")
			if err != nil || code != tc.want {
				t.Fatalf("GET = %d %v; want %d", code, err, tc.want)
			}
		})
	}
}
