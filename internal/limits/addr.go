package limits

import (
	"net"
	"net/netip"
)

// ClientIP returns the IP address of a connection's remote end (its
// RemoteAddr), IPv4-mapped IPv6 unmapped, or the zero Addr when a has
// none (a Unix socket, a pipe, nil).
func ClientIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
