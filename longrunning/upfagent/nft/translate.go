package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store/mec"
)

// MaxParts bounds the nftables rules one traffic rule becomes (matches ×
// protocols × port ranges, in each chain); a bigger rule is unsupported.
const MaxParts = 1024

// chainRef is one of the chains that hold the traffic rules.
type chainRef uint8

const (
	ip4Filter chainRef = iota // ip kmep rules
	ip4NAT                    // ip kmep nat
	ip6Filter                 // ip6 kmep rules
	ip6NAT                    // ip6 kmep nat
	numChains
)

// Chain names in each of the driver's tables.
const (
	// BaseFilter hooks prerouting at priority mangle (-150), before
	// destination NAT: it jumps to RulesChain (for the configured
	// interfaces).
	BaseFilter = "prerouting"
	// BaseNAT hooks prerouting as a nat chain at priority dstnat (-100):
	// it jumps to NATChain.
	BaseNAT = "dstnat"
	// RulesChain jumps, in priority order (0 first), to one chain per
	// priority in use, "rules_000" to "rules_255", which holds the traffic
	// rules of that priority.
	RulesChain = "rules"
	// NATChain does the same ("nat_000" ...) for the rules a FORWARD rule's
	// DNAT depends on: the FORWARD rules, and the PASSTHROUGH and DUPLICATE
	// rules that must keep packets away from them.
	NATChain = "nat"
)

func (c chainRef) family() byte {
	if c >= ip6Filter {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

func (c chainRef) name() string {
	if c == ip4NAT || c == ip6NAT {
		return NATChain
	}
	return RulesChain
}

func chainOf(fam int, nat bool) chainRef {
	c := ip4Filter
	if fam == 6 {
		c = ip6Filter
	}
	if nat {
		c++
	}
	return c
}

// part is one nftables rule of a traffic rule.
type part struct {
	ch    chainRef
	exprs []expr.Any
}

// verdicts are what a rule's matches lead to in each chain.
type verdicts struct {
	filter func(fam int) []expr.Any
	// nat is nil when the rule has nothing to do in the NAT chain.
	nat func(fam int) []expr.Any
	// only restricts the rule to one family (that of its destination), or 0.
	only int
}

// translate turns a traffic rule into nftables rules, or returns an
// *dataplane.UnsupportedError saying what nftables cannot express.
func translate(r dataplane.Rule) ([]part, error) {
	tr := r.Traffic
	vs, err := actionOf(tr)
	if err != nil {
		return nil, err
	}
	var parts []part
	for i, f := range tr.TrafficFilter {
		ms, err := dataplane.Expand(Name, f, dataplane.Allow{DSCP: true, TC: true})
		if err != nil {
			return nil, fmt.Errorf("trafficFilter[%d]: %w", i, err)
		}
		for _, m := range ms {
			for _, fam := range families(m, vs.only) {
				conds, err := conditions(m, fam)
				if err != nil {
					return nil, fmt.Errorf("trafficFilter[%d]: %w", i, err)
				}
				for _, c := range conds {
					parts = append(parts, part{ch: chainOf(fam, false),
						exprs: append(append(slices.Clip(c), &expr.Counter{}), vs.filter(fam)...)})
					if vs.nat != nil {
						parts = append(parts, part{ch: chainOf(fam, true), exprs: append(slices.Clip(c), vs.nat(fam)...)})
					}
					if len(parts) > MaxParts {
						return nil, dataplane.Unsupported(Name, "the rule needs more than %d nftables rules", MaxParts)
					}
				}
			}
		}
	}
	if len(parts) == 0 {
		if vs.only != 0 {
			return nil, dataplane.Unsupported(Name, "no traffic filter matches packets of the IPv%d family of dstIpAddress", vs.only)
		}
		return nil, dataplane.Unsupported(Name, "no packet can match the traffic filters (dSCP matches IPv4 packets, tC IPv6 ones)")
	}
	slices.SortStableFunc(parts, func(a, b part) int { return int(a.ch) - int(b.ch) })
	return parts, nil
}

var (
	accept = []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	drop   = []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
)

func acceptFn(int) []expr.Any { return accept }

// actionOf reads the rule's action and destination.
func actionOf(tr mec.TrafficRule) (verdicts, error) {
	switch a := tr.Action; a {
	case "DROP":
		return verdicts{filter: func(int) []expr.Any { return drop }}, nil
	case "PASSTHROUGH":
		// Accepted in both chains: no lower-priority rule drops, copies or
		// redirects it; it goes where it was going.
		return verdicts{filter: acceptFn, nat: acceptFn}, nil
	case "FORWARD_DECAPSULATED":
		dst, err := destination(tr, 0)
		if err != nil {
			return verdicts{}, err
		}
		// Accepted by the filter chain (a lower-priority DROP does not drop
		// it), redirected to dst by the NAT chain: DNAT of the connection's
		// first packet, which conntrack applies to the rest of it and
		// undoes on the replies.
		return verdicts{filter: acceptFn, nat: func(int) []expr.Any {
			return []expr.Any{&expr.Immediate{Register: 1, Data: dst.AsSlice()},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: nfproto(dst), RegAddrMin: 1}}
		}, only: famOf(dst)}, nil
	case "DUPLICATE_DECAPSULATED":
		dst, err := destination(tr, 0)
		if err != nil {
			return verdicts{}, err
		}
		if di := tr.DstInterface.List; len(di) > 1 && di[1].InterfaceType == "TUNNEL" {
			return verdicts{}, dataplane.Unsupported(Name,
				"%s: dstInterface[1] (the network side) is a TUNNEL interface, which needs an encapsulation nftables cannot add", a)
		}
		// A copy goes to dst (nft's dup: the packet unchanged, routed to
		// dst as its next hop); the packet itself goes on to where it was
		// going, and no lower-priority rule redirects it.
		return verdicts{filter: func(int) []expr.Any {
			return []expr.Any{&expr.Immediate{Register: 1, Data: dst.AsSlice()}, &expr.Dup{RegAddr: 1},
				&expr.Verdict{Kind: expr.VerdictAccept}}
		}, nat: acceptFn, only: famOf(dst)}, nil
	case "FORWARD_ENCAPSULATED", "DUPLICATE_ENCAPSULATED":
		return verdicts{}, dataplane.Unsupported(Name, "%s needs a GTP-U or GRE encapsulation, which nftables cannot add", a)
	default:
		return verdicts{}, dataplane.Unsupported(Name, "unknown action %q", a)
	}
}

// destination is the IP address of dstInterface[i].
func destination(tr mec.TrafficRule, i int) (netip.Addr, error) {
	if tr.DstInterface == nil || len(tr.DstInterface.List) <= i {
		return netip.Addr{}, dataplane.Unsupported(Name, "%s needs dstInterface", tr.Action)
	}
	d := tr.DstInterface.List[i]
	if d.InterfaceType == "TUNNEL" {
		tt := "a tunnel"
		if d.TunnelInfo != nil {
			tt = d.TunnelInfo.TunnelType
		}
		return netip.Addr{}, dataplane.Unsupported(Name, "%s to a TUNNEL interface needs a %s encapsulation, which nftables cannot add", tr.Action, tt)
	}
	if d.DstIPAddress == "" {
		return netip.Addr{}, dataplane.Unsupported(Name,
			"%s needs dstInterface.dstIpAddress: packets are steered to an IP address (DNAT, dup), not to a MAC address alone", tr.Action)
	}
	a, err := netip.ParseAddr(d.DstIPAddress)
	if err != nil || a.Zone() != "" || a.IsUnspecified() {
		return netip.Addr{}, dataplane.Unsupported(Name, "dstInterface.dstIpAddress %q is not a usable IP address", d.DstIPAddress)
	}
	return a.Unmap(), nil
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func nfproto(a netip.Addr) uint32 {
	if a.Is4() {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}

// families are the IP families a match is put in: those of its addresses
// (both without any), narrowed to the IPv4 family by dSCP and to IPv6 by
// tC (MEC 011 defines dSCP for IPv4 packets and tC for IPv6 ones; with
// both, each family is matched on its own field), and to only when set.
func families(m dataplane.Match, only int) []int {
	var out []int
	for _, f := range []int{4, 6} {
		switch {
		case m.Family != 0 && m.Family != f, only != 0 && only != f,
			f == 4 && m.TC != nil && m.DSCP == nil, f == 6 && m.DSCP != nil && m.TC == nil:
			continue
		}
		out = append(out, f)
	}
	return out
}

// Protocol numbers with ports.
const (
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// conditions are the expressions of a match in family fam, one list per
// protocol and pair of port ranges (ports without a protocol mean TCP,
// UDP and SCTP).
func conditions(m dataplane.Match, fam int) ([][]expr.Any, error) {
	var base []expr.Any
	// Destination first: in a long chain, most rules are passed over on it.
	base = append(base, address(m.Dst, fam, false)...)
	base = append(base, address(m.Src, fam, true)...)
	switch {
	case fam == 4 && m.DSCP != nil:
		// ip dscp: the top 6 bits of the second byte.
		base = append(base, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 1, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0xfc}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{*m.DSCP << 2}})
	case fam == 6 && m.TC != nil:
		// ip6 traffic class: bits 4..11 of the first two bytes.
		base = append(base, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0x0f, 0xf0}, Xor: []byte{0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(*m.TC)<<4)})
	}
	ports := len(m.SrcPorts) > 0 || len(m.DstPorts) > 0
	protos := []int{int(m.Proto)}
	switch {
	case m.AnyProto && ports:
		protos = []int{protoTCP, protoUDP, protoSCTP}
	case m.AnyProto:
		protos = []int{-1}
	case ports && !m.HasPorts():
		return nil, dataplane.Unsupported(Name, "ports given for protocol %s, which has none", m.ProtoName())
	}
	var out [][]expr.Any
	for _, p := range protos {
		c := slices.Clone(base)
		if p >= 0 {
			c = append(c, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}})
		}
		for _, sp := range orAny(m.SrcPorts) {
			for _, dp := range orAny(m.DstPorts) {
				e := slices.Clone(c)
				e = append(e, port(sp, 0)...)
				e = append(e, port(dp, 2)...)
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// orAny is the ranges, or one "any" range (nil) when there are none.
func orAny(rs []dataplane.PortRange) []*dataplane.PortRange {
	if len(rs) == 0 {
		return []*dataplane.PortRange{nil}
	}
	out := make([]*dataplane.PortRange, len(rs))
	for i := range rs {
		out[i] = &rs[i]
	}
	return out
}

// port matches the transport header's source (offset 0) or destination
// (offset 2) port against r (nil: nothing).
func port(r *dataplane.PortRange, offset uint32) []expr.Any {
	if r == nil {
		return nil
	}
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}
	lo := binary.BigEndian.AppendUint16(nil, r.Lo)
	if r.Lo == r.Hi {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo}}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: binary.BigEndian.AppendUint16(nil, r.Hi)}}
}

// address matches the network header's source or destination address
// against p (an invalid Prefix, or a /0: nothing).
func address(p netip.Prefix, fam int, src bool) []expr.Any {
	if !p.IsValid() || p.Bits() == 0 {
		return nil
	}
	off, n := uint32(16), uint32(4) // ip daddr
	switch {
	case fam == 4 && src:
		off = 12
	case fam == 6 && src:
		off, n = 8, 16
	case fam == 6:
		off, n = 24, 16
	}
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	if p.Bits() < p.Addr().BitLen() {
		mask := make([]byte, n)
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

// dispatch is the rule of a base chain that sends packets from interface
// iface ("" every interface; a trailing '*' matches a name prefix) to the
// chain to.
func dispatch(iface, to string) []expr.Any {
	var out []expr.Any
	if iface != "" {
		name := []byte(iface)
		if name[len(name)-1] == '*' {
			name = name[:len(name)-1] // compare the prefix only
		} else {
			name = append(name, make([]byte, unix.IFNAMSIZ-len(name))...)
		}
		out = append(out, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name})
	}
	return append(out, &expr.Verdict{Kind: expr.VerdictJump, Chain: to})
}

// jumpTo is the verdict of a jump to chain.
func jumpTo(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}
