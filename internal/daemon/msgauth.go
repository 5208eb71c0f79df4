package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/ternmail/tern/internal/msgauth"
	"github.com/ternmail/tern/internal/mx"
	"github.com/ternmail/tern/internal/smtpd"
)

// resolver is the one DNS client of the daemon: the relay's MX lookups
// and the MX's SPF, DKIM and DMARC checks all ask [dns] nameserver.
func (d *Daemon) resolver() (*mx.Resolver, error) {
	if d.res != nil {
		return d.res, nil
	}
	res, err := mx.New(mx.Config{
		Nameserver: d.cfg.DNS.Nameserver,
		Hostname:   d.cfg.Hostname,
		Self:       mx.ListenSelf(d.cfg.Listen.SMTP),
	})
	if err != nil {
		return nil, err
	}
	d.res = res
	return res, nil
}

// checker builds what the MX authenticates incoming mail with, and the
// networks exempt from it; nil when [msgauth] verify is off.
func (d *Daemon) checker() (smtpd.Checker, []netip.Prefix, error) {
	ma := d.cfg.MsgAuth
	var trusted []netip.Prefix
	for _, n := range ma.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, nil, fmt.Errorf("msgauth.trusted_networks: %w", err)
		}
		trusted = append(trusted, p.Masked())
	}
	if !ma.Verify {
		return nil, trusted, nil
	}
	res, err := d.resolver()
	if err != nil {
		return nil, nil, fmt.Errorf("msgauth: %w", err)
	}
	return msgauth.NewChecker(msgauth.Config{Hostname: d.cfg.Hostname, DMARCReject: ma.DMARCReject},
		res, d.log.With("component", "msgauth")), trusted, nil
}

// relayDialer opens the relay's connections from the address the MX
// listens on, when that is one specific address: receivers check SPF
// and reverse DNS against the address mail comes from, and what "tern
// dns records" publishes is the MX's. A loopback listener binds only
// connections to loopback (tests run several servers on 127.0.0.x).
func relayDialer(smtpListen string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var src netip.Addr
	if host, _, err := net.SplitHostPort(smtpListen); err == nil {
		src, _ = netip.ParseAddr(host)
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var dl net.Dialer
		if src.IsValid() && !src.IsUnspecified() {
			dst, err := netip.ParseAddrPort(addr)
			if err == nil && (!src.IsLoopback() || dst.Addr().IsLoopback()) && src.Is4() == dst.Addr().Is4() {
				dl.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			}
		}
		return dl.DialContext(ctx, network, addr)
	}
}
