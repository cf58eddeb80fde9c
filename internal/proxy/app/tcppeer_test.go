package app_test

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/peermeta"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/validate"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

const (
	dbID       = "spiffe://cluster.local/ns/default/sa/db"
	dbSvc      = "db.default.svc.cluster.local"
	dbOut      = "outbound|9000||" + dbSvc
	dbGreeting = "220 db ready\r\n"
)

// greetingEchoServer is a server-first TCP app: it greets every
// connection at once, then echoes. It returns its address and a count of
// the connections it accepted.
func greetingEchoServer(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, dbGreeting); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// tcpPeerMesh is a client sidecar (workload sleep-v2, app sleep, version
// v2) and a server sidecar (db-v1, app db, version v1) in front of a
// server-first TCP app, both configured from the control plane's
// translation: the client's cluster to db offers the peer exchange
// (unless offer is false: then it is a cluster with mesh mTLS and no
// ALPN) and the server's inbound mTLS chain accepts it. Both log TCP
// connections to files.
type tcpPeerMesh struct {
	env                  *authzEnv
	server, client       *proxytest.Proxy
	serverIn             string // the server sidecar's inbound address
	out                  string // the client sidecar's TCP listener
	appAccepted          *atomic.Int64
	serverLog, clientLog string
	clientCluster        proto.Message
	clientListener       proto.Message
}

// dbWorkloadYAML declares the db service and its workload.
const dbWorkloadYAML = `apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: db-v1, namespace: default}
spec:
  service: db
  serviceAccount: db
  labels: {app: db, version: v1}
  ports: [{name: tcp, number: 9000, protocol: TCP}]
  command: [db]
`

func startTCPPeerMesh(t testing.TB, offer bool) *tcpPeerMesh {
	t.Helper()
	dir := t.TempDir()
	m := &tcpPeerMesh{serverLog: filepath.Join(dir, "server.log"), clientLog: filepath.Join(dir, "client.log")}
	app, accepted := greetingEchoServer(t)
	m.appAccepted = accepted
	_, appPort, _ := net.SplitHostPort(app)
	m.env = &authzEnv{testCA: startCA(t, time.Hour), cp: proxytest.StartControlPlane(t)}

	inst := &model.Instance{
		Name: "db-v1-0", Namespace: "default", Workload: "db-v1", Service: "db", ServiceAccount: "db",
		Labels: map[string]string{"app": "db", "version": "v1"}, Address: "127.0.0.1",
		Ports: []model.InstancePort{{Name: "tcp", Number: 9000, Protocol: model.ProtocolTCP, AppPort: atou(appPort)}},
	}
	snap := meshModel(t, "db.yaml", dbWorkloadYAML, inst)
	if fs := validate.Findings(snap); len(fs) > 0 {
		t.Fatalf("findings: %v", fs)
	}
	snap.MeshTelemetry.AccessLogging = true

	// The server sidecar: its inbound listener and cluster as the
	// control plane makes them.
	inbound := sidecarInbound(t, snap, inst)
	tcpLogsToFile(t, inbound, m.serverLog)
	so := m.env.proxyOptions(t, inst.Name, "db")
	so.Workload, so.Labels, so.ConfigAccessLogs = inst.Workload, inst.Labels, true
	m.server = proxytest.StartProxy(t, m.env.cp, inst.Name, so)
	m.env.cp.Set(t, m.server.NodeID(), inbound...)
	m.server.WaitReady(t)
	m.serverIn = m.server.ListenerAddr(t, xdsmeta.InboundListenerName(9000))

	// The client sidecar: the control plane's cluster to db, and a TCP
	// listener to it with a file access log.
	res, err := xdstranslate.Translate(snap, &xdstranslate.Proxy{Type: xdstranslate.Sidecar, Namespace: "default", Name: "sleep-v2-0",
		Workload: "sleep-v2", Labels: map[string]string{"app": "sleep", "version": "v2"}, ServiceAccount: "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Clusters {
		if c.GetName() == dbOut {
			m.clientCluster = c
		}
	}
	if m.clientCluster == nil {
		t.Fatalf("the translation has no cluster %s", dbOut)
	}
	if !offer {
		m.clientCluster = withAutoMTLS(proxytest.EDSCluster(dbOut, clusterv3.Cluster_ROUND_ROBIN), dbID)
	}
	out := proxytest.TCPProxy(dbOut)
	tp := &tcpproxyv3.TcpProxy{}
	if err := out.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.Fatal(err)
	}
	tp.AccessLog = fileLog(m.clientLog)
	out.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(tp)}
	m.clientListener = proxytest.Listener("tcp-out", "127.0.0.1:0", proxytest.Chain{Filter: out})
	co := m.env.proxyOptions(t, "sleep-v2-0", "sleep")
	co.Workload, co.Labels, co.ConfigAccessLogs = "sleep-v2", map[string]string{"app": "sleep", "version": "v2"}, true
	m.client = proxytest.StartProxy(t, m.env.cp, "sleep-v2-0", co)
	m.pointClientAt(t, m.serverIn)
	m.client.WaitReady(t)
	m.out = m.client.ListenerAddr(t, "tcp-out")
	return m
}

// pointClientAt makes the client sidecar's one endpoint of db addr (a
// sidecar endpoint: reached over mesh mTLS).
func (m *tcpPeerMesh) pointClientAt(t testing.TB, addr string) {
	t.Helper()
	m.env.cp.Set(t, m.client.NodeID(), m.clientListener, proto.Clone(m.clientCluster), sidecarCLA(dbOut, addr))
}

// meshTLSClient is a TLS client config with the client sidecar's workload
// certificate, offering alpn.
func (m *tcpPeerMesh) meshTLSClient(alpn ...string) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, GetClientCertificate: m.client.Identity().GetClientCertificate, NextProtos: alpn}
}

// tcpCount sums a proxy's TCP family over the series whose labels
// include want (tcpBytes, for counters that are not bytes).
func tcpCount(t *testing.T, p *proxytest.Proxy, family string, want map[string]string) float64 {
	return tcpBytes(t, p, family, want)
}

func readExactly(t testing.TB, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestTCPPeerExchangeThroughSidecars: a TCP connection goes client
// sidecar -> mTLS -> server sidecar -> a server-first app, with config
// from the control plane's translation, so the sidecars negotiate the
// peer exchange and each tells the other its workload. The app's
// greeting arrives before the client writes anything, the bytes pass
// exactly, and both sidecars' istio_tcp_* series and access log lines
// carry the peer's workload, namespace, app and version.
func TestTCPPeerExchangeThroughSidecars(t *testing.T) {
	m := startTCPPeerMesh(t, true)
	conn, err := net.DialTimeout("tcp", m.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	readExactly(t, conn, dbGreeting) // server first: nothing written yet
	msg := strings.Repeat("x", 1000)
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatal(err)
	}
	readExactly(t, conn, msg)

	client := map[string]string{
		"reporter": "source", "source_workload": "sleep-v2", "source_workload_namespace": "default", "source_app": "sleep", "source_version": "v2",
		"source_principal": sleepID, "destination_workload": "db-v1", "destination_workload_namespace": "default", "destination_app": "db",
		"destination_version": "v1", "destination_principal": dbID, "destination_service": dbSvc,
	}
	server := map[string]string{
		"reporter": "destination", "source_workload": "sleep-v2", "source_workload_namespace": "default", "source_app": "sleep", "source_version": "v2",
		"source_principal": sleepID, "destination_workload": "db-v1", "destination_workload_namespace": "default", "destination_app": "db",
		"destination_version": "v1", "destination_principal": dbID, "destination_service": dbSvc, "connection_security_policy": "mutual_tls",
	}
	sent := float64(len(dbGreeting) + len(msg)) // to the downstream: the frames are not payload
	for _, c := range []struct {
		name string
		p    *proxytest.Proxy
		want map[string]string
	}{{"client", m.client, client}, {"server", m.server, server}} {
		proxytest.Eventually(t, 10*time.Second, "the "+c.name+" sidecar's /stats to show the open connection with its peer's workload", func() bool {
			return tcpBytes(t, c.p, "istio_tcp_sent_bytes_total", c.want) == sent &&
				tcpBytes(t, c.p, "istio_tcp_received_bytes_total", c.want) == float64(len(msg)) &&
				tcpCount(t, c.p, "istio_tcp_connections_opened_total", c.want) == 1
		})
	}

	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want map[string]any
	}{
		{m.clientLog, map[string]any{
			"upstream_cluster": dbOut, "upstream_host": m.serverIn,
			"source_workload": "sleep-v2", "source_namespace": "default", "source_principal": sleepID,
			"destination_workload": "db-v1", "destination_namespace": "default", "destination_principal": dbID,
		}},
		{m.serverLog, map[string]any{
			"upstream_cluster": xdsmeta.InboundClusterName(9000),
			"source_workload":  "sleep-v2", "source_namespace": "default", "source_principal": sleepID,
			"destination_workload": "db-v1", "destination_namespace": "default", "destination_principal": dbID,
		}},
	} {
		var got map[string]any
		proxytest.Eventually(t, 10*time.Second, "a TCP line in "+c.path, func() bool {
			got = tcpLogLine(t, c.path)
			return got != nil
		})
		c.want["protocol"], c.want["response_flags"] = "TCP", "-"
		c.want["bytes_received"], c.want["bytes_sent"] = float64(len(msg)), sent
		sub := map[string]any{}
		for k := range c.want {
			sub[k] = got[k]
		}
		if diff := cmp.Diff(c.want, sub); diff != "" {
			t.Errorf("%s: TCP access log line (-want +got):\n%s\nline: %v", c.path, diff, got)
		}
	}
}

// TestTCPPeerExchangeNotNegotiated: mTLS clients that do not offer the
// exchange (a plain TLS client with a mesh certificate, without ALPN or
// with another protocol, and a client sidecar whose cluster does not
// offer it) reach the app through the server sidecar with their bytes
// untouched, and are an unknown workload with a known principal; the
// client sidecar sees an unknown server workload.
func TestTCPPeerExchangeNotNegotiated(t *testing.T) {
	m := startTCPPeerMesh(t, true)
	for _, tc := range []struct {
		name string
		alpn []string
	}{
		{"no ALPN", nil},
		{"another protocol", []string{"postgresql"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", m.serverIn, m.meshTLSClient(tc.alpn...))
			if err != nil {
				t.Fatalf("mTLS to the server sidecar: %v", err)
			}
			defer conn.Close()
			if p := conn.ConnectionState().NegotiatedProtocol; p != "" {
				t.Fatalf("negotiated %q, want nothing", p)
			}
			if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			readExactly(t, conn, dbGreeting) // no frame before it
			if _, err := io.WriteString(conn, "ping"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, conn, "ping")
		})
	}
	unknown := map[string]string{
		"reporter": "destination", "source_workload": "unknown", "source_workload_namespace": "unknown", "source_app": "unknown",
		"source_version": "unknown", "source_principal": sleepID, "destination_workload": "db-v1", "connection_security_policy": "mutual_tls",
	}
	proxytest.Eventually(t, 10*time.Second, "two connections from an unknown workload in the server's /stats", func() bool {
		return tcpCount(t, m.server, "istio_tcp_connections_opened_total", unknown) == 2
	})
	if n := tcpCount(t, m.server, "istio_tcp_connections_opened_total", map[string]string{"source_workload": "sleep-v2"}); n != 0 {
		t.Errorf("%v connections from sleep-v2 without an exchange", n)
	}

	t.Run("client sidecar that does not offer it", func(t *testing.T) {
		m := startTCPPeerMesh(t, false)
		conn, err := net.DialTimeout("tcp", m.out, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		readExactly(t, conn, dbGreeting)
		if _, err := io.WriteString(conn, "ping"); err != nil {
			t.Fatal(err)
		}
		readExactly(t, conn, "ping")
		for _, c := range []struct {
			name string
			p    *proxytest.Proxy
			want map[string]string
		}{
			{"client", m.client, map[string]string{"reporter": "source", "source_workload": "sleep-v2", "destination_workload": "unknown",
				"destination_app": "unknown", "destination_version": "unknown", "destination_principal": dbID}},
			{"server", m.server, unknown},
		} {
			proxytest.Eventually(t, 10*time.Second, "the "+c.name+" sidecar's /stats to show an unknown peer", func() bool {
				return tcpCount(t, c.p, "istio_tcp_connections_opened_total", c.want) == 1
			})
		}
	})
}

// badFrames are frames a peer might send that the other side refuses,
// with what its log says.
var badFrames = []struct {
	name, frame, log string
}{
	{"oversized", "weft\x01" + string(binary.BigEndian.AppendUint16(nil, peermeta.MaxLen+1)) + strings.Repeat("w", peermeta.MaxLen+1), "over the limit of 1024"},
	{"payload instead of a frame", "hello, server", `starts with "hell"`},
	{"malformed pair", "weft\x01\x00\x07w=db;;x", `pair ""`},
}

// TestTCPPeerExchangeMalformedFrame: a peer that negotiates the exchange
// and then sends a frame that is malformed or oversized has its
// connection closed with a log line that says why, on either side: the
// server sidecar never connects to its app, the client sidecar passes
// nothing on, and the connection is counted with response flag DPE or
// UPE.
func TestTCPPeerExchangeMalformedFrame(t *testing.T) {
	m := startTCPPeerMesh(t, true)

	t.Run("from a client", func(t *testing.T) {
		for _, bf := range badFrames {
			t.Run(bf.name, func(t *testing.T) {
				d := &net.Dialer{Timeout: 5 * time.Second}
				conn, err := tls.DialWithDialer(d, "tcp", m.serverIn, m.meshTLSClient(xdsmeta.PeerExchangeALPN))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if p := conn.ConnectionState().NegotiatedProtocol; p != xdsmeta.PeerExchangeALPN {
					t.Fatalf("negotiated %q, want %q", p, xdsmeta.PeerExchangeALPN)
				}
				if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
					t.Fatal(err)
				}
				// The server sidecar writes its frame without waiting for
				// the client's.
				w, err := peermeta.ReadFrame(conn)
				if err != nil {
					t.Fatalf("the server sidecar's frame: %v", err)
				}
				want := peermeta.Workload{Name: "db-v1", Namespace: "default", App: "db", Version: "v1", ServiceAccount: "db"}
				if diff := cmp.Diff(want, w); diff != "" {
					t.Errorf("the server sidecar's frame (-want +got):\n%s", diff)
				}
				if _, err := io.WriteString(conn, bf.frame); err != nil {
					t.Fatal(err)
				}
				if rest, err := io.ReadAll(conn); len(rest) > 0 || isTimeout(err) {
					t.Fatalf("after a bad frame the server sidecar sent %q (%v), want the connection closed", rest, err)
				}
				proxytest.Eventually(t, 10*time.Second, "the server sidecar's log line", func() bool {
					return logHas(m.server.Logs.String(), "the client sidecar's peer metadata exchange failed", bf.log)
				})
			})
		}
		proxytest.Eventually(t, 10*time.Second, "the refused connections in the server's /stats", func() bool {
			return tcpCount(t, m.server, "istio_tcp_connections_closed_total", map[string]string{
				"reporter": "destination", "response_flags": "DPE", "source_principal": sleepID, "source_workload": "unknown"}) == float64(len(badFrames))
		})
		if n := m.appAccepted.Load(); n != 0 {
			t.Errorf("the app accepted %d connections, want none", n)
		}
	})

	t.Run("from a server", func(t *testing.T) {
		// A server with the server sidecar's certificate that
		// negotiates the exchange, reads the client sidecar's frame and
		// answers with a bad one.
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			GetCertificate: m.server.Identity().GetCertificate, ClientAuth: tls.RequireAnyClientCert,
			NextProtos: []string{xdsmeta.PeerExchangeALPN},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		frames := make(chan peermeta.Workload, len(badFrames))
		go func() {
			for _, bf := range badFrames {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if w, err := peermeta.ReadFrame(c); err == nil {
					frames <- w
				}
				_, _ = io.WriteString(c, bf.frame)
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		m.pointClientAt(t, ln.Addr().String())
		proxytest.Eventually(t, 10*time.Second, "the client sidecar to use the new endpoint", func() bool {
			return strings.Contains(adminGet(t, m.client, "/clusters"), ln.Addr().String())
		})
		for _, bf := range badFrames {
			conn, err := net.DialTimeout("tcp", m.out, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if rest, err := io.ReadAll(conn); len(rest) > 0 || isTimeout(err) {
				t.Fatalf("%s: after a bad frame the client sidecar passed on %q (%v), want the connection closed", bf.name, rest, err)
			}
			conn.Close()
			select {
			case w := <-frames:
				want := peermeta.Workload{Name: "sleep-v2", Namespace: "default", App: "sleep", Version: "v2", ServiceAccount: "sleep"}
				if diff := cmp.Diff(want, w); diff != "" {
					t.Errorf("the client sidecar's frame (-want +got):\n%s", diff)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server got no frame from the client sidecar")
			}
			proxytest.Eventually(t, 10*time.Second, "the client sidecar's log line", func() bool {
				return logHas(m.client.Logs.String(), "the server sidecar's peer metadata exchange failed", bf.log)
			})
		}
		proxytest.Eventually(t, 10*time.Second, "the refused connections in the client's /stats", func() bool {
			return tcpCount(t, m.client, "istio_tcp_connections_closed_total", map[string]string{
				"reporter": "source", "response_flags": "UPE", "destination_principal": dbID, "destination_workload": "unknown"}) == float64(len(badFrames))
		})
	})
}

// logHas reports whether one line of logs has every one of parts.
func logHas(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		ok := true
		for _, p := range parts {
			// slog's text handler quotes values: compare with quotes
			// escaped as it writes them.
			if !strings.Contains(line, p) && !strings.Contains(line, strings.ReplaceAll(p, `"`, `\"`)) {
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

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
