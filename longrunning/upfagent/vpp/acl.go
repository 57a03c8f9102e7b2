package vpp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/ip_types"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
)

// MaxEntries bounds the ACL entries of one rule; a bigger rule is refused
// as unsupported.
const MaxEntries = 4096

// maxTag is the longest ACL tag: VPP's string[64] with its NUL.
const maxTag = 63

// IP protocol numbers the entries treat specially.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// Entries returns the ACL entries of a rule's traffic filters: permit or
// deny entries; with family 4 or 6 only that family's (the next hop's of
// a FORWARD rule), else both. Filters the ACL plugin cannot express give
// an *dataplane.UnsupportedError.
func Entries(r dataplane.Rule, permit bool, family int) ([]acl_types.ACLRule, error) {
	action := acl_types.ACL_ACTION_API_DENY
	if permit {
		action = acl_types.ACL_ACTION_API_PERMIT
	}
	var out []acl_types.ACLRule
	for i, f := range r.Traffic.TrafficFilter {
		ms, err := dataplane.Matches(Name, f)
		if err != nil {
			return nil, fmt.Errorf("trafficFilter[%d]: %w", i, err)
		}
		for _, m := range ms {
			fams := []int{m.Family}
			if m.Family == 0 {
				fams = []int{4, 6}
			}
			protos := []uint8{m.Proto}
			hasPorts := len(m.SrcPorts) > 0 || len(m.DstPorts) > 0
			switch {
			case m.AnyProto && hasPorts:
				protos = []uint8{protoTCP, protoUDP, protoSCTP}
			case m.AnyProto:
				protos = []uint8{0}
			case hasPorts && !m.HasPorts():
				return nil, fmt.Errorf("trafficFilter[%d]: %w", i,
					dataplane.Unsupported(Name, "ports given for protocol %s, which has none", m.ProtoName()))
			}
			for _, fam := range fams {
				if family != 0 && fam != family {
					continue
				}
				for _, p := range protos {
					for _, sp := range portRanges(p, m.SrcPorts) {
						for _, dp := range portRanges(p, m.DstPorts) {
							if len(out) == MaxEntries {
								return nil, dataplane.Unsupported(Name, "the rule needs more than %d ACL entries", MaxEntries)
							}
							out = append(out, acl_types.ACLRule{IsPermit: action, SrcPrefix: prefix(m.Src, fam), DstPrefix: prefix(m.Dst, fam),
								Proto: ip_types.IPProto(p), SrcportOrIcmptypeFirst: sp.Lo, SrcportOrIcmptypeLast: sp.Hi,
								DstportOrIcmpcodeFirst: dp.Lo, DstportOrIcmpcodeLast: dp.Hi})
						}
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, dataplane.Unsupported(Name, "no traffic filter matches IPv%d traffic, the next hop's family", family)
	}
	return out, nil
}

// portRanges is the ranges an entry of protocol p matches: the given ones,
// else all: any ICMP type and code (0-255) for ICMP, any port otherwise.
func portRanges(p uint8, given []dataplane.PortRange) []dataplane.PortRange {
	switch {
	case len(given) > 0:
		return given
	case p == protoICMP || p == protoICMPv6:
		return []dataplane.PortRange{{Lo: 0, Hi: 255}}
	}
	return []dataplane.PortRange{{Lo: 0, Hi: 65535}}
}

// prefix converts p (invalid: any address of family fam).
func prefix(p netip.Prefix, fam int) ip_types.Prefix {
	if !p.IsValid() {
		if fam == 6 {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
	}
	return ip_types.Prefix{Address: address(p.Addr()), Len: uint8(p.Bits())}
}

// address converts a.
func address(a netip.Addr) ip_types.Address {
	if a.Is4() {
		return ip_types.Address{Af: ip_types.ADDRESS_IP4, Un: ip_types.AddressUnionIP4(a.As4())}
	}
	return ip_types.Address{Af: ip_types.ADDRESS_IP6, Un: ip_types.AddressUnionIP6(a.As16())}
}

// Ident is how a rule's ACL tag names it: "<appInstanceId>:<trafficRuleId>",
// or when the tag would be longer than VPP allows (room bytes), the key's
// start, "~" and 16 hex digits of the key's SHA-256.
func Ident(app, id string, room int) string {
	key := app + ":" + id
	if len(key) <= room {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return key[:room-17] + "~" + hex.EncodeToString(sum[:8])
}

// Tag is the ACL tag of a rule of priority prio (0..255).
func Tag(prefix string, prio int, app, id string) string {
	return prefix + ":" + strconv.Itoa(prio) + ":" + Ident(app, id, identRoom(prefix))
}

// identRoom is the room for the ident in a tag, whatever the priority's
// number of digits, so that a rule's ident does not change with it.
func identRoom(prefix string) int { return maxTag - len(prefix) - len(":255:") }

// parseTag reads a rule's tag: its priority and ident; ok is false for a
// tag that is not a rule tag of prefix.
func parseTag(prefix, tag string) (prio int, ident string, ok bool) {
	rest, found := strings.CutPrefix(tag, prefix+":")
	if !found {
		return 0, "", false
	}
	p, ident, found := strings.Cut(rest, ":")
	n, err := strconv.Atoi(p)
	if !found || err != nil || n < 0 || n > 255 || ident == "" {
		return 0, "", false
	}
	return n, ident, true
}

// anyEntries is the permit-everything ACL's entries.
func anyEntries() []acl_types.ACLRule {
	var out []acl_types.ACLRule
	for _, fam := range []int{4, 6} {
		out = append(out, acl_types.ACLRule{IsPermit: acl_types.ACL_ACTION_API_PERMIT, SrcPrefix: prefix(netip.Prefix{}, fam),
			DstPrefix: prefix(netip.Prefix{}, fam), SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535})
	}
	return out
}
