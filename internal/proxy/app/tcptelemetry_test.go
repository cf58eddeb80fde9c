package app_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/proxy/proxytest"
	"weft.dev/weft/internal/xdsmeta"
	"weft.dev/weft/internal/xdstranslate"
)

// fileLog is an access_log sink writing to path.
func fileLog(path string) []*accesslogv3.AccessLog {
	return []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{
		TypedConfig: proxytest.MustAny(&filev3.FileAccessLog{Path: path}),
	}}}
}

// rewriteFilters calls fn with every network filter of type M (an HTTP
// connection manager, a tcp_proxy) in the listeners among msgs, and puts
// back what fn made of it.
func rewriteFilters[M proto.Message](msgs []proto.Message, newM func() M, fn func(l *listenerv3.Listener, m M)) {
	for _, msg := range msgs {
		l, ok := msg.(*listenerv3.Listener)
		if !ok {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				m := newM()
				if f.GetTypedConfig().UnmarshalTo(m) != nil {
					continue
				}
				fn(l, m)
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(m)}
			}
		}
	}
}

// tcpLogsToFile points the access log of every tcp_proxy in the listeners
// at path, and fails unless each had exactly one (the control plane's
// stdout logger: proof that the Telemetry config reached the tcp_proxy).
func tcpLogsToFile(t testing.TB, msgs []proto.Message, path string) {
	t.Helper()
	n := 0
	rewriteFilters(msgs, func() *tcpproxyv3.TcpProxy { return &tcpproxyv3.TcpProxy{} }, func(l *listenerv3.Listener, tp *tcpproxyv3.TcpProxy) {
		if len(tp.GetAccessLog()) != 1 || tp.GetAccessLog()[0].GetName() != xdstranslate.StdoutAccessLogName {
			t.Fatalf("listener %s: tcp_proxy access logs %v, want the translation's %s", l.GetName(), tp.GetAccessLog(), xdstranslate.StdoutAccessLogName)
		}
		tp.AccessLog = fileLog(path)
		n++
	})
	if n == 0 {
		t.Fatal("no tcp_proxy in the translated listeners")
	}
}

// tcpBytes sums a proxy's TCP byte counter over its tcp series whose
// labels include want.
func tcpBytes(t *testing.T, p *proxytest.Proxy, family string, want map[string]string) float64 {
	t.Helper()
	mf := scrape(t, p)[family]
	if mf == nil {
		return 0
	}
	sum := 0.0
	for _, s := range collect(mf) {
		ok := s.Labels["request_protocol"] == "tcp"
		for k, v := range want {
			ok = ok && s.Labels[k] == v
		}
		if ok {
			sum += s.Value
		}
	}
	return sum
}

// tcpLogLine returns the first TCP line of a JSON access log file, nil
// while there is none.
func tcpLogLine(t *testing.T, path string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: a line that is not JSON: %v: %s", path, err, sc.Text())
		}
		if e["protocol"] == "TCP" {
			return e
		}
	}
	return nil
}

// TestTCPTelemetryThroughSidecars: a TCP connection goes client sidecar ->
// mTLS -> server sidecar -> echo app. The server's inbound listener is
// the control plane's translation with access logging on (as a Telemetry
// resource turns it on), the client's tcp_proxy has a file access log,
// and neither proxy has --access-log. While the connection stays open,
// both sidecars' /stats show its bytes; once it closes, each access log
// has one TCP line with bytes, upstream, both workloads and the
// principals of the verified certificates. The client's cluster does not
// offer the peer metadata exchange (its TLS context has no ALPN), though
// the server's inbound chain accepts it: nothing is exchanged, the bytes
// pass untouched and each side's peer workload is unknown
// (TestTCPPeerExchangeThroughSidecars has the exchange).
func TestTCPTelemetryThroughSidecars(t *testing.T) {
	const (
		echoID  = "spiffe://cluster.local/ns/default/sa/echo"
		sleepID = "spiffe://cluster.local/ns/default/sa/sleep"
		echoSvc = "echo.default.svc.cluster.local"
		out9000 = "outbound|9000||" + echoSvc
	)
	dir := t.TempDir()
	serverLog, clientLog := filepath.Join(dir, "server.log"), filepath.Join(dir, "client.log")
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo)
	env := &authzEnv{testCA: startCA(t, time.Hour), cp: proxytest.StartControlPlane(t)}

	// The server sidecar's inbound resources, as the control plane makes
	// them with access logging on.
	inst := &model.Instance{
		Name: "echo-v1-0", Namespace: "default", Workload: "echo-v1", Service: "echo", ServiceAccount: "echo",
		Labels: map[string]string{"app": "echo", "version": "v1"}, Address: "127.0.0.1",
		Ports: []model.InstancePort{{Name: "tcp", Number: 9000, Protocol: model.ProtocolTCP, AppPort: atou(echoPort)}},
	}
	snap := meshModel(t, "empty.yaml", "", inst)
	snap.MeshTelemetry.AccessLogging = true
	inbound := sidecarInbound(t, snap, inst)
	tcpLogsToFile(t, inbound, serverLog)
	so := env.proxyOptions(t, inst.Name, "echo")
	so.Workload, so.Labels, so.ConfigAccessLogs = inst.Workload, inst.Labels, true
	server := proxytest.StartProxy(t, env.cp, inst.Name, so)
	env.cp.Set(t, server.NodeID(), inbound...)
	server.WaitReady(t)

	co := env.proxyOptions(t, "sleep-0", "sleep")
	co.Workload, co.ConfigAccessLogs = "sleep", true
	client := proxytest.StartProxy(t, env.cp, "sleep-0", co)
	out := proxytest.TCPProxy(out9000)
	tp := &tcpproxyv3.TcpProxy{}
	if err := out.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.Fatal(err)
	}
	tp.AccessLog = fileLog(clientLog)
	out.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: proxytest.MustAny(tp)}
	serverIn := server.ListenerAddr(t, xdsmeta.InboundListenerName(9000))
	env.cp.Set(t, client.NodeID(),
		proxytest.Listener("tcp-out", "127.0.0.1:0", proxytest.Chain{Filter: out}),
		withAutoMTLS(proxytest.EDSCluster(out9000, clusterv3.Cluster_ROUND_ROBIN), echoID),
		sidecarCLA(out9000, serverIn),
	)
	client.WaitReady(t)

	// A long-lived connection: 1000 bytes each way, then it stays open.
	conn, err := net.DialTimeout("tcp", client.ListenerAddr(t, "tcp-out"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("x", 1000)
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, back); err != nil || string(back) != msg {
		t.Fatalf("echo through the sidecars: %v %q", err, back)
	}
	for _, c := range []struct {
		name string
		p    *proxytest.Proxy
		want map[string]string
	}{
		{"client", client, map[string]string{"reporter": "source", "destination_service": echoSvc, "destination_principal": echoID}},
		{"server", server, map[string]string{"reporter": "destination", "destination_workload": "echo-v1", "source_principal": sleepID, "connection_security_policy": "mutual_tls"}},
	} {
		proxytest.Eventually(t, 10*time.Second, "the "+c.name+" sidecar's /stats to show the open connection's bytes", func() bool {
			return tcpBytes(t, c.p, "istio_tcp_sent_bytes_total", c.want) == 1000 && tcpBytes(t, c.p, "istio_tcp_received_bytes_total", c.want) == 1000
		})
	}
	if l := tcpLogLine(t, serverLog); l != nil {
		t.Errorf("the server logged the connection before it closed: %v", l)
	}

	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want map[string]any
	}{
		{clientLog, map[string]any{
			"upstream_cluster": out9000, "upstream_host": serverIn,
			"source_workload": "sleep", "source_namespace": "default", "source_principal": sleepID,
			"destination_workload": "unknown", "destination_namespace": "unknown", "destination_principal": echoID,
		}},
		{serverLog, map[string]any{
			"upstream_cluster": xdsmeta.InboundClusterName(9000), "upstream_host": echo,
			"source_workload": "unknown", "source_namespace": "unknown", "source_principal": sleepID,
			"destination_workload": "echo-v1", "destination_namespace": "default", "destination_principal": echoID,
		}},
	} {
		var got map[string]any
		proxytest.Eventually(t, 10*time.Second, "a TCP line in "+c.path, func() bool {
			got = tcpLogLine(t, c.path)
			return got != nil
		})
		if _, err := time.Parse(time.RFC3339Nano, got["start_time"].(string)); err != nil {
			t.Errorf("%s: start_time: %v", c.path, err)
		}
		if d, ok := got["duration_ms"].(float64); !ok || d < 0 {
			t.Errorf("%s: duration_ms = %v", c.path, got["duration_ms"])
		}
		c.want["protocol"], c.want["response_code"], c.want["response_flags"] = "TCP", 0.0, "-"
		c.want["bytes_received"], c.want["bytes_sent"] = 1000.0, 1000.0
		sub := map[string]any{}
		for k := range c.want {
			sub[k] = got[k]
		}
		if diff := cmp.Diff(c.want, sub); diff != "" {
			t.Errorf("%s: TCP access log line (-want +got):\n%s\nline: %v", c.path, diff, got)
		}
	}
	// Neither proxy has --access-log: nothing went to that logger.
	if s := client.Access.String() + server.Access.String(); s != "" {
		t.Errorf("the --access-log buffers got lines: %s", s)
	}
}
