package callback

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Resolver looks up the addresses of a host name. *net.Resolver implements
// it; tests pass a hand-written fake.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Options configures a Policy.
type Options struct {
	// Allow opens addresses and host names the default rules refuse.
	// Zero value: nothing extra is allowed.
	Allow AllowList
	// Deny refuses addresses the default rules permit (KMEP_CALLBACK_DENY,
	// see ParseDenyList), e.g. the cluster's private ranges. It wins over
	// Allow, names included. Zero value: nothing extra is refused.
	Deny []netip.Prefix
	// OwnAddrs are the platform's own addresses (or ranges), refused as
	// callback targets. Zero value: none.
	OwnAddrs []netip.Prefix
	// IncludeInterfaceAddrs adds the addresses of this host's network
	// interfaces (net.InterfaceAddrs, read once by New) to OwnAddrs, each as a
	// single address, not its subnet. Zero value: interfaces are not read.
	IncludeInterfaceAddrs bool
	// Resolver resolves host names both in Validate and when the Client
	// dials. Zero value: net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds each request made with the Client: the whole exchange
	// (http.Client.Timeout) and the wait for response headers.
	// Zero value: 10 s.
	Timeout time.Duration
}

// Limits of the Client (and of Validate's lookup).
const (
	// DefaultTimeout is the per-request timeout when Options.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DialTimeout bounds each connect attempt and each host name lookup.
	DialTimeout = 3 * time.Second
	// TLSHandshakeTimeout bounds the TLS handshake of https callbacks.
	TLSHandshakeTimeout = 5 * time.Second
	// MaxIdleConnsPerHost is the keep-alive pool size per callback host.
	MaxIdleConnsPerHost = 16
)

// Policy decides whether callback URLs and addresses may be used. It is
// immutable after New and safe for concurrent use.
type Policy struct {
	allow    AllowList
	deny     []netip.Prefix
	own      []netip.Prefix
	resolver Resolver
	timeout  time.Duration
	client   *http.Client
}

// New builds a Policy from o. It fails on an invalid OwnAddrs or Deny
// prefix, a negative Timeout, or when IncludeInterfaceAddrs is set and the
// interface addresses cannot be read.
func New(o Options) (*Policy, error) {
	if o.Timeout < 0 {
		return nil, fmt.Errorf("callback policy: negative timeout %v", o.Timeout)
	}
	p := &Policy{allow: o.Allow, resolver: o.Resolver, timeout: o.Timeout}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	for _, pfx := range o.OwnAddrs {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("callback policy: invalid own address prefix %v", pfx)
		}
		p.own = append(p.own, canonicalPrefix(pfx))
	}
	for _, pfx := range o.Deny {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("callback policy: invalid denied prefix %v", pfx)
		}
		p.deny = append(p.deny, canonicalPrefix(pfx))
	}
	if o.IncludeInterfaceAddrs {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("callback policy: read interface addresses: %w", err)
		}
		for _, a := range addrs {
			ip, ok := interfaceAddr(a)
			if !ok {
				continue
			}
			p.own = append(p.own, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	p.client = p.newClient()
	return p, nil
}

// interfaceAddr extracts the (unmapped, zoneless) address of an interface
// address as returned by net.InterfaceAddrs.
func interfaceAddr(a net.Addr) (netip.Addr, bool) {
	var raw net.IP
	switch v := a.(type) {
	case *net.IPNet:
		raw = v.IP
	case *net.IPAddr:
		raw = v.IP
	default:
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// Permitted reports whether a callback may connect to ip, reached through the
// host name host ("" when the URL holds an IP literal). ip is judged without
// its IPv6 zone, and an IPv6 address that carries an IPv4 address
// (IPv4-mapped or -compatible, SIIT, NAT64 well-known and local-use, 6to4,
// Teredo: see embeddedIPv4) is judged as itself and as every IPv4 address it
// may carry, each of which must be permitted. In order:
//
//  1. an address in a denied prefix (Options.Deny) is refused, whatever the
//     rest says;
//  2. a host name in the allow list is permitted, whatever ip is;
//  3. a host name refused by name (the cloud metadata names) is refused: only
//     naming it in the allow list opens it;
//  4. an address in an allowed prefix is permitted;
//  5. the refused address ranges and the platform's own addresses are
//     refused;
//  6. everything else, private ranges included, is permitted.
//
// The invalid netip.Addr is refused (unless rule 2 applies).
func (p *Policy) Permitted(ip netip.Addr, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var judged []netip.Addr
	if ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		judged = append([]netip.Addr{ip}, embeddedIPv4(ip)...)
	}
	for _, a := range judged {
		if p.denied(a) {
			return false
		}
	}
	if p.allow.allowsHost(host) {
		return true
	}
	if host != "" && refusedName(host) {
		return false
	}
	if !ip.IsValid() {
		return false
	}
	for _, a := range judged {
		if !p.addrPermitted(a) {
			return false
		}
	}
	return true
}

// addrPermitted judges one address (unmapped, zoneless) by rules 4-6.
func (p *Policy) addrPermitted(ip netip.Addr) bool {
	if p.allow.containsAddr(ip) {
		return true
	}
	if refusedAddr(ip) {
		return false
	}
	for _, pfx := range p.own {
		if pfx.Contains(ip) {
			return false
		}
	}
	return true
}

// denied reports whether ip (unmapped, zoneless) is in a denied prefix.
func (p *Policy) denied(ip netip.Addr) bool {
	for _, pfx := range p.deny {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// refusedNames are cloud metadata names, refused whatever they resolve to.
var refusedNames = [...]string{
	"metadata.google.internal",
	"metadata",
	"instance-data",
	"instance-data.ec2.internal",
}

// refusedName reports whether the normalized host name is refused by name.
func refusedName(host string) bool {
	for _, n := range refusedNames {
		if host == n {
			return true
		}
	}
	return false
}

// refusedPrefixes are the ranges the netip predicates do not already cover.
var refusedPrefixes = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network"; 0.0.0.0 reaches the local host
	netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS metadata over IPv6
}

// refusedAddr reports whether ip (unmapped, zoneless) is in a range refused
// by default.
func refusedAddr(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() ||
		ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, pfx := range refusedPrefixes {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}
