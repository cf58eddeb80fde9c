package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
)

// dialConnect opens a CONNECT tunnel to target through the proxy at proxyAddr.
func dialConnect(ctx context.Context, proxyAddr, target string) (net.Conn, error) {
	resp, c, err := connectTo(ctx, proxyAddr, target)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s: %s", target, resp.Status, b)
	}
	return c, nil
}

// connectTo sends CONNECT target to the proxy at proxyAddr and returns
// its response and the connection: after a 200, the tunnel.
func connectTo(ctx context.Context, proxyAddr, target string) (*http.Response, net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode == 200 && br.Buffered() > 0 {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT %s: unexpected bytes after 200", target)
	}
	return resp, c, nil
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("sleep")) > 0 {
		d, _ := time.ParseDuration(md.Get("sleep")[0])
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s := req.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+strings.Join(md.Get("x-echo"), ",")))
	return &testgrpc.SimpleResponse{Payload: req.GetPayload(), Hostname: strings.Join(md.Get(":authority"), ",")}, nil
}

func (testService) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := s.Recv()
		if err == io.EOF {
			s.SetTrailer(metadata.Pairs("x-done", "yes"))
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func TestGRPCOverConnectAndH2C(t *testing.T) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, testService{})
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(gln) }()
	t.Cleanup(gs.Stop)

	const port = 50051
	cluster := "outbound|50051||grpc.default.svc.cluster.local"
	cp := proxytest.StartControlPlane(t)
	server := proxytest.StartProxy(t, cp, "grpc", proxytest.ProxyOptions{})
	inb := proxytest.Inbound(port, gln.Addr().String(), true)
	proxytest.HTTP2(inb[1].(*clusterv3.Cluster))
	cp.Set(t, server.NodeID(), inb...)
	server.WaitReady(t)
	client := proxytest.StartProxy(t, cp, "grpc-client", proxytest.ProxyOptions{})
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0", proxytest.Chain{Port: port, Filter: proxytest.HCMRDS("50051")}),
		proxytest.RouteConfig("50051", proxytest.VirtualHost("grpc:50051", domains("grpc", port), proxytest.PrefixRoute("/", cluster))),
		proxytest.HTTP2(proxytest.EDSCluster(cluster, clusterv3.Cluster_ROUND_ROBIN)),
		proxytest.CLA(cluster, server.ListenerAddr(t, xdsmeta.InboundListenerName(port))),
	)
	client.WaitReady(t)
	outbound := client.ListenerAddr(t, xdsmeta.ListenerOutbound)

	conn, err := grpc.NewClient("passthrough:///grpc:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dialConnect(ctx, outbound, addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tc := testgrpc.NewTestServiceClient(conn)

	t.Run("unary with trailers", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-echo", "hi")
		var trailer metadata.MD
		resp, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.GetPayload().GetBody()) != "ping" {
			t.Errorf("payload %q", resp.GetPayload().GetBody())
		}
		if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "t-hi" {
			t.Errorf("trailer x-trailer = %v, want [t-hi]", got)
		}
	})
	t.Run("status propagated", func(t *testing.T) {
		_, err := tc.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
		if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "no such thing" {
			t.Errorf("got %v, want NotFound \"no such thing\"", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctxT(t), "sleep", "5s"), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("got %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("deadline took %v", d)
		}
	})
	t.Run("bidi streaming", func(t *testing.T) {
		st, err := tc.FullDuplexCall(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			msg := fmt.Sprintf("m%d", i)
			if err := st.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
				t.Fatal(err)
			}
			// Ping-pong: each reply must arrive before the next send.
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.GetPayload().GetBody()) != msg {
				t.Fatalf("got %q, want %q", resp.GetPayload().GetBody(), msg)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("end of stream: %v", err)
		}
		if got := st.Trailer().Get("x-done"); len(got) != 1 {
			t.Errorf("stream trailer x-done = %v", got)
		}
	})
}

// echoServer is a TCP echo server that half-closes after the client does.
func echoServer(t *testing.T) string {
	return serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
}

func TestTCPAndOpaqueTunnels(t *testing.T) {
	echo := echoServer(t)
	httpApp := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "http %s %s", r.Host, r.URL.Path)
	}))
	cp := proxytest.StartControlPlane(t)
	server := proxytest.StartProxy(t, cp, "echo", proxytest.ProxyOptions{})
	cp.Set(t, server.NodeID(), proxytest.Inbound(9000, echo, false)...)
	server.WaitReady(t)
	inbound := server.ListenerAddr(t, xdsmeta.InboundListenerName(9000))

	client := proxytest.StartProxy(t, cp, "client", proxytest.ProxyOptions{})
	tcpCluster := "outbound|9000||echo.default.svc.cluster.local"
	cp.Set(t, client.NodeID(),
		proxytest.Listener(xdsmeta.ListenerOutbound, "127.0.0.1:0",
			proxytest.Chain{Port: 9000, ServerNames: []string{"echo", "echo.default.svc.cluster.local"}, Prefixes: []string{"10.0.0.9/32"}, Filter: proxytest.TCPProxy(tcpCluster)},
			proxytest.Chain{Port: 9000, ServerNames: []string{"other"}, Filter: proxytest.TCPProxy("other")},
			proxytest.Chain{Port: 7000, Filter: proxytest.HCMRDS("7000")},
		),
		proxytest.RouteConfig("7000",
			proxytest.VirtualHost("opaque:7000", domains("opaque", 7000), proxytest.PrefixRoute("/", "opaque")),
			proxytest.VirtualHost("web:7000", domains("web", 7000), proxytest.PrefixRoute("/", "web"))),
		proxytest.EDSCluster(tcpCluster, clusterv3.Cluster_ROUND_ROBIN), proxytest.CLA(tcpCluster, inbound),
		proxytest.StaticCluster("other", "127.0.0.1:1"),
		proxytest.StaticCluster("opaque", echo),
		proxytest.StaticCluster("web", httpApp),
	)
	client.WaitReady(t)
	outbound := client.ListenerAddr(t, xdsmeta.ListenerOutbound)

	roundTrip := func(t *testing.T, target string, payload []byte, halfClose bool) []byte {
		t.Helper()
		c, err := dialConnect(ctxT(t), outbound, target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		if halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	tests := []struct {
		name, target string
		payload      []byte
		want         string
		// keepOpen skips the half-close: Go's HTTP/1 server takes a
		// client's half-close for a disconnect.
		keepOpen bool
	}{
		{name: "tcp by name through both sidecars", target: "echo:9000", payload: []byte("hello"), want: "hello"},
		{name: "tcp by fqdn, 1 MiB with half-close", target: "echo.default.svc.cluster.local:9000", payload: big, want: string(big)},
		{name: "tcp by VIP", target: "10.0.0.9:9000", payload: []byte("vip"), want: "vip"},
		{name: "tls-like bytes on an http port go opaque", target: "opaque:7000", payload: []byte("\x16\x03\x01hello"), want: "\x16\x03\x01hello"},
		{name: "http/1 inside a tunnel", target: "web:7000", payload: []byte("GET /in HTTP/1.1\r\nHost: web:7000\r\nConnection: close\r\n\r\n"), want: "http web:7000 /in", keepOpen: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := roundTrip(t, tc.target, tc.payload, !tc.keepOpen)
			if !strings.Contains(string(got), tc.want) {
				if len(got) > 200 {
					got = got[:200]
				}
				t.Errorf("got %q, want it to contain %.40q\naccess log:\n%s", got, tc.want, client.Access.String())
			}
		})
	}
	t.Run("no chain", func(t *testing.T) {
		_, err := dialConnect(ctxT(t), outbound, "nothing:1234")
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("got %v, want a 404", err)
		}
	})
}

func TestWebSocketExpectContinueAndLargeBodies(t *testing.T) {
	m := startMesh(t, nil)
	c := m.client.HTTPClient(t)

	t.Run("websocket echo", func(t *testing.T) {
		conn, err := net.Dial("tcp", m.client.ListenerAddr(t, xdsmeta.ListenerOutbound))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
		fmt.Fprintf(conn, "GET http://httpbin:8000/websocket/echo HTTP/1.1\r\nHost: httpbin:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(h[:]) {
			t.Errorf("accept %q", got)
		}
		for _, msg := range []string{"hello", "world"} {
			writeWSText(t, conn, msg)
			if got := readWSText(t, br); got != msg {
				t.Errorf("echo %q, want %q", got, msg)
			}
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		tr := c.Transport.(*http.Transport).Clone()
		tr.ExpectContinueTimeout = 5 * time.Second
		defer tr.CloseIdleConnections()
		var got100 atomic.Bool
		ctx := httptrace.WithClientTrace(ctxT(t), &httptrace.ClientTrace{Got100Continue: func() { got100.Store(true) }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://httpbin:8000/anything", strings.NewReader("payload"))
		req.Header.Set("Expect", "100-continue")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("payload"))) {
			t.Errorf("got %d %s", resp.StatusCode, b)
		}
		if !got100.Load() {
			t.Errorf("client got no 100 Continue")
		}
	})

	t.Run("h2c prior knowledge to the inbound listener", func(t *testing.T) {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: p}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+m.inbound+"/get", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("got %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
		}
	})
}

func writeWSText(t *testing.T, w io.Writer, msg string) {
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask[:]...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := w.Write(frame); err != nil {
		t.Fatal(err)
	}
}

func readWSText(t *testing.T, r io.Reader) string {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLargeStreamedBodies sends 100 MiB each way through both sidecars and
// checks that the heap does not grow by anything near that.
func TestLargeStreamedBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	const size = 100 << 20
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			n, err := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d %v", n, err)
		default:
			buf := make([]byte, 32<<10)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}
	})
	m := startMesh(t, app)
	c := m.client.HTTPClient(t)
	var peak atomic.Uint64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				var s runtime.MemStats
				runtime.ReadMemStats(&s)
				if s.HeapInuse > peak.Load() {
					peak.Store(s.HeapInuse)
				}
			}
		}
	}()
	t.Run("upload chunked", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			buf := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := pw.Write(buf); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://httpbin:8000/upload", pr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d <nil>", size); string(b) != want {
			t.Errorf("app read %q, want %q", b, want)
		}
	})
	t.Run("download", func(t *testing.T) {
		resp, err := c.Get("http://httpbin:8000/download")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Errorf("read %d bytes (%v), want %d", n, err, size)
		}
	})
	close(stop)
	wg.Wait()
	if grew := int64(peak.Load()) - int64(base); grew > 40<<20 {
		t.Errorf("heap grew by %d MiB while streaming 100 MiB bodies", grew>>20)
	}
}

func TestCircuitBreakerOverflow(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int32
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		<-release
		io.WriteString(w, "ok")
	})
	cl := proxytest.EDSCluster(svcCluster, clusterv3.Cluster_ROUND_ROBIN)
	cl.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority: corev3.RoutingPriority_DEFAULT, MaxRequests: wrapperspb.UInt32(1),
	}}}
	co := startClientOnly(t, []string{serveHTTP(t, app)}, nil, nil, cl)
	first := make(chan *http.Response, 1)
	go func() {
		resp, err := co.c.Get("http://httpbin:8000/")
		if err != nil {
			t.Error(err)
		}
		first <- resp
	}()
	proxytest.Eventually(t, 5*time.Second, "first request at the app", func() bool { return inFlight.Load() == 1 })
	resp, body := get(t, co.c, "http://httpbin:8000/", nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Weft-Response-Flags") != "UO" {
		t.Errorf("second request: %d %q %q, want 503 UO", resp.StatusCode, resp.Header.Get("X-Weft-Response-Flags"), body)
	}
	close(release)
	if r := <-first; r != nil {
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("first request: %d", r.StatusCode)
		}
	}
}
