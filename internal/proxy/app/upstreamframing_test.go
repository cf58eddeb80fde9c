package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxytest"
)

// A status code below 100 is not an informational response. The upstream
// sending one must get the client a response (Envoy: 502), not a panic
// that drops the client's connection.
func TestUpstreamStatusBelow100(t *testing.T) {
	upstreamClosed := make(chan bool, 1)
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		_, _ = io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok")
		// The sidecar is done with this connection either way: it should
		// close it (or at most pool it) rather than leave it hanging.
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := br.ReadByte()
		upstreamClosed <- err == io.EOF
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Errorf("no response from the sidecar to an upstream status 099: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Weft-Response-Flags") != "UPE" ||
			!strings.Contains(string(b), "upstream sent a malformed response") {
			t.Errorf("got %d %q flags %q, want 502 UPE: upstream sent a malformed response", resp.StatusCode, b, resp.Header.Get("X-Weft-Response-Flags"))
		}
	}
	if !<-upstreamClosed {
		t.Error("the sidecar left its upstream connection open and unused after the 099 response (leaked)")
	}
}

// After an upstream answered 099, the request must still be counted as
// ended: with max_requests 1, the next request must reach the app, not be
// refused as an overflow by a counter the 099 request never released.
func TestUpstreamStatusBelow100ReleasesCircuitBreaker(t *testing.T) {
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		if path == "/odd" {
			_, _ = io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
			_ = c.Close()
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	cl := proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)
	cl.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority: corev3.RoutingPriority_DEFAULT, MaxRequests: wrapperspb.UInt32(1),
	}}}
	co := startClientOnly(t, []string{app}, nil, nil, cl)
	if resp, err := co.c.Get("http://httpbin:8000/odd"); err == nil {
		resp.Body.Close()
	} else {
		t.Logf("GET /odd: %v", err)
	}
	resp, body := get(t, co.c, "http://httpbin:8000/ok", nil)
	if resp.StatusCode != 200 {
		t.Errorf("request after the 099 one: %d %q flags %q, want 200 (the 099 request still holds the max_requests slot)",
			resp.StatusCode, body, resp.Header.Get("X-Weft-Response-Flags"))
	}
}

// An upstream response with both Transfer-Encoding and Content-Length is
// read by Transfer-Encoding, but its framing is suspect (RFC 9112 section
// 6.1): the sidecar does not send another request on that connection.
func TestUpstreamTransferEncodingAndContentLength(t *testing.T) {
	upstreamClosed := make(chan bool, 1)
	app := rawApp(t, func(c net.Conn, br *bufio.Reader, path string) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := br.ReadByte()
		upstreamClosed <- err == io.EOF
	})
	conn := dialInbound(t, startMeshTo(t, app))
	_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: httpbin\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" || err != nil {
		t.Errorf("got %d %q (%v), want 200 \"ok\"", resp.StatusCode, b, err)
	}
	if !<-upstreamClosed {
		t.Error("the sidecar kept the upstream connection after a response with both Transfer-Encoding and Content-Length")
	}
}
