package listener

import (
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/proxymetrics"
	"weft.dev/weft/internal/proxy/tap"
)

// finishTCP logs a closed TCP connection to al (nil: not logged) and
// hands it to the live tap when someone is tapping. Both see the same
// ends: the sidecar's own workload on one side; on the other the peer,
// from the peer metadata exchange when the connection had one (else
// unknown), with the principal of its verified certificate when the hop
// was mTLS.
func (m *Manager) finishTCP(e *accesslog.Entry, tm *proxymetrics.TCPConn, al *accesslog.Logger) {
	if m.opts.Tap == nil { // no hub to name the ends: log what is known
		if al != nil {
			al.Log(e)
		}
		return
	}
	tapping := m.opts.Tap.Active()
	if al == nil && !tapping {
		return
	}
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
	if al != nil {
		e.Source = accesslog.Peer{Workload: ev.Source.Workload, Namespace: ev.Source.Namespace, Principal: ev.Source.Principal}
		e.Destination = accesslog.Peer{Workload: ev.Destination.Workload, Namespace: ev.Destination.Namespace, Principal: ev.Destination.Principal}
		al.Log(e)
	}
	if tapping {
		m.opts.Tap.Publish(ev)
	}
}
