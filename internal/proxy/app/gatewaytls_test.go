package app_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/testcerts"
)

// TestGatewayHTTPS runs a gateway proxy whose config is Weft's real
// translation of a Gateway with two HTTPS servers on one port: SIMPLE for
// shop.example.com and MUTUAL for *.secure.example.com, and a TLS server
// in mode PASSTHROUGH beside them. The TLS server name picks the server
// and its certificate; MUTUAL refuses clients without a certificate from
// its CA; a request is routed only among the hosts of the server its
// connection reached; the backend sees X-Forwarded-Proto https; a
// certificate renewed in place is served to new connections.
func TestGatewayHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir)
	shopCert, shopKey := ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	secCert, secKey := ca.Issue(t, dir, "secure", testcerts.Leaf{DNSNames: []string{"*.secure.example.com"}})
	clientCert, clientKey := ca.Issue(t, dir, "client", testcerts.Leaf{DNSNames: []string{"client.example.com"}, Client: true})
	otherCA := testcerts.NewCA(t, t.TempDir())
	strangerCert, strangerKey := otherCA.Issue(t, t.TempDir(), "stranger", testcerts.Leaf{DNSNames: []string{"stranger"}, Client: true})

	load := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The PASSTHROUGH destination: a TLS server with its own certificate,
	// which the gateway never holds.
	passCert, passKey := ca.Issue(t, dir, "pass", testcerts.Leaf{DNSNames: []string{"pass.example.com"}})
	passBackend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pass backend host=%s", r.Host)
	}))
	passBackend.TLS = &tls.Config{Certificates: []tls.Certificate{load(passCert, passKey)}}
	passBackend.StartTLS()
	t.Cleanup(passBackend.Close)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend host=%s proto=%s", r.Host, r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(backend.Close)
	yaml := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-shop, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: ` + shopCert + `, privateKey: ` + shopKey + `, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]}
  - port: {number: 8443, name: https-secure, protocol: HTTPS}
    hosts: ["*.secure.example.com"]
    tls: {mode: MUTUAL, serverCertificate: ` + secCert + `, privateKey: ` + secKey + `, caCertificates: ` + ca.File + `, minProtocolVersion: TLSV1_3}
  - port: {number: 8443, name: tls-pass, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [shop.example.com, "*.secure.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8080, name: http-open, protocol: HTTP}
    hosts: [open.example.com, plain.secure.example.com]
---
` + serviceEntryYAML("shop", serverPort(backend)) + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com, api.secure.example.com, open.example.com, plain.secure.example.com]
  gateways: [gw]
  http:
  - match: [{scheme: {exact: https}, uri: {prefix: /scheme}}]
    route: [{destination: {host: shop.default.svc.cluster.local}}]
    headers: {response: {set: {x-scheme: matched-https}}}
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /new}
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example.com]
  location: MESH_EXTERNAL
  ports: [{name: tls, number: 443, protocol: TLS}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {tls: ` + serverPort(passBackend) + `}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example.com]
  gateways: [gw]
  tls:
  - match: [{sniHosts: [pass.example.com], port: 8443}]
    route: [{destination: {host: pass.example.com, port: {number: 443}}}]
`
	gw := startGateway(t, meshModel(t, filepath.Join(dir, "gateway.yaml"), yaml))
	addr := gw.ListenerAddr(t, "0.0.0.0_8443")

	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	// get sends GET https://host/ to the gateway with TLS server name sni.
	get := func(sni, host string, h2 bool, certs ...tls.Certificate) (*http.Response, string, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool, ServerName: sni, Certificates: certs},
			ForceAttemptHTTP2: h2,
		}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + host + "/")
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}

	// served checks an answer of 200 with body, on a connection whose
	// server presented a certificate for certName alone.
	served := func(t *testing.T, resp *http.Response, body string, err error, want, certName string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || body != want {
			t.Errorf("%d %q; want 200 %q", resp.StatusCode, body, want)
		}
		if n := resp.TLS.PeerCertificates[0].DNSNames; len(n) != 1 || n[0] != certName {
			t.Errorf("the client saw a certificate for %v; want one for %s", n, certName)
		}
	}

	t.Run("SIMPLE, HTTP/1.1 and HTTP/2", func(t *testing.T) {
		for _, h2 := range []bool{false, true} {
			resp, body, err := get("shop.example.com", "shop.example.com", h2)
			served(t, resp, body, err, "backend host=shop.example.com proto=https", "shop.example.com")
			if want := 1 + btoi(h2); resp.ProtoMajor != want {
				t.Errorf("h2=%v: served over HTTP/%d", h2, resp.ProtoMajor)
			}
		}
	})
	// shop is a client of the SIMPLE server that does not follow redirects.
	shop := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     dial,
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "shop.example.com"},
	}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer shop.CloseIdleConnections()
	t.Run("scheme match", func(t *testing.T) {
		// A route matching scheme https takes requests over the HTTPS
		// server, not those over plaintext HTTP.
		resp, err := shop.Get("https://shop.example.com/scheme")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Scheme"); got != "matched-https" {
			t.Errorf("https://shop.example.com/scheme: x-scheme %q, want the https route's", got)
		}
		req, _ := http.NewRequest("GET", "http://"+gw.ListenerAddr(t, "0.0.0.0_8080")+"/scheme", nil)
		req.Host = "open.example.com"
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Scheme"); resp.StatusCode != 200 || got != "" {
			t.Errorf("http://open.example.com/scheme: %d, x-scheme %q; want 200 from the catch-all route", resp.StatusCode, got)
		}
	})
	t.Run("redirect keeps the scheme", func(t *testing.T) {
		// Envoy's redirect without scheme_redirect keeps the
		// request's :scheme, so over the HTTPS server it stays https.
		resp, err := shop.Get("https://shop.example.com/moved")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != "https://shop.example.com/new" {
			t.Errorf("https://shop.example.com/moved: %d Location %q, want https://shop.example.com/new", resp.StatusCode, got)
		}
	})
	t.Run("MUTUAL", func(t *testing.T) {
		if _, _, err := get("api.secure.example.com", "api.secure.example.com", false); err == nil {
			t.Error("a client without a certificate was served")
		}
		if _, _, err := get("api.secure.example.com", "api.secure.example.com", false, load(strangerCert, strangerKey)); err == nil {
			t.Error("a client with a certificate of another CA was served")
		}
		resp, body, err := get("api.secure.example.com", "api.secure.example.com", false, load(clientCert, clientKey))
		served(t, resp, body, err, "backend host=api.secure.example.com proto=https", "*.secure.example.com")
	})
	t.Run("a server routes only its own hosts", func(t *testing.T) {
		// TLS to the SIMPLE server, then a Host of the MUTUAL one: 421
		// Misdirected Request, or MUTUAL would be bypassed.
		resp, body, err := get("shop.example.com", "api.secure.example.com", false)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("a request for the MUTUAL server's host on the SIMPLE server's connection got %d %q; want 421", resp.StatusCode, body)
		}
	})
	t.Run("unknown server name and plaintext are refused", func(t *testing.T) {
		if _, _, err := get("other.example.com", "other.example.com", false); err == nil {
			t.Error("a server name of no server was served")
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("plaintext on the HTTPS port got %q", b)
		}
	})
	t.Run("TLS versions and cipher suites", func(t *testing.T) {
		handshake := func(sni string, cfg *tls.Config) error {
			cfg.RootCAs, cfg.ServerName = ca.Pool, sni
			c, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				c.Close()
			}
			return err
		}
		client := load(clientCert, clientKey)
		if err := handshake("api.secure.example.com", &tls.Config{Certificates: []tls.Certificate{client}, MaxVersion: tls.VersionTLS12}); err == nil {
			t.Error("TLS 1.2 was served where minProtocolVersion is TLSV1_3")
		}
		if err := handshake("api.secure.example.com", &tls.Config{Certificates: []tls.Certificate{client}}); err != nil {
			t.Errorf("TLS 1.3 to a TLSV1_3 server: %v", err)
		}
		aes128 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		if err := handshake("shop.example.com", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: aes128}); err == nil {
			t.Error("a TLS 1.2 suite outside the server's cipherSuites was served")
		}
		aes256 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		if err := handshake("shop.example.com", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: aes256}); err != nil {
			t.Errorf("TLS 1.2 with the server's cipher suite: %v", err)
		}
	})
	t.Run("PASSTHROUGH beside terminated servers", func(t *testing.T) {
		// The same port: pass.example.com's TLS goes through to its
		// backend, which presents its own certificate.
		resp, body, err := get("pass.example.com", "pass.example.com", false)
		served(t, resp, body, err, "pass backend host=pass.example.com", "pass.example.com") // the backend's own
	})
	t.Run("httpsRedirect", func(t *testing.T) {
		// The HTTP port redirects its httpsRedirect server's hosts to
		// https, path and query kept, routed or not; its other server's
		// host is served.
		plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		base := "http://" + gw.ListenerAddr(t, "0.0.0.0_8080")
		for host, want := range map[string]string{
			"shop.example.com":         "https://shop.example.com/a/b?c=d",
			"other.secure.example.com": "https://other.secure.example.com/a/b?c=d",
		} {
			req, _ := http.NewRequest("GET", base+"/a/b?c=d", nil)
			req.Host = host
			resp, err := plain.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
				t.Errorf("Host %s: %d Location %q; want 301 %q", host, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
		// Hosts of the other server are served, also one that the
		// redirecting server's wildcard covers but this server names.
		for _, host := range []string{"open.example.com", "plain.secure.example.com"} {
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.Host = host
			resp, err := plain.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "backend host="+host+" proto=http" {
				t.Errorf("%s over HTTP: %d %q", host, resp.StatusCode, b)
			}
		}
	})
	t.Run("a certificate renewed in place", func(t *testing.T) {
		// Issue a new certificate over the old files; new connections get
		// it once the gateway's check (every second) has seen the change.
		renewed := testcerts.Leaf{DNSNames: []string{"shop.example.com", "renewed.shop.example.com"}}
		ca.Issue(t, dir, "shop", renewed)
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, _, err := get("shop.example.com", "shop.example.com", false)
			if err != nil {
				t.Fatal(err)
			}
			if n := resp.TLS.PeerCertificates[0].DNSNames; len(n) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the gateway still presents the old certificate 10s after it was renewed")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Run("MUTUAL's CA renewed in place", func(t *testing.T) {
		// A new CA written over caCertificates: clients with its
		// certificates are served once the gateway has seen the change.
		newCA := testcerts.NewCA(t, t.TempDir())
		nc, nk := newCA.Issue(t, t.TempDir(), "client2", testcerts.Leaf{DNSNames: []string{"client2.example.com"}, Client: true})
		pemBytes, err := os.ReadFile(newCA.File)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ca.File, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, _, err := get("api.secure.example.com", "api.secure.example.com", false, load(nc, nk))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a client of the renewed CA is still refused 10s later: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, _, err := get("api.secure.example.com", "api.secure.example.com", false, load(clientCert, clientKey)); err == nil {
			t.Error("a client of the replaced CA is still served")
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestGatewayTLSChangeEndsConnections: when a server's TLS settings
// change, a request on a connection made under the old ones gets 421 and
// the connection ends (HTTP/2: GOAWAY), so the client's next request
// opens a connection under the new settings and is served.
func TestGatewayTLSChangeEndsConnections(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir)
	cert, key := ca.Issue(t, dir, "shop", testcerts.Leaf{DNSNames: []string{"shop.example.com"}})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	config := func(extra string) *model.Snapshot {
		return meshModel(t, "gw.yaml", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: `+cert+`, privateKey: `+key+extra+`}
---
`+serviceEntryYAML("shop", serverPort(backend))+`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: shop.default.svc.cluster.local}}]
`)
	}
	gw, push := startGatewayCP(t, config(""))
	addr := gw.ListenerAddr(t, "0.0.0.0_8443")
	var dials atomic.Int32
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool, ServerName: "shop.example.com"},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	get := func() int {
		resp, err := client.Get("https://shop.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("served over HTTP/%d; want HTTP/2", resp.ProtoMajor)
		}
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("before the change: %d", code)
	}
	push(config(", minProtocolVersion: TLSV1_2"))
	// The gateway applies the change: the kept connection's next request
	// gets 421, once.
	deadline := time.Now().Add(10 * time.Second)
	for get() == 200 {
		if time.Now().After(deadline) {
			t.Fatal("the change never reached the kept connection")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 5 {
		if code := get(); code != 200 {
			t.Fatalf("request %d after the 421: %d; want 200 on a new connection", i, code)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d connections made; want 2 (one before the change, one after)", n)
	}
}
