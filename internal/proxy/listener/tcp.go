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
	m.tcpToCluster(c, snap, pickTCPCluster(tp), tp, target, start)
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
// cluster, with half-close, and logs the connection.
func (m *Manager) tcpToCluster(c net.Conn, snap *dataplane.Snapshot, cluster string, tp *proxyconfig.TCPProxy, target string, start time.Time) {
	defer c.Close()
	e := accesslog.Entry{Start: start, Authority: target, Protocol: "TCP", UpstreamCluster: cluster}
	cl := snap.Clusters[cluster]
	tm := tcpMetricsConn(cluster, cl)
	if tm.Inbound {
		tm.PeerPrincipal = mtls.PeerOf(c)
		tm.MTLS = tm.PeerPrincipal != ""
	}
	m.opts.Metrics.TCPOpened(&tm)
	defer func() {
		e.Duration = time.Since(start)
		if e.Flags != "" {
			m.opts.Metrics.Flag(e.Flags)
		}
		tm.Flags = e.Flags
		m.opts.Metrics.TCPClosed(&tm, e.BytesSent, e.BytesReceived)
		m.opts.AccessLog.Log(&e)
		if m.opts.Tap.Active() {
			m.tapTCP(&e, &tm)
		}
	}()
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
		}
		m.log.Debug("tcp proxy: connect failed", "cluster", cluster, "error", err)
		return
	}
	if !m.trackRaw(up) {
		host.Done(true)
		return
	}
	defer m.untrackRaw(up)
	defer up.Close()
	var idle time.Duration
	if tp != nil {
		idle = tp.IdleTimeout
	}
	sent, recv, upErr := pipe(c, up, idle)
	e.BytesReceived, e.BytesSent = sent, recv
	if upErr {
		e.Flags = accesslog.FlagUpstreamTermination
	}
	host.Done(upErr)
}

// tcpMetricsConn is the mesh metrics' view of a connection to a cluster
// (nil when not found). No peer metadata travels on TCP: the peer stays
// unknown until mTLS identities exist.
func tcpMetricsConn(cluster string, cl *upstream.Cluster) proxymetrics.TCPConn {
	inbound := strings.HasPrefix(cluster, xdsmeta.ClusterInboundPrefix)
	meta := ""
	if cl != nil {
		meta = cl.Config().Service
	}
	return proxymetrics.TCPConn{Inbound: inbound, Service: proxymetrics.ServiceOf(cluster, meta, inbound)}
}

// pipe copies down->up and up->down until both directions end, passing
// half-closes along. It returns the byte counts and whether the upstream
// side failed.
func pipe(down, up net.Conn, idle time.Duration) (toUp, toDown int64, upFailed bool) {
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
