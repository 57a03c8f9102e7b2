package callback

import (
	"fmt"
	"net/netip"
	"strings"
)

// AllowList holds the addresses and host names that are permitted even when
// the default rules would refuse them. The zero value allows nothing extra.
// An AllowList is immutable and safe for concurrent use.
type AllowList struct {
	prefixes []netip.Prefix
	names    []string // exact host names, lower case, no trailing dot
	suffixes []string // from "*.example.com": ".example.com"
}

// ParseAllowList parses the KMEP_CALLBACK_ALLOW syntax: entries separated by
// commas and/or white space, each one of
//
//   - a CIDR prefix ("127.0.0.0/8", "fd00::/8");
//   - a single IP address ("127.0.0.1", "::1");
//   - a host name, matched exactly and case-insensitively ("localhost");
//   - "*." followed by a host name, matching every subdomain of that name but
//     not the name itself ("*.svc.cluster.local").
//
// IPv4-mapped IPv6 entries are stored as the IPv4 address they carry. The
// empty string gives the zero AllowList. Because Validate requires every
// address of a name to be permitted, opening http://localhost takes
// "localhost" or both "127.0.0.0/8" and "::1" (localhost usually resolves to
// both). The first malformed entry is an
// error naming it.
func ParseAllowList(s string) (AllowList, error) {
	var a AllowList
	entries := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	for _, e := range entries {
		switch {
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return AllowList{}, fmt.Errorf("callback allowlist entry %q: %w", e, err)
			}
			a.prefixes = append(a.prefixes, canonicalPrefix(p))
		case strings.HasPrefix(e, "*."):
			name, ok := normalizeHostName(e[2:])
			if !ok {
				return AllowList{}, fmt.Errorf("callback allowlist entry %q: not a host name pattern", e)
			}
			a.suffixes = append(a.suffixes, "."+name)
		default:
			if ip, err := netip.ParseAddr(e); err == nil {
				if ip.Zone() != "" {
					return AllowList{}, fmt.Errorf("callback allowlist entry %q: zoned addresses are not supported", e)
				}
				ip = ip.Unmap()
				a.prefixes = append(a.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
				continue
			}
			name, ok := normalizeHostName(e)
			if !ok || looksLikeIPv4(name) {
				return AllowList{}, fmt.Errorf("callback allowlist entry %q: not a CIDR, IP address or host name", e)
			}
			a.names = append(a.names, name)
		}
	}
	return a, nil
}

// ParseDenyList parses the KMEP_CALLBACK_DENY syntax: entries separated by
// commas and/or white space, each a CIDR prefix ("10.0.0.0/8",
// "fd00::/8") or a single IP address. IPv4-mapped IPv6 entries are stored
// as the IPv4 prefix they cover. Host names are not accepted (what they
// resolve to can change; deny the addresses). The empty string gives no
// prefixes. The first malformed entry is an error naming it.
func ParseDenyList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	entries := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	for _, e := range entries {
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("callback denylist entry %q: %w", e, err)
			}
			out = append(out, canonicalPrefix(p))
			continue
		}
		ip, err := netip.ParseAddr(e)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("callback denylist entry %q: not a CIDR or an IP address", e)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// String returns the list in ParseAllowList syntax, comma-separated.
func (a AllowList) String() string {
	var parts []string
	for _, p := range a.prefixes {
		parts = append(parts, p.String())
	}
	parts = append(parts, a.names...)
	for _, s := range a.suffixes {
		parts = append(parts, "*"+s)
	}
	return strings.Join(parts, ",")
}

// containsAddr reports whether ip lies in an allowed prefix. ip must already
// be unmapped and without zone.
func (a AllowList) containsAddr(ip netip.Addr) bool {
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// allowsHost reports whether the host name is allowed by name. host must
// already be normalized (lower case, no trailing dot).
func (a AllowList) allowsHost(host string) bool {
	if host == "" {
		return false
	}
	for _, n := range a.names {
		if host == n {
			return true
		}
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// canonicalPrefix masks p and turns an IPv4-mapped IPv6 prefix of at least
// 96 bits into the IPv4 prefix it covers, so that it matches unmapped
// addresses.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
