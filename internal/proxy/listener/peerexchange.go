package listener

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"weft.dev/weft/internal/proxy/peermeta"
)

// TCP peer metadata exchange. A TCP connection between two sidecars
// whose mTLS handshake negotiated xdsmeta.PeerExchangeALPN (the client
// sidecar offers it on the mesh mTLS of outbound clusters of TCP ports,
// the server sidecar accepts it on inbound TCP ports: the control
// plane's config says so) starts with one peermeta frame from each side:
// each writes its own at once and then reads the other's, so a
// server-first protocol waits for nothing more than the frames, which
// travel together with the handshake's last flight. The payload follows.
// The peer's workload labels the connection's metrics, access log line
// and tap event. A connection that did not negotiate it carries no frame:
// its bytes pass untouched and its peer is unknown.

// peerExchangeTimeout bounds the exchange: the other sidecar writes its
// frame right after its handshake.
const peerExchangeTimeout = 10 * time.Second

// exchangePeer writes this sidecar's frame on c and reads the peer's.
func (m *Manager) exchangePeer(c net.Conn) (peermeta.Workload, error) {
	if err := c.SetDeadline(time.Now().Add(peerExchangeTimeout)); err != nil {
		return peermeta.Workload{}, err
	}
	if _, err := c.Write(m.peerFrame); err != nil {
		return peermeta.Workload{}, fmt.Errorf("writing peer metadata frame: %w", err)
	}
	w, err := peermeta.ReadFrame(c)
	if err != nil {
		return peermeta.Workload{}, err
	}
	return w, c.SetDeadline(time.Time{})
}

// protocolError reports whether an exchange failed because the peer broke
// the exchange (an invalid or truncated frame, or none in time) rather
// than because the connection ended before it.
func protocolError(err error) bool {
	return errors.Is(err, peermeta.ErrFrame) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded)
}
