package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/spiffeid"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdsserver"
)

// TestProxylessMTLSToStrictSidecar: grpc-go's own xDS client (proxyless)
// calls a gRPC server behind a Weft sidecar whose port is STRICT mTLS and
// whose AuthorizationPolicy admits only the service account grpc-client.
// Weft's xDS server serves all of them; a client whose bootstrap
// declares a file_watcher certificate provider (named in its node
// metadata) with a certificate from the mesh CA gets mTLS clusters and is
// served, with its SPIFFE ID in the sidecar's metrics; one with another
// service account is refused by the policy; one without a provider talks
// plaintext and is refused by STRICT.
func TestProxylessMTLSToStrictSidecar(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, testService{})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	appPort := uint32(lis.Addr().(*net.TCPAddr).Port)
	inboundPort := uint32(freeLoopbackPort(t))

	c := startCA(t, time.Hour)
	inst := &model.Instance{
		Name: "greeter-0", Namespace: "default", Workload: "greeter", Service: "greeter", ServiceAccount: "greeter",
		Labels: map[string]string{"app": "greeter"}, Address: "127.0.0.1",
		Ports:        []model.InstancePort{{Name: "grpc", Number: 7070, Protocol: model.ProtocolGRPC, AppPort: appPort, InboundPort: inboundPort}},
		OutboundPort: uint32(freeLoopbackPort(t)),
	}
	snap := meshModel(t, "mesh.yaml", `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: greeter, namespace: default}
spec:
  service: greeter
  labels: {app: greeter}
  serviceAccount: greeter
  ports: [{name: grpc, number: 7070}]
  command: ["greeter"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: greeter-callers, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/grpc-client"]}}]
`, inst)

	// Weft's xDS server, serving the sidecar and the proxyless clients
	// alike.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	xs := xdsserver.New(ctx, xdsserver.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := xs.Update(snap); err != nil {
		t.Fatal(err)
	}
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = xs.Serve(xl) }()
	t.Cleanup(func() { xs.Stop(); <-served })
	xdsAddr := xl.Addr().String()

	opts := c.proxyOptions(t, "greeter-0", "greeter")
	opts.XDSAddr = xdsAddr
	server := proxytest.StartProxy(t, &proxytest.ControlPlane{Addr: xdsAddr}, "greeter-0", opts)
	server.WaitReady(t)

	// client builds a proxyless client; provider "" means no certificate
	// provider, else its certificate is for service account sa.
	client := func(t *testing.T, node, provider, sa string) testgrpc.TestServiceClient {
		t.Helper()
		bootstrap := map[string]any{
			"xds_servers": []any{map[string]any{"server_uri": xdsAddr, "channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []any{"xds_v3"}}},
			"node":        map[string]any{"id": node, "metadata": map[string]any{"NAMESPACE": "default"}},
		}
		if provider != "" {
			bootstrap["node"].(map[string]any)["metadata"].(map[string]any)[xdsmeta.MetaCertProvider] = provider
		}
		var creds credentials.TransportCredentials = insecure.NewCredentials()
		if provider != "" {
			dir := writeSVIDFiles(t, c, sa)
			bootstrap["certificate_providers"] = map[string]any{provider: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]any{
					"certificate_file":    filepath.Join(dir, "cert-chain.pem"),
					"private_key_file":    filepath.Join(dir, "key.pem"),
					"ca_certificate_file": filepath.Join(dir, "root-cert.pem"),
					"refresh_interval":    "60s",
				},
			}}
			creds, err = xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
			if err != nil {
				t.Fatal(err)
			}
		}
		b, _ := json.Marshal(bootstrap)
		rb, err := xds.NewXDSResolverWithConfigForTesting(b)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("xds:///greeter:7070", grpc.WithTransportCredentials(creds), grpc.WithResolvers(rb))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return testgrpc.NewTestServiceClient(conn)
	}
	call := func(cl testgrpc.TestServiceClient) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The app echoes the payload: a reply that has it came from the
		// app behind the sidecar.
		resp, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("from the proxyless client")}})
		return string(resp.GetPayload().GetBody()), err
	}

	t.Run("certificate provider, allowed service account: mTLS, served", func(t *testing.T) {
		cl := client(t, "grpc-client-0", "weft", "grpc-client")
		// The first call waits for the xDS config and the certificate.
		var got string
		deadline := time.Now().Add(30 * time.Second)
		for got, err = call(cl); err != nil; got, err = call(cl) {
			if time.Now().After(deadline) {
				t.Fatalf("no call through the STRICT sidecar: %v\nsidecar logs:\n%s", err, server.Logs.String())
			}
		}
		if got != "from the proxyless client" {
			t.Fatalf("reply payload %q, want the request's, echoed by the app", got)
		}
		want := []string{`reporter="destination"`, `source_principal="spiffe://cluster.local/ns/default/sa/grpc-client"`, `connection_security_policy="mutual_tls"`, `request_protocol="grpc"`, `grpc_response_status="0"`}
		proxytest.Eventually(t, 5*time.Second, "the call in the sidecar's metrics", func() bool {
			for _, line := range strings.Split(adminGet(t, server, "/stats/prometheus"), "\n") {
				if !strings.HasPrefix(line, "istio_requests_total{") {
					continue
				}
				ok := true
				for _, w := range want {
					ok = ok && strings.Contains(line, w)
				}
				if ok {
					return true
				}
			}
			return false
		})
	})
	t.Run("certificate provider, other service account: denied by the policy", func(t *testing.T) {
		cl := client(t, "grpc-client-1", "weft", "other")
		var code codes.Code
		proxytest.Eventually(t, 30*time.Second, "an answer from the sidecar", func() bool {
			_, err := call(cl)
			code = status.Code(err)
			return code != codes.Unavailable && code != codes.DeadlineExceeded
		})
		if code != codes.PermissionDenied {
			t.Fatalf("code %v, want PermissionDenied (RBAC)", code)
		}
	})
	t.Run("no certificate provider: plaintext, refused by STRICT", func(t *testing.T) {
		cl := client(t, "grpc-client-2", "", "")
		_, err := call(cl)
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Fatalf("err %v, want the connection refused (Unavailable)", err)
		}
	})
}

// writeSVIDFiles makes a key, has the CA sign a certificate for service
// account sa of namespace default, and writes what a file_watcher
// certificate provider reads: cert-chain.pem, key.pem, root-cert.pem.
func writeSVIDFiles(t *testing.T, c *testCA, sa string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa}
	u, _ := url.Parse(id.String())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.a.Sign(ca.Caller{ID: id, Instance: sa + "-0.default"}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"cert-chain.pem": iss.ChainPEM,
		"key.pem":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"root-cert.pem":  iss.TrustBundlePEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
