package nft

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store/mec"
)

func rule(t *testing.T, body string) dataplane.Rule {
	t.Helper()
	tr, _, err := mec.DecodeTrafficRule([]byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return dataplane.Rule{AppInstanceID: "app1", ID: tr.TrafficRuleID, Traffic: tr}
}

func body(action, filter, dst string) string {
	b := fmt.Sprintf(`{"trafficRuleId":"r1","filterType":"FLOW","priority":1,"action":%q,"state":"ACTIVE","trafficFilter":[%s]`, action, filter)
	if dst != "" {
		b += `,"dstInterface":` + dst
	}
	return b + "}"
}

const (
	app4 = `{"interfaceType":"IP","dstIpAddress":"192.0.2.10"}`
	app6 = `{"interfaceType":"IP","dstIpAddress":"2001:db8::10"}`
)

// What each rule becomes, as the number of nftables rules per chain, or
// the reason it cannot be expressed.
func TestTranslate(t *testing.T) {
	ports := make([]string, 64)
	for i := range ports {
		ports[i] = fmt.Sprintf(`"%d"`, 1000+i)
	}
	many := fmt.Sprintf(`{"protocol":["TCP"],"srcPort":[%s],"dstPort":[%s]}`, strings.Join(ports, ","), strings.Join(ports, ","))
	for _, c := range []struct {
		name, body string
		want       string // "ip4Filter ip4NAT ip6Filter ip6NAT" part counts, or the reason
	}{
		{"drop one address", body("DROP", `{"dstAddress":["198.51.100.1"]}`, ""), "1 0 0 0"},
		{"drop any address: both families", body("DROP", `{"protocol":["UDP"]}`, ""), "1 0 1 0"},
		{"passthrough: filter and nat", body("PASSTHROUGH", `{"srcAddress":["10.0.0.0/8","10.1.0.0-10.1.0.3"]}`, ""), "2 2 0 0"},
		{"ports without protocol: tcp, udp, sctp", body("DROP", `{"dstAddress":["2001:db8::/32"],"dstPort":["80","8000-8080"]}`, ""), "0 0 6 0"},
		{"forward: its destination's family", body("FORWARD_DECAPSULATED", `{"dstPort":["443"],"protocol":["TCP"]}`, app4), "1 1 0 0"},
		{"forward ipv6", body("FORWARD_DECAPSULATED", `{"dstAddress":["2001:db8:1::/48"]}`, app6), "0 0 1 1"},
		{"duplicate", body("DUPLICATE_DECAPSULATED", `{"dstAddress":["198.51.100.0/24"]}`, "["+app4+","+app4+"]"), "1 1 0 0"},
		{"dscp: ipv4 only", body("DROP", `{"dSCP":46}`, ""), "1 0 0 0"},
		{"tc: ipv6 only", body("DROP", `{"tC":184}`, ""), "0 0 1 0"},
		{"dscp and tc: each family on its own", body("DROP", `{"dSCP":46,"tC":184}`, ""), "1 0 1 0"},
		{"two filters", body("DROP", `{"dstAddress":["198.51.100.1"]},{"dstAddress":["2001:db8::1"]}`, ""), "1 0 1 0"},

		{"forward to the other family", body("FORWARD_DECAPSULATED", `{"dstAddress":["2001:db8::/32"]}`, app4), "IPv4 family of dstIpAddress"},
		{"tc with ipv4 addresses", body("DROP", `{"dstAddress":["198.51.100.1"],"tC":1}`, ""), "no packet can match"},
		{"tunnel fields", body("DROP", `{"tgtTunnelAddress":["10.0.0.1"]}`, ""), "tunnel addresses and ports"},
		{"token", body("DROP", `{"token":["x"]}`, ""), "tokens/tags"},
		{"qci", body("DROP", `{"qCI":9}`, ""), "qCI"},
		{"forward encapsulated", body("FORWARD_ENCAPSULATED", `{}`, `{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"10.0.0.1"}}`), "GTP-U or GRE encapsulation"},
		{"duplicate encapsulated", body("DUPLICATE_ENCAPSULATED", `{}`, "["+app4+","+app4+"]"), "GTP-U or GRE encapsulation"},
		{"forward to a tunnel", body("FORWARD_DECAPSULATED", `{}`, `{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GRE","tunnelDstAddress":"10.0.0.1"}}`), "needs a GRE encapsulation"},
		{"duplicate with a tunnel network side", body("DUPLICATE_DECAPSULATED", `{}`, "["+app4+`,{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"10.0.0.1"}}]`), "dstInterface[1]"},
		{"forward to a MAC address alone", body("FORWARD_DECAPSULATED", `{}`, `{"interfaceType":"MAC","dstMacAddress":"02:00:00:00:00:01"}`), "needs dstInterface.dstIpAddress"},
		{"ports for icmp", body("DROP", `{"protocol":["ICMP"],"dstPort":["1"]}`, ""), "ports given for protocol icmp"},
		{"too many parts", body("DROP", many, ""), fmt.Sprintf("more than %d nftables rules", MaxParts)},
	} {
		t.Run(c.name, func(t *testing.T) {
			parts, err := translate(rule(t, c.body))
			if err != nil {
				var ue *dataplane.UnsupportedError
				if !errors.As(err, &ue) || ue.Driver != Name || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v; want an *UnsupportedError saying %q", err, c.want)
				}
				return
			}
			var n [numChains]int
			for _, p := range parts {
				n[p.ch]++
			}
			if got := fmt.Sprintf("%d %d %d %d", n[0], n[1], n[2], n[3]); got != c.want {
				t.Fatalf("parts per chain %s, want %s", got, c.want)
			}
			for i := 1; i < len(parts); i++ {
				if parts[i].ch < parts[i-1].ch {
					t.Fatal("parts not grouped by chain")
				}
			}
		})
	}
}

func TestComments(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, c := range []struct{ app, rule string }{{"app1", "r1"}, {"a#b", "r#1"}, {long, "r"}} {
		id := Ident(c.app, c.rule)
		if len(id) > maxIdent {
			t.Fatalf("ident %q longer than %d", id, maxIdent)
		}
		cmt := Comment(7, id, 2, 5)
		prio, ident, i, n, ok := parseComment(cmt)
		if !ok || prio != 7 || ident != id || i != 2 || n != 5 {
			t.Fatalf("parseComment(%q) = %d %q %d %d %v", cmt, prio, ident, i, n, ok)
		}
		if len(cmt) >= 128 {
			t.Fatalf("comment %q is longer than nft shows", cmt)
		}
	}
	if Ident(long, "r") == Ident(long, "s") {
		t.Fatal("cut idents collide")
	}
	for _, bad := range []string{"", "operator", "kmep:jump:ue0", "kmep:x:a:b#0/1", "kmep:1:a:b#2/2", "kmep:1:#0/1"} {
		if _, _, _, _, ok := parseComment(bad); ok {
			t.Errorf("parseComment(%q) accepted", bad)
		}
	}
}
