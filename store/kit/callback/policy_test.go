package callback_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/callback"
)

func TestPermitted(t *testing.T) {
	tests := []struct {
		name  string
		ip    string // "" for the invalid netip.Addr
		host  string
		allow string
		deny  string
		own   string
		want  bool
	}{
		{name: "public v4", ip: "93.184.215.14", want: true},
		{name: "public v6", ip: "2606:2800:220:1::1", want: true},
		{name: "private 10/8", ip: "10.1.2.3", want: true},
		{name: "private 172.16/12", ip: "172.31.255.1", want: true},
		{name: "private 192.168/16", ip: "192.168.1.1", want: true},
		{name: "unique local fc00::/7", ip: "fd12:3456::1", want: true},
		{name: "zoned global v6", ip: "2001:db8::1%eth0", want: true},
		{name: "loopback v4", ip: "127.0.0.1", want: false},
		{name: "loopback v4 range", ip: "127.200.0.9", want: false},
		{name: "loopback v6", ip: "::1", want: false},
		{name: "mapped loopback", ip: "::ffff:127.0.0.1", want: false},
		{name: "unspecified v4", ip: "0.0.0.0", want: false},
		{name: "this network", ip: "0.1.2.3", want: false},
		{name: "unspecified v6", ip: "::", want: false},
		{name: "mapped unspecified", ip: "::ffff:0.0.0.0", want: false},
		{name: "link-local metadata", ip: "169.254.169.254", want: false},
		{name: "mapped metadata", ip: "::ffff:169.254.169.254", want: false},
		{name: "link-local v6", ip: "fe80::1", want: false},
		{name: "zoned link-local v6", ip: "fe80::1%eth0", want: false},
		{name: "aws v6 metadata", ip: "fd00:ec2::254", want: false},
		{name: "aws v6 neighbour", ip: "fd00:ec2::253", want: true},
		{name: "alibaba metadata", ip: "100.100.100.200", want: false},
		{name: "cgnat neighbour", ip: "100.100.100.201", want: true},
		{name: "multicast v4", ip: "224.0.0.1", want: false},
		{name: "multicast v4 global", ip: "239.1.2.3", want: false},
		{name: "multicast v6", ip: "ff02::1", want: false},
		{name: "multicast v6 interface-local", ip: "ff01::1", want: false},
		{name: "broadcast", ip: "255.255.255.255", want: false},
		{name: "mapped broadcast", ip: "::ffff:255.255.255.255", want: false},
		{name: "invalid addr", ip: "", want: false},

		{name: "refused name", ip: "93.184.215.14", host: "metadata.google.internal", want: false},
		{name: "refused name any case", ip: "93.184.215.14", host: "Metadata.Google.Internal.", want: false},
		{name: "refused short name", ip: "10.0.0.1", host: "metadata", want: false},
		{name: "refused aws name", ip: "10.0.0.1", host: "instance-data", want: false},
		{name: "ordinary name", ip: "10.0.0.1", host: "app.mec.svc", want: true},
		{name: "subdomain of refused name", ip: "10.0.0.1", host: "x.metadata", want: true},

		{name: "own address", ip: "10.0.0.5", own: "10.0.0.5/32", want: false},
		{name: "own range", ip: "10.0.9.9", own: "10.0.0.0/16", want: false},
		{name: "next to own address", ip: "10.0.0.6", own: "10.0.0.5/32", want: true},
		{name: "own mapped prefix", ip: "10.0.0.5", own: "::ffff:10.0.0.0/120", want: false},
		{name: "own address mapped ip", ip: "::ffff:10.0.0.5", own: "10.0.0.5/32", want: false},
		{name: "own v6", ip: "fd12::5", own: "fd12::5/128", want: false},

		{name: "allowed cidr opens loopback", ip: "127.0.0.1", allow: "127.0.0.0/8", want: true},
		{name: "allowed cidr opens mapped", ip: "::ffff:127.0.0.1", allow: "127.0.0.0/8", want: true},
		{name: "allowed cidr not v6 loopback", ip: "::1", allow: "127.0.0.0/8", want: false},
		{name: "allowed cidr opens own", ip: "10.0.0.5", allow: "10.0.0.5", own: "10.0.0.0/8", want: true},
		{name: "allowed cidr keeps refused name", ip: "169.254.169.254", host: "metadata", allow: "169.254.0.0/16", want: false},
		{name: "allowed name opens refused name", ip: "169.254.169.254", host: "metadata", allow: "metadata", want: true},
		{name: "allowed name opens loopback", ip: "::1", host: "LocalHost", allow: "localhost", want: true},
		{name: "allowed name, other host", ip: "::1", host: "localhost2", allow: "localhost", want: false},
		{name: "allowed name, invalid addr", ip: "", host: "localhost", allow: "localhost", want: true},

		// IPv6 forms that carry an IPv4 address are judged as that address too.
		{name: "IPv4-compatible loopback", ip: "::127.0.0.1", want: false},
		{name: "IPv4-compatible metadata", ip: "::169.254.169.254", want: false},
		{name: "IPv4-compatible public", ip: "::93.184.215.14", want: true},
		{name: "SIIT loopback", ip: "::ffff:0:127.0.0.1", want: false},
		{name: "NAT64 loopback", ip: "64:ff9b::127.0.0.1", want: false},
		{name: "NAT64 loopback in hex", ip: "64:ff9b::7f00:1", want: false},
		{name: "NAT64 metadata", ip: "64:ff9b::a9fe:a9fe", want: false},
		{name: "NAT64 this network", ip: "64:ff9b::1", want: false},
		{name: "NAT64 broadcast", ip: "64:ff9b::ffff:ffff", want: false},
		{name: "NAT64 public", ip: "64:ff9b::93.184.215.14", want: true},
		{name: "NAT64 private", ip: "64:ff9b::10.1.2.3", want: true},
		{name: "NAT64 local-use /96 loopback", ip: "64:ff9b:1::7f00:1", want: false},
		{name: "NAT64 local-use /64 loopback", ip: "64:ff9b:1:0:7f:0:100:0", want: false},
		{name: "NAT64 local-use /56 loopback", ip: "64:ff9b:1:7f:0:1::", want: false},
		{name: "NAT64 local-use /48 loopback", ip: "64:ff9b:1:7f00:0:100::", want: false},
		{name: "NAT64 local-use public", ip: "64:ff9b:1:5db8:d7:e00:5db8:d70e", want: true},
		{name: "6to4 loopback", ip: "2002:7f00:1::1", want: false},
		{name: "6to4 metadata", ip: "2002:a9fe:a9fe::1", want: false},
		{name: "6to4 public", ip: "2002:5db8:d70e::1", want: true},
		{name: "Teredo client loopback", ip: "2001:0:4136:e378:8000:63bf:80ff:fffe", want: false},
		{name: "Teredo server loopback", ip: "2001:0:7f00:1::1", want: false},
		{name: "Teredo public", ip: "2001:0:4136:e378:8000:63bf:a247:f1f1", want: true},
		{name: "documentation prefix is not Teredo", ip: "2001:db8:7f00:1::1", want: true},
		{name: "own address through NAT64", ip: "64:ff9b::a00:5", own: "10.0.0.5/32", want: false},
		{name: "allowed loopback through NAT64", ip: "64:ff9b::127.0.0.1", allow: "127.0.0.0/8", want: true},
		{name: "allowed NAT64 prefix keeps the IPv4 policy", ip: "64:ff9b::127.0.0.1", allow: "64:ff9b::/96", want: false},

		// KMEP_CALLBACK_DENY refuses what the default permits, and wins.
		{name: "denied private range", ip: "10.1.2.3", deny: "10.0.0.0/8", want: false},
		{name: "next to a denied range", ip: "11.1.2.3", deny: "10.0.0.0/8", want: true},
		{name: "denied single address", ip: "192.168.1.1", deny: "192.168.1.1", want: false},
		{name: "denied through a mapped address", ip: "::ffff:10.1.2.3", deny: "10.0.0.0/8", want: false},
		{name: "denied through NAT64", ip: "64:ff9b::10.1.2.3", deny: "10.0.0.0/8", want: false},
		{name: "denied through 6to4", ip: "2002:a01:203::1", deny: "10.0.0.0/8", want: false},
		{name: "denied mapped entry", ip: "10.1.2.3", deny: "::ffff:10.0.0.0/104", want: false},
		{name: "denied v6 range", ip: "fd12::7", deny: "fd00::/8", want: false},
		{name: "deny wins over an allowed cidr", ip: "127.0.0.1", allow: "127.0.0.0/8", deny: "127.0.0.1", want: false},
		{name: "deny wins over an allowed name", ip: "10.1.2.3", host: "app.svc", allow: "app.svc", deny: "10.0.0.0/8", want: false},
		{name: "allowed name outside the deny list", ip: "10.1.2.3", host: "app.svc", allow: "app.svc", deny: "192.168.0.0/16", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := callback.ParseAllowList(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			deny, err := callback.ParseDenyList(tc.deny)
			if err != nil {
				t.Fatal(err)
			}
			p, err := callback.New(callback.Options{Allow: allow, Deny: deny, OwnAddrs: prefixes(tc.own)})
			if err != nil {
				t.Fatal(err)
			}
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			if got := p.Permitted(ip, tc.host); got != tc.want {
				t.Errorf("Permitted(%s, %q) = %v, want %v", tc.ip, tc.host, got, tc.want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    callback.Options
	}{
		{"negative timeout", callback.Options{Timeout: -time.Second}},
		{"invalid own prefix", callback.Options{OwnAddrs: []netip.Prefix{{}}}},
		{"invalid denied prefix", callback.Options{Deny: []netip.Prefix{{}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := callback.New(tc.o); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
}

// TestIncludeInterfaceAddrs checks that an address of this host's own
// interfaces, permitted by the default rules, is refused once
// IncludeInterfaceAddrs is set.
func TestIncludeInterfaceAddrs(t *testing.T) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := callback.New(callback.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var own netip.Addr
	mine := map[netip.Addr]bool{}
	for _, a := range ifAddrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				mine[ip.Unmap()] = true
			}
		}
	}
	for _, a := range ifAddrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsLoopback() && plain.Permitted(ip, "") {
			own = ip
			break
		}
	}
	if !own.IsValid() {
		t.Skipf("no non-loopback interface address permitted by default among %v", ifAddrs)
	}

	p, err := callback.New(callback.Options{IncludeInterfaceAddrs: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Permitted(own, "") {
		t.Errorf("Permitted(%s) = true with IncludeInterfaceAddrs, want false", own)
	}
	u := "http://" + netip.AddrPortFrom(own, 8080).String() + "/cb"
	if err := p.Validate(context.Background(), u); !errors.Is(err, callback.ErrForbiddenAddress) {
		t.Errorf("Validate(%q) = %v, want ErrForbiddenAddress", u, err)
	}
	if err := plain.Validate(context.Background(), u); err != nil {
		t.Errorf("without IncludeInterfaceAddrs Validate(%q) = %v, want nil", u, err)
	}
	// Only the address itself is the platform's, not its whole subnet.
	if next := own.Next(); next.IsValid() && !mine[next] && plain.Permitted(next, "") && !p.Permitted(next, "") {
		t.Errorf("Permitted(%s) = false: the neighbour of an interface address must stay permitted", next)
	}
}
