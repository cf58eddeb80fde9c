package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"weft.dev/weft/internal/ca"
	"weft.dev/weft/internal/caapi"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// startCAWithADS is a real CA whose port also serves cp's ADS to callers
// with a verified client certificate, as the control plane's 15012 does.
func startCAWithADS(t *testing.T, leafTTL time.Duration, cp *proxytest.ControlPlane) *testCA {
	t.Helper()
	a, err := ca.New(ca.Options{Dir: t.TempDir(), LeafTTL: leafTTL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tokens := ca.NewTokens()
	unary, stream := ca.RequireClientCert()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.ServerTLSConfig())), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	caapi.Register(srv, ca.NewService(a, tokens))
	cp.RegisterADS(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return &testCA{a: a, tokens: tokens, addr: ln.Addr().String()}
}

// startSecurePair is startMeshPair with xDS over mTLS on the CA's port
// and a fast trust bundle poll.
func startSecurePair(t *testing.T, leafTTL time.Duration) *meshPair {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reviews ok") }))
	t.Cleanup(app.Close)
	cp := proxytest.StartControlPlane(t)
	c := startCAWithADS(t, leafTTL, cp)
	opts := func(instance, sa string) proxytest.ProxyOptions {
		o := c.proxyOptions(t, instance, sa)
		o.XDSAddr, o.CAPollInterval = c.addr, 100*time.Millisecond
		return o
	}
	server := proxytest.StartProxy(t, cp, "reviews-v1-0", opts("reviews-v1-0", "bookinfo-reviews"))
	cp.Set(t, server.NodeID(), inboundMTLS("STRICT", app.Listener.Addr().String())...)
	server.WaitReady(t)
	inbound := server.ListenerAddr(t, xdsmeta.InboundListenerName(9080))
	client := proxytest.StartProxy(t, cp, "productpage-v1-0", opts("productpage-v1-0", "bookinfo-productpage"))
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: 9080, Filter: proxytest.HCMRDS("9080")}),
		proxytest.RouteConfig("9080", proxytest.VirtualHost(reviewsHost+":9080", []string{"reviews", "reviews:9080"}, proxytest.PrefixRoute("/", reviewsOut))),
		withAutoMTLS(proxytest.EDSCluster(reviewsOut, clusterv3.Cluster_ROUND_ROBIN), reviewsID),
		sidecarCLA(reviewsOut, inbound),
	)
	client.WaitReady(t)
	return &meshPair{cp: cp, client: client, server: server, inbound: inbound, ca: c}
}

// TestXDSOverMTLS: sidecars with an SVID get their config over mTLS on the
// CA's port; a TLS client without a certificate is refused on ADS while
// the certificate API still serves token callers without one.
func TestXDSOverMTLS(t *testing.T) {
	m := startSecurePair(t, time.Hour)
	mustGet200(t, m.client.HTTPClient(t), "http://reviews:9080/")

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.ca.a.TrustBundlePEM())
	cc, err := grpc.NewClient(m.ca.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: caapi.ServerName})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err == nil {
		_ = st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("ADS without a client certificate: %v, want Unauthenticated naming the client certificate", err)
	}
	// The certificate API on the same port answers a caller without a
	// client certificate (here: with a bad token, so Unauthenticated for
	// the token, not for the certificate).
	_, err = caapi.CreateCertificate(ctx, cc, "no-such-token", &caapi.Request{CSR: []byte("x")})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "bootstrap token") {
		t.Fatalf("CreateCertificate without a client certificate: %v, want the token refused", err)
	}
}

// TestRootRotationUnderLoad: a full root rotation (stage, issue from the
// new root, retire the old) while requests flow without pause between two
// sidecars over STRICT mTLS, with xDS over mTLS too; none fails, and at
// the end both sidecars trust only the new root and hold leaves from it.
func TestRootRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	m := startSecurePair(t, time.Hour)
	client := m.client.HTTPClient(t)
	instances := m.ca.tokens.Instances
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://reviews:9080/", nil)
				req.Close = i%2 == 1 // new handshakes all along
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
	step := func(s string) ca.RotationStatus {
		t.Helper()
		var st ca.RotationStatus
		var last error
		proxytest.Eventually(t, 20*time.Second, "rotation step "+s, func() bool {
			var err error
			st, err = m.ca.a.Rotate(s, instances())
			var re *ca.RefusedError
			if errors.As(err, &re) {
				last = err
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
			return true
		})
		t.Logf("%s done (last refusal: %v)", s, last)
		// Right after a step the sidecars have not reported yet (they
		// poll every 100 ms): the following step is refused, naming them.
		if next := st.NextStep; next != ca.StepStage {
			_, err := m.ca.a.Rotate(next, instances())
			var re *ca.RefusedError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, "productpage-v1-0.default") || !strings.Contains(re.Msg, "would break trust") {
				t.Errorf("--%s right after --%s: %v, want refused naming the sidecars", next, s, err)
			}
		}
		time.Sleep(300 * time.Millisecond) // traffic across each stage
		return st
	}
	st := step(ca.StepStage)
	newRoot := st.NewRoot.Serial
	step(ca.StepIssueFromNew)
	step(ca.StepRetireOld)
	proxytest.Eventually(t, 10*time.Second, "both sidecars trust only the new root", func() bool {
		for _, p := range []*proxytest.Proxy{m.client, m.server} {
			s := p.Identity().Current()
			if len(s.BundleCerts) != 1 || fmt.Sprintf("%x", s.BundleCerts[0].SerialNumber) != newRoot || s.Leaf.CheckSignatureFrom(s.BundleCerts[0]) != nil {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed (first: %v), %d succeeded", failed.Load(), firstErr.Load(), ok.Load())
	}
	// After the rotation, new connections work, xDS included: a config
	// update reaches the client over its mTLS stream.
	mustGet200(t, &http.Client{Transport: &http.Transport{Proxy: client.Transport.(*http.Transport).Proxy, DisableKeepAlives: true}, Timeout: 10 * time.Second}, "http://reviews:9080/")
	t.Logf("%d requests during the rotation, none failed", ok.Load())
}
