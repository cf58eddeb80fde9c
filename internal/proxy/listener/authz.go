package listener

import (
	"net"
	"net/netip"

	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/mtls"
	"weft.dev/weft/internal/proxy/rbac"
)

// authorizeTCP runs a TCP chain's RBAC filters on a new connection. The
// principal is the verified peer certificate's SPIFFE ID (c is an
// *mtls.Conn after a TLS handshake); a denied connection is closed by the
// caller without a byte sent upstream.
func (m *Manager) authorizeTCP(c net.Conn, ch *dataplane.Chain) bool {
	in := &rbac.Input{Principal: mtls.PeerOf(c)}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			in.SourceIP = ip.Unmap()
			in.RemoteIP = in.SourceIP
		}
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			in.DestIP = ip.Unmap()
		}
		in.DestPort = uint32(a.Port)
	}
	d := ch.Config.RBAC.Evaluate(in)
	if d.Audit != "" {
		m.log.Info("authorization audit", "policy", d.Audit, "principal", in.Principal, "chain", ch.Config.Name, "allowed", d.Allowed)
	}
	if !d.Allowed {
		m.log.Debug("connection denied by authorization policy", "policy", d.Policy, "action", d.Action.String(), "principal", in.Principal, "remote", c.RemoteAddr().String())
		m.opts.Metrics.Flag(rbac.ResponseFlagRBAC)
	}
	return d.Allowed
}
