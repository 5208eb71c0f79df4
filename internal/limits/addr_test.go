package limits

import (
	"net"
	"net/netip"
	"testing"
)

// strAddr is a net.Addr known only by its text, as some wrapped
// connections report theirs.
type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{strAddr("192.0.2.7:143"), "192.0.2.7"},
		{strAddr("[::ffff:192.0.2.7]:143"), "192.0.2.7"},
		{strAddr("pipe"), ""},
		{&net.UnixAddr{Name: "/run/tern.sock", Net: "unix"}, ""},
		{nil, ""},
	} {
		got := ClientIP(tc.a)
		var want netip.Addr
		if tc.want != "" {
			want = netip.MustParseAddr(tc.want)
		}
		if got != want {
			t.Errorf("ClientIP(%v) = %v, want %v", tc.a, got, want)
		}
	}
}
