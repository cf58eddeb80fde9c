package listener

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/router"
	"weft.dev/weft/internal/proxy/upstream"
	"weft.dev/weft/internal/xdsmeta"
)

// proxyTCP serves a tcp_proxy chain.
func (m *Manager) proxyTCP(c net.Conn, snap *dataplane.Snapshot, ch *dataplane.Chain, target string, start time.Time) {
	tp := ch.Config.TCP
	if ch.Config.RBAC != nil && !m.authorizeTCP(c, ch) {
		_ = c.Close()
		return
	}
	m.tcpToCluster(c, snap, pickTCPCluster(tp), tp, tp.AccessLogs, target, start)
}

func pickTCPCluster(tp *proxyconfig.TCPProxy) string {
	if len(tp.WeightedClusters) == 0 {
		return tp.Cluster
	}
	var total uint32
	for _, wc := range tp.WeightedClusters {
		total += wc.Weight
	}
	n := rand.Uint32N(total)
	for _, wc := range tp.WeightedClusters {
		if n < wc.Weight {
			return wc.Name
		}
		n -= wc.Weight
	}
	return tp.WeightedClusters[0].Name
}

// tcpToCluster copies bytes both ways between c and an endpoint of the
// cluster, with half-close, counting the bytes as they pass, and logs the
// connection to the sinks (or the --access-log logger) when it closes.
func (m *Manager) tcpToCluster(c net.Conn, snap *dataplane.Snapshot, cluster string, tp *proxyconfig.TCPProxy, sinks []proxyconfig.AccessLog, target string, start time.Time) {
	defer c.Close()
	e := accesslog.Entry{Start: start, Authority: target, Protocol: "TCP", UpstreamCluster: cluster}
	cl := snap.Clusters[cluster]
	tm := tcpMetricsConn(cluster, cl)
	if tm.Inbound {
		tm.PeerPrincipal = mtls.PeerOf(c)
		tm.MTLS = tm.PeerPrincipal != ""
	}
	// The connection is counted as opened once its upstream is known (so
	// the label set has the upstream's verified principal), or at once
	// when it fails before.
	opened := false
	defer func() {
		if !opened {
			m.opts.Metrics.TCPOpened(&tm)
		}
		e.Duration = time.Since(start)
		if e.Flags != "" {
			m.opts.Metrics.Flag(e.Flags)
		}
		tm.Flags = e.Flags
		m.opts.Metrics.TCPClosed(&tm)
		m.finishTCP(&e, &tm, m.tcpAccessLog(sinks, &e))
	}()
	if mtls.ProtocolOf(c) == xdsmeta.PeerExchangeALPN {
		peer, err := m.exchangePeer(c)
		if err != nil {
			if protocolError(err) {
				e.Flags = accesslog.FlagDownstreamProtocolError
				m.log.Warn("TCP connection closed: the client sidecar's peer metadata exchange failed",
					"remote", c.RemoteAddr().String(), "principal", mtls.PeerOf(c), "cluster", cluster, "error", err)
			} else {
				e.Flags = accesslog.FlagDownstreamTermination
				m.log.Debug("tcp proxy: the client sidecar went away during the peer metadata exchange", "remote", c.RemoteAddr().String(), "error", err)
			}
			return
		}
		if tm.Inbound {
			tm.Peer = peer
		}
	}
	if cl == nil {
		e.Flags = accesslog.FlagNoClusterFound
		m.log.Debug("tcp proxy: cluster not found", "cluster", cluster, "target", target)
		return
	}
	src := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = a.IP.String()
	}
	host, err := cl.Pick(target, router.HashString(src), src != "")
	if err != nil {
		e.Flags = accesslog.FlagNoHealthyUpstream
		m.log.Debug("tcp proxy: no healthy upstream", "cluster", cluster)
		return
	}
	e.UpstreamHost = host.Addr
	ctx, cancel := context.WithTimeout(context.Background(), cl.Config().ConnectTimeout)
	host.Start()
	up, err := cl.Dial(ctx, host.Addr)
	cancel()
	if err != nil {
		host.Done(true)
		if errors.Is(err, upstream.ErrOverflow) {
			e.Flags = accesslog.FlagOverflow
		} else {
			e.Flags = accesslog.FlagUpstreamConnectFailure
			cl.Observe(host, upstream.ResultGateway) // a connect failure, for outlier detection
		}
		m.log.Debug("tcp proxy: connect failed", "cluster", cluster, "error", err)
		return
	}
	cl.Observe(host, upstream.ResultOK)
	if !tm.Inbound {
		tm.PeerPrincipal = cl.PeerPrincipal(host.Addr)
	}
	if !m.trackRaw(up) {
		_ = up.Close()
		host.Done(true)
		return
	}
	defer m.untrackRaw(up)
	defer up.Close()
	if mtls.ProtocolOf(up) == xdsmeta.PeerExchangeALPN {
		peer, err := m.exchangePeer(up)
		if err != nil {
			host.Done(true)
			if protocolError(err) {
				e.Flags = accesslog.FlagUpstreamProtocolError
				m.log.Warn("TCP connection closed: the server sidecar's peer metadata exchange failed",
					"cluster", cluster, "upstream", host.Addr, "principal", tm.PeerPrincipal, "error", err)
			} else {
				e.Flags = accesslog.FlagUpstreamTermination
				m.log.Debug("tcp proxy: the server sidecar closed the connection during the peer metadata exchange", "cluster", cluster, "upstream", host.Addr, "error", err)
			}
			return
		}
		if !tm.Inbound {
			tm.Peer = peer
		}
	}
	bytes := m.opts.Metrics.TCPOpened(&tm)
	opened = true
	var idle time.Duration
	if tp != nil {
		idle = tp.IdleTimeout
	}
	sent, recv, upErr := pipe(c, up, idle, bytes)
	e.BytesReceived, e.BytesSent = sent, recv
	if upErr {
		e.Flags = accesslog.FlagUpstreamTermination
	}
	host.Done(upErr)
}

// tcpAccessLog is where connection e is logged: the --access-log logger
// when set (it overrides the config), else the chain's first access_log
// sink when its filter passes e, else nowhere (nil). A filter sees a
// connection as a request without headers or response code.
func (m *Manager) tcpAccessLog(sinks []proxyconfig.AccessLog, e *accesslog.Entry) *accesslog.Logger {
	if m.opts.AccessLog != nil {
		return m.opts.AccessLog
	}
	if m.opts.AccessLogs == nil || len(sinks) == 0 {
		return nil
	}
	if f := sinks[0].Filter; f != nil && !router.Logged(f, &router.LogInput{Duration: e.Duration, Flags: e.Flags, GRPCStatus: router.GRPCUnknown}) {
		return nil
	}
	return m.opts.AccessLogs.Get(sinks[0].Path)
}

// tcpMetricsConn is the mesh metrics' view of a connection to a cluster
// (nil when not found). The peer's workload is added once known: from the
// peer metadata exchange (peerexchange.go), else it stays unknown.
func tcpMetricsConn(cluster string, cl *upstream.Cluster) proxymetrics.TCPConn {
	inbound := strings.HasPrefix(cluster, xdsmeta.ClusterInboundPrefix)
	meta := ""
	if cl != nil {
		meta = cl.Config().Service
	}
	return proxymetrics.TCPConn{Inbound: inbound, Service: proxymetrics.ServiceOf(cluster, meta, inbound)}
}

// pipe copies down->up and up->down until both directions end, passing
// half-closes along, and adds each chunk it writes to the metrics' byte
// counters. It returns the byte counts and whether the upstream side
// failed.
func pipe(down, up net.Conn, idle time.Duration, counted proxymetrics.TCPBytes) (toUp, toDown int64, upFailed bool) {
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	if idle > 0 {
		go func() {
			t := time.NewTicker(min(idle/4+time.Millisecond, time.Minute))
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					if now.Sub(time.Unix(0, lastActive.Load())) > idle {
						_ = down.Close()
						_ = up.Close()
						return
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var upErr atomic.Bool
	cp := func(dst, src net.Conn, n *int64, srcIsUp bool) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				lastActive.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:k]); werr != nil {
					if !srcIsUp {
						upErr.Store(true)
					}
					_ = src.Close()
					return
				}
				*n += int64(k)
				if srcIsUp {
					counted.Sent(k)
				} else {
					counted.Received(k)
				}
			}
			if err != nil {
				if err != io.EOF {
					if srcIsUp && !errors.Is(err, net.ErrClosed) {
						upErr.Store(true)
					}
					_ = dst.Close()
					return
				}
				_ = closeWrite(dst)
				return
			}
		}
	}
	wg.Add(2)
	go cp(up, down, &toUp, false)
	go cp(down, up, &toDown, true)
	wg.Wait()
	close(stop)
	return toUp, toDown, upErr.Load()
}
