package listener

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from the kernel's
// netfilter_ipv6/ip6_tables.h, which x/sys/unix does not define.
const ip6tSOOriginalDst = 80

// originalDst returns the destination a connection had before iptables
// redirected it (SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for
// IPv6). For a connection that was not redirected it returns the local
// address, or an error when conntrack does not track it.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(syscall.Conn)
	la, _ := c.LocalAddr().(*net.TCPAddr)
	if !ok || la == nil {
		return netip.AddrPort{}, fmt.Errorf("%T is not a TCP connection", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var out netip.AddrPort
	var gerr error
	err = rc.Control(func(fd uintptr) {
		if la.IP.To4() != nil {
			// The kernel writes a sockaddr_in: family, port (network
			// order), address; IPv6Mreq is a 20-byte buffer that holds it.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				gerr = fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
				return
			}
			b := m.Multiaddr
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			return
		}
		// A sockaddr_in6 fits in IPv6MTUInfo's leading RawSockaddrInet6.
		i, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
		if err != nil {
			gerr = fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
			return
		}
		port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, i.Addr.Port))
		out = netip.AddrPortFrom(netip.AddrFrom16(i.Addr.Addr).Unmap(), port)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return out, gerr
}
