package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// A peer proxy chain is two processes of the same proxy: hop A (where the
// load is sent) forwards to hop B, which forwards to the fortio server.
// Both keep upstream connections alive and log no requests; with tls,
// hop B serves TLS and hop A speaks TLS to it (the peer counterpart of
// sidecar-to-sidecar mTLS; hop A does not present a client certificate).

// peerKinds are the peers the harness knows, in table order.
var peerKinds = []string{"nginx", "haproxy", "caddy"}

// writeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1
// (cert.pem, key.pem, and both in one file, combined.pem, for HAProxy).
func writeCert(dir string) (cert, key, combined string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "weft-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return
	}
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, key, combined = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "combined.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{{cert, cp}, {key, kp}, {combined, append(append([]byte{}, cp...), kp...)}} {
		if err = os.WriteFile(f.path, f.data, 0o600); err != nil {
			return
		}
	}
	return
}

// hopConfig is one hop of a peer chain.
type hopConfig struct {
	dir      string // private folder of this process
	listen   int    // port it serves on
	next     int    // port it forwards to
	tlsIn    bool   // serve TLS
	tlsOut   bool   // speak TLS to next
	cert     string
	key      string
	combined string
	threads  int // worker processes (nginx) or threads (HAProxy)
}

// nginxConfig: h.threads workers (the sidecars run on as many Ps), an
// upstream pool with keep-alive, HTTP/1.1 upstream, no access log.
func nginxConfig(h hopConfig) string {
	listen := fmt.Sprintf("listen 127.0.0.1:%d", h.listen)
	tlsIn := ""
	if h.tlsIn {
		listen += " ssl"
		tlsIn = fmt.Sprintf("ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_session_cache shared:tls:1m;\n", h.cert, h.key)
	}
	scheme, tlsOut := "http", ""
	if h.tlsOut {
		scheme = "https"
		tlsOut = "proxy_ssl_session_reuse on;\n      proxy_ssl_verify off;\n"
	}
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes %[7]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  upstream next { server 127.0.0.1:%[2]d; keepalive 128; keepalive_requests 1000000; }
  server {
    %[3]s;
    %[4]s
    location / {
      proxy_pass %[5]s://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      %[6]s
    }
  }
}
`, h.dir, h.next, listen, tlsIn, scheme, tlsOut, h.threads)
}

// haproxyConfig: h.threads threads, keep-alive both sides with connection
// reuse, no logging.
func haproxyConfig(h hopConfig) string {
	bind := fmt.Sprintf("bind 127.0.0.1:%d", h.listen)
	if h.tlsIn {
		bind += " ssl crt " + h.combined
	}
	server := fmt.Sprintf("server next 127.0.0.1:%d", h.next)
	if h.tlsOut {
		server += " ssl verify none"
	}
	return fmt.Sprintf(`global
  nbthread %d
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always
frontend in
  %s
  default_backend next
backend next
  %s
`, h.threads, bind, server)
}

// caddyConfig: Caddyfile with the admin API and automatic HTTPS off; Caddy
// keeps upstream connections alive by default and logs no requests
// unless told to.
func caddyConfig(h hopConfig) string {
	site := fmt.Sprintf("http://127.0.0.1:%d", h.listen)
	tlsIn := ""
	if h.tlsIn {
		site = fmt.Sprintf("https://127.0.0.1:%d", h.listen)
		tlsIn = fmt.Sprintf("tls %s %s\n", h.cert, h.key)
	}
	up := fmt.Sprintf("reverse_proxy 127.0.0.1:%d", h.next)
	if h.tlsOut {
		up = fmt.Sprintf("reverse_proxy https://127.0.0.1:%d {\n    transport http {\n      tls_insecure_skip_verify\n    }\n  }", h.next)
	}
	return fmt.Sprintf(`{
  admin off
  auto_https off
  persist_config off
}
%s {
  %s
  %s
}
`, site, tlsIn, up)
}

// peerArgv returns the command line that runs a hop in the foreground.
func peerArgv(kind, bin, conf, dir string) []string {
	switch kind {
	case "nginx":
		return []string{bin, "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log")}
	case "haproxy":
		return []string{bin, "-db", "-f", conf}
	default:
		return []string{bin, "run", "--config", conf, "--adapter", "caddyfile"}
	}
}

func peerConfig(kind string, h hopConfig) string {
	switch kind {
	case "nginx":
		return nginxConfig(h)
	case "haproxy":
		return haproxyConfig(h)
	default:
		return caddyConfig(h)
	}
}
