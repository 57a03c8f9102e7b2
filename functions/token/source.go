package token

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// sourceIPv6Bits is the prefix an IPv6 source is counted by: a host usually
// owns a whole /64, so counting single addresses would let it escape.
const sourceIPv6Bits = 64

// ParseTrustedProxies parses a comma-separated list of addresses and CIDR
// prefixes (KMEP_TRUSTED_PROXIES) into Deps.TrustedProxies. Empty: none.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// source names the client a token request is throttled as: the TCP peer's
// address or, while that is a trusted proxy, the address the proxy says it
// forwarded for (X-Forwarded-For, read from the right: the nearest hop that
// is not itself a trusted proxy; the leftmost when all are). IPv4 addresses
// stand for themselves, IPv6 ones for their /64.
func source(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "unknown"
	}
	a = a.Unmap().WithZone("")
	if isTrusted(a, trusted) {
		hops := forwardedFor(r)
		for i := len(hops) - 1; i >= 0; i-- {
			a = hops[i]
			if !isTrusted(a, trusted) {
				break
			}
		}
	}
	if a.Is6() {
		p, _ := a.Prefix(sourceIPv6Bits)
		return p.String()
	}
	return a.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the addresses of r's X-Forwarded-For headers, in
// order, up to the first entry that is not an address (what comes before a
// malformed entry cannot be trusted to be where it claims).
func forwardedFor(r *http.Request) []netip.Addr {
	var all []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		all = append(all, strings.Split(v, ",")...)
	}
	var out []netip.Addr
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
		if err != nil {
			break
		}
		out = append(out, a.Unmap().WithZone(""))
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
