//go:build !linux

package listener

import (
	"errors"
	"net"
	"net/netip"
)

// originalDst is only available on Linux: transparent listeners serve
// every connection as on any other listener elsewhere.
func originalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination is only available on Linux")
}
