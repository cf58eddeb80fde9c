package app_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"weft.dev/weft/internal/xdsmeta"
)

// TestClientGoneCancelsUpstream: an HTTP/1.1 client that closes its
// connection while its request waits for a slow app ends the request at
// both sidecars and at the app, through the client sidecar's plaintext
// listener and the mTLS hop between the sidecars, long before the app
// would have answered. Both sidecars count it with the flag DC.
func TestClientGoneCancelsUpstream(t *testing.T) {
	arrived := make(chan struct{}, 1)
	appDone := make(chan bool, 1) // true: the app's request was cancelled
	m := startMeshPairApp(t, time.Hour, "STRICT", func(c *clusterv3.Cluster) *clusterv3.Cluster { return withAutoMTLS(c, reviewsID) },
		func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
				appDone <- true
			case <-time.After(30 * time.Second):
				appDone <- false
				io.WriteString(w, "too late")
			}
		})
	conn, err := net.Dial("tcp", m.client.ListenerAddr(t, xdsmeta.ListenerOutbound))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: reviews:9080\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the app")
	}
	conn.Close()
	start := time.Now()
	select {
	case cancelled := <-appDone:
		if !cancelled {
			t.Fatal("the app answered; its request was never cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the app's request was not cancelled within 5s of the client leaving")
	}
	t.Logf("the app's request was cancelled %s after the client left", time.Since(start).Round(time.Millisecond))

	deadline := time.Now().Add(5 * time.Second)
	for {
		client := promLine(t, m.client, "istio_requests_total", `reporter="source"`, `response_flags="DC"`)
		server := promLine(t, m.server, "istio_requests_total", `reporter="destination"`, `response_flags="DC"`, `connection_security_policy="mutual_tls"`)
		if client && server {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests ended by the client not counted with DC: client sidecar %v, server sidecar %v", client, server)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
