package listener

import (
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
)

// tapTCP hands a closed TCP connection to the live tap; the caller checks
// that someone is tapping. TCP carries no peer metadata, so the peer is
// unknown.
func (m *Manager) tapTCP(e *accesslog.Entry, tm *proxymetrics.TCPConn) {
	flags := e.Flags
	if flags == "" {
		flags = "-"
	}
	ev := &tap.Event{
		Kind: tap.KindTCP, Time: e.Start, Protocol: "TCP", Authority: e.Authority,
		DurationMs:    float64(e.Duration) / float64(time.Millisecond),
		BytesReceived: e.BytesReceived, BytesSent: e.BytesSent, ResponseFlags: flags,
		UpstreamHost: e.UpstreamHost, UpstreamCluster: e.UpstreamCluster,
	}
	m.opts.Tap.Ends(ev, tm.Inbound, tm.Peer, tm.Service)
	m.opts.Tap.Principals(ev, tm.Inbound, tm.PeerPrincipal)
	m.opts.Tap.Publish(ev)
}
