package callback

import "net/netip"

// IPv6 prefixes whose addresses carry an IPv4 address that traffic to them
// ends up at (through a translator, a tunnel or the host's own stack).
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")           // RFC 4291 2.5.5.1 (deprecated, still routed by some stacks)
	ipv4Mapped     = netip.MustParsePrefix("::ffff:0:0/96")   // RFC 4291 2.5.5.2
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 (SIIT)
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052
	nat64LocalUse  = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380
)

// embeddedIPv4 returns the IPv4 addresses the IPv6 address ip (zoneless,
// not IPv4-mapped: those are unmapped before) may stand for, so that the
// IPv4 policy applies to them too:
//
//   - IPv4-compatible ::a.b.c.d (but :: and ::1), SIIT ::ffff:0:a.b.c.d and the NAT64
//     well-known prefix 64:ff9b::/96: the last 32 bits;
//   - the NAT64 local-use prefix 64:ff9b:1::/48, whose operator picks the
//     length of its NAT64 prefix inside it: the IPv4 address at every
//     position RFC 6052 defines for a prefix of /48, /56, /64 or /96
//     (each is judged; one refused is enough);
//   - 6to4 2002:AABB:CCDD::/48: a.b.c.d from bits 16..47;
//   - Teredo 2001:0::/32: the server (bits 32..63) and the client (the
//     last 32 bits, inverted).
//
// Any other address carries none.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() || ip.Is4In6() {
		return nil
	}
	b := ip.As16()
	v4 := func(p ...byte) netip.Addr { return netip.AddrFrom4([4]byte{p[0], p[1], p[2], p[3]}) }
	switch {
	case ip == netip.IPv6Unspecified() || ip == netip.IPv6Loopback():
		// In ::/96, but not IPv4-compatible (RFC 4291): judged as themselves.
		return nil
	case ipv4Compatible.Contains(ip), ipv4Translated.Contains(ip), nat64WellKnown.Contains(ip):
		return []netip.Addr{v4(b[12], b[13], b[14], b[15])}
	case nat64LocalUse.Contains(ip):
		// RFC 6052 2.2: bits 64..71 (byte 8) are the reserved "u" octet.
		return []netip.Addr{
			v4(b[6], b[7], b[9], b[10]),   // /48
			v4(b[7], b[9], b[10], b[11]),  // /56
			v4(b[9], b[10], b[11], b[12]), // /64
			v4(b[12], b[13], b[14], b[15]),
		}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(b[2], b[3], b[4], b[5])}
	case teredo.Contains(ip):
		return []netip.Addr{v4(b[4], b[5], b[6], b[7]), v4(^b[12], ^b[13], ^b[14], ^b[15])}
	}
	return nil
}
