package dataplane

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/store/mec"
)

// MaxMatches bounds how many matches one traffic filter may expand to
// (addresses × protocols); a bigger product is refused as unsupported.
const MaxMatches = 1024

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// String is "p" or "p-q".
func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return strconv.Itoa(int(p.Lo)) + "-" + strconv.Itoa(int(p.Hi))
}

// Match is one concrete match of a traffic filter: one source prefix, one
// destination prefix and one protocol; the port lists are alternatives.
type Match struct {
	// Family is 4, 6, or 0 when neither address is given (either family).
	Family int
	// Src and Dst are the prefixes; an invalid Prefix (the zero value)
	// means any address.
	Src, Dst netip.Prefix
	// Proto is the IP protocol number; AnyProto means any protocol.
	Proto    uint8
	AnyProto bool
	// SrcPorts and DstPorts are alternatives; empty means any port.
	SrcPorts, DstPorts []PortRange
	// DSCP and TC are the filter's dSCP and tC when Expand was told the
	// driver matches them (Allow); nil means any.
	DSCP, TC *uint8
}

// Allow names the traffic filter members a driver matches beyond
// addresses, ports and protocols.
type Allow struct {
	// DSCP: dSCP (MEC 011: IPv4 packets with that DSCP).
	DSCP bool
	// TC: tC (MEC 011: IPv6 packets with that Traffic Class).
	TC bool
}

// ProtoName is the protocol as IPFilterRule (RFC 6733) writes it: "ip" for
// any, the name for the common ones, else the number.
func (m Match) ProtoName() string {
	if m.AnyProto {
		return "ip"
	}
	if name, ok := canonicalProto[m.Proto]; ok {
		return name
	}
	return strconv.Itoa(int(m.Proto))
}

var protoNames = map[string]uint8{
	"icmp": 1, "igmp": 2, "ipip": 4, "ipinip": 4, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "icmp6": 58, "sctp": 132,
}

var canonicalProto = map[uint8]string{1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6", 132: "sctp"}

// HasPorts reports whether the protocol carries ports (TCP, UDP, SCTP).
func (m Match) HasPorts() bool {
	return !m.AnyProto && (m.Proto == 6 || m.Proto == 17 || m.Proto == 132)
}

// ParseProtocol reads a MEC protocol entry: a name (case-insensitive:
// TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH, IGMP, IPIP; "ANY" and "IP"
// mean any protocol) or a number 0..255.
func ParseProtocol(s string) (proto uint8, anyProto bool, ok bool) {
	l := strings.ToLower(strings.TrimSpace(s))
	if l == "any" || l == "ip" || l == "all" {
		return 0, true, true
	}
	if n, found := protoNames[l]; found {
		return n, false, true
	}
	if n, err := strconv.ParseUint(l, 10, 8); err == nil {
		return uint8(n), false, true
	}
	return 0, false, false
}

// Matches expands a traffic filter into matches, or returns an
// *UnsupportedError naming driver: for members no driver here can express
// (tokens/tags, tunnel addresses and ports, QCI, DSCP, TC), unknown
// protocol names, and filters whose source and destination addresses have
// no pair of one family. Address ranges "a-b" become the fewest prefixes
// covering them.
func Matches(driver string, f mec.TrafficFilter) ([]Match, error) { return Expand(driver, f, Allow{}) }

// Expand is Matches for a driver that also matches what allow names: those
// members are carried in every Match instead of being refused. A dSCP
// outside 0..63 or a tC outside 0..255 is unsupported.
func Expand(driver string, f mec.TrafficFilter, allow Allow) ([]Match, error) {
	switch {
	case len(f.Token) > 0 || len(f.Tag) > 0:
		return nil, Unsupported(driver, "traffic filter tokens/tags are not supported")
	case len(f.SrcTunnelAddress) > 0 || len(f.TgtTunnelAddress) > 0 || len(f.SrcTunnelPort) > 0 || len(f.DstTunnelPort) > 0:
		return nil, Unsupported(driver, "tunnel addresses and ports in a traffic filter are not supported")
	case f.QCI != nil:
		return nil, Unsupported(driver, "qCI in a traffic filter is not supported (a bearer's QoS class is not in the IP packet)")
	case f.DSCP != nil && !allow.DSCP, f.TC != nil && !allow.TC:
		return nil, Unsupported(driver, "qCI, dSCP and tC in a traffic filter are not supported")
	case f.DSCP != nil && (*f.DSCP < 0 || *f.DSCP > 63):
		return nil, Unsupported(driver, "dSCP %d is not 0..63", *f.DSCP)
	case f.TC != nil && (*f.TC < 0 || *f.TC > 255):
		return nil, Unsupported(driver, "tC %d is not 0..255", *f.TC)
	}
	var dscp, tc *uint8
	if f.DSCP != nil {
		v := uint8(*f.DSCP)
		dscp = &v
	}
	if f.TC != nil {
		v := uint8(*f.TC)
		tc = &v
	}
	srcs, err := prefixes(driver, "srcAddress", f.SrcAddress)
	if err != nil {
		return nil, err
	}
	dsts, err := prefixes(driver, "dstAddress", f.DstAddress)
	if err != nil {
		return nil, err
	}
	type proto struct {
		n   uint8
		any bool
	}
	protos := []proto{{any: true}}
	if len(f.Protocol) > 0 {
		protos = protos[:0]
		for _, p := range f.Protocol {
			n, a, ok := ParseProtocol(p)
			if !ok {
				return nil, Unsupported(driver, "unknown protocol %q", p)
			}
			protos = append(protos, proto{n, a})
		}
	}
	sports, err := ports(driver, "srcPort", f.SrcPort)
	if err != nil {
		return nil, err
	}
	dports, err := ports(driver, "dstPort", f.DstPort)
	if err != nil {
		return nil, err
	}
	var out []Match
	for _, s := range srcs {
		for _, d := range dsts {
			fam := family(s)
			if df := family(d); fam == 0 {
				fam = df
			} else if df != 0 && df != fam {
				continue // an IPv4 source never sends to an IPv6 destination
			}
			for _, p := range protos {
				if len(out) == MaxMatches {
					return nil, Unsupported(driver, "a traffic filter expands to more than %d matches", MaxMatches)
				}
				out = append(out, Match{Family: fam, Src: s, Dst: d, Proto: p.n, AnyProto: p.any, SrcPorts: sports, DstPorts: dports,
					DSCP: dscp, TC: tc})
			}
		}
	}
	if len(out) == 0 {
		return nil, Unsupported(driver, "no source and destination address of one IP family")
	}
	return out, nil
}

func family(p netip.Prefix) int {
	switch {
	case !p.IsValid():
		return 0
	case p.Addr().Is4():
		return 4
	}
	return 6
}

// prefixes parses addresses, prefixes and ranges; none means any (one
// invalid Prefix).
func prefixes(driver, field string, vs []string) ([]netip.Prefix, error) {
	if len(vs) == 0 {
		return []netip.Prefix{{}}, nil
	}
	var out []netip.Prefix
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		lo, hi, ok := strings.Cut(v, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if !ok || err1 != nil || err2 != nil || a.Is4() != b.Is4() || b.Less(a) {
			return nil, Unsupported(driver, "%s %q is not an address, prefix or range", field, v)
		}
		out = append(out, RangePrefixes(a, b)...)
	}
	return out, nil
}

func ports(driver, field string, vs []string) ([]PortRange, error) {
	var out []PortRange
	for _, v := range vs {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(v), "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || a > b {
			return nil, Unsupported(driver, "%s %q is not a port or range", field, v)
		}
		if a == 0 && b == 65535 {
			return nil, nil // any port
		}
		out = append(out, PortRange{uint16(a), uint16(b)})
	}
	return out, nil
}

// RangePrefixes returns the fewest prefixes that cover exactly lo..hi
// (both of one family, lo <= hi).
func RangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := lo.BitLen()
		// Grow the block while it starts at lo and ends within hi.
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1).Masked()
			if p.Addr() != lo || hi.Less(LastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		last := LastAddr(p)
		if !last.Less(hi) {
			return out
		}
		lo = last.Next()
	}
}

// LastAddr is the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		host := p.Bits() - i*8 // network bits left in this byte
		switch {
		case host <= 0:
			b[i] = 0xff
		case host < 8:
			b[i] |= 0xff >> host
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
