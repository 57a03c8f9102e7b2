package dataplane_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store/mec"
)

func TestRangePrefixes(t *testing.T) {
	for _, c := range []struct{ lo, hi, want string }{
		{"10.0.0.0", "10.0.0.255", "[10.0.0.0/24]"},
		{"10.0.0.1", "10.0.0.6", "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"},
		{"0.0.0.0", "255.255.255.255", "[0.0.0.0/0]"},
		{"255.255.255.254", "255.255.255.255", "[255.255.255.254/31]"},
		{"2001:db8::", "2001:db8::ffff", "[2001:db8::/112]"},
		{"2001:db8::1", "2001:db8::1", "[2001:db8::1/128]"},
	} {
		got := fmt.Sprint(dataplane.RangePrefixes(netip.MustParseAddr(c.lo), netip.MustParseAddr(c.hi)))
		if got != c.want {
			t.Errorf("RangePrefixes(%s, %s) = %s; want %s", c.lo, c.hi, got, c.want)
		}
	}
}

func TestMatches(t *testing.T) {
	one := 1
	for _, c := range []struct {
		name string
		f    mec.TrafficFilter
		want string // fmt of the matches, or "unsupported"
	}{
		{"empty is any", mec.TrafficFilter{}, "[0 invalid Prefix invalid Prefix ip [] []]"},
		{"ipv4 tcp ports", mec.TrafficFilter{SrcAddress: []string{"10.0.0.1"}, DstAddress: []string{"192.168.0.0/16"}, Protocol: []string{"TCP"}, DstPort: []string{"80", "8000-8080"}},
			"[4 10.0.0.1/32 192.168.0.0/16 tcp [] [80 8000-8080]]"},
		{"ipv6 udp by number", mec.TrafficFilter{DstAddress: []string{"2001:db8::/32"}, Protocol: []string{"17"}}, "[6 invalid Prefix 2001:db8::/32 udp [] []]"},
		{"two protocols", mec.TrafficFilter{Protocol: []string{"udp", "SCTP"}}, "[0 invalid Prefix invalid Prefix udp [] [] 0 invalid Prefix invalid Prefix sctp [] []]"},
		{"mixed families pair up", mec.TrafficFilter{SrcAddress: []string{"10.0.0.1", "2001:db8::1"}, DstAddress: []string{"::/0"}},
			"[6 2001:db8::1/128 ::/0 ip [] []]"},
		{"range", mec.TrafficFilter{SrcAddress: []string{"10.0.0.1-10.0.0.2"}}, "[4 10.0.0.1/32 invalid Prefix ip [] [] 4 10.0.0.2/32 invalid Prefix ip [] []]"},
		{"full port range is any", mec.TrafficFilter{Protocol: []string{"tcp"}, SrcPort: []string{"0-65535"}}, "[0 invalid Prefix invalid Prefix tcp [] []]"},
		{"no pair of one family", mec.TrafficFilter{SrcAddress: []string{"10.0.0.1"}, DstAddress: []string{"::1"}}, "unsupported"},
		{"unknown protocol", mec.TrafficFilter{Protocol: []string{"QUIC"}}, "unsupported"},
		{"tunnel", mec.TrafficFilter{SrcTunnelAddress: []string{"10.0.0.1"}}, "unsupported"},
		{"qci", mec.TrafficFilter{QCI: &one}, "unsupported"},
		{"token", mec.TrafficFilter{Token: []string{"x"}}, "unsupported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ms, err := dataplane.Matches("test", c.f)
			if c.want == "unsupported" {
				var ue *dataplane.UnsupportedError
				if !errors.Is(err, dataplane.ErrUnsupported) || !errors.As(err, &ue) || ue.Driver != "test" {
					t.Fatalf("err = %v; want an *UnsupportedError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var parts []any
			for _, m := range ms {
				parts = append(parts, m.Family, m.Src, m.Dst, m.ProtoName(), m.SrcPorts, m.DstPorts)
			}
			if got := fmt.Sprint(parts); got != c.want {
				t.Fatalf("Matches = %s\nwant      %s", got, c.want)
			}
		})
	}
}
