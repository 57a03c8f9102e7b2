package callback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// Client returns an *http.Client for delivering notifications. Its transport
// resolves callback hosts with the Policy's Resolver and checks, in
// net.Dialer.ControlContext, every address it actually connects to (so a
// name that resolved to a public address at Validate time and to an
// internal one now is still refused). A refused dial fails with an error
// wrapping ErrForbiddenAddress.
//
// Redirects are not followed (the 3xx response is returned), proxies from
// the environment are not used, dials time out after DialTimeout, TLS
// handshakes after TLSHandshakeTimeout, and each request after
// Options.Timeout. Idle connections are pooled (MaxIdleConnsPerHost per
// host). Every call returns a fresh *http.Client sharing one Transport, so a
// caller changing its copy does not affect others.
func (p *Policy) Client() *http.Client {
	c := *p.client
	return &c
}

func (p *Policy) newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           p.dialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   TLSHandshakeTimeout,
			ResponseHeaderTimeout: p.timeout,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   MaxIdleConnsPerHost,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       p.timeout,
	}
}

// dialContext resolves addr's host with the Policy's Resolver and dials the
// addresses in the order returned until one connects. The policy check runs
// in the dialer's ControlContext, on the address being connected to.
func (p *Policy) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("callback dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("callback dial %s: invalid port: %w", addr, err)
	}
	d := &net.Dialer{
		Timeout:   DialTimeout,
		KeepAlive: 30 * time.Second,
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			return p.checkDial(host, address)
		},
	}

	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
		host = ""
	} else {
		lctx, cancel := context.WithTimeout(ctx, DialTimeout)
		ips, err = p.resolver.LookupNetIP(lctx, lookupNetwork(network), host)
		cancel()
		if err == nil && len(ips) == 0 {
			err = errNoAddress
		}
		if err != nil {
			return nil, fmt.Errorf("callback dial %s: %w: %w", addr, ErrUnresolvable, err)
		}
	}

	var errs []error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("callback dial %s: %w", addr, errors.Join(errs...))
}

// checkDial is the dialer's control hook: address is the "ip:port" about to
// be connected to, host the name it was reached through ("" for a literal).
func (p *Policy) checkDial(host, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrForbiddenAddress, address)
	}
	if !p.Permitted(ap.Addr(), host) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// lookupNetwork maps a dial network to the LookupNetIP network.
func lookupNetwork(network string) string {
	switch network {
	case "tcp4", "udp4":
		return "ip4"
	case "tcp6", "udp6":
		return "ip6"
	}
	return "ip"
}
