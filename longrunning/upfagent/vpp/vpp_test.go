package vpp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.fd.io/govpp/api"
	"go.fd.io/govpp/binapi/abf"
	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/binapi/acl_types"
	"go.fd.io/govpp/binapi/fib_types"
	"go.fd.io/govpp/binapi/interface_types"
	"go.fd.io/govpp/binapi/ip_types"

	"github.com/kmep-io/kmep/functions/mec"
	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/fakevpp"
	"github.com/kmep-io/kmep/longrunning/upfagent/vpp"
)

var (
	_ upfagent.Driver    = (*vpp.Driver)(nil)
	_ upfagent.Forgetter = (*vpp.Driver)(nil)
	_ upfagent.Sweeper   = (*vpp.Driver)(nil)
)

const (
	app  = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f"
	none = ^uint32(0)
)

// rule decodes a traffic rule (id, priority, action, dstInterface JSON or
// "", filters) through the Mp1 validation, with index idx.
func rule(t testing.TB, idx uint32, id string, prio int, action, dst string, filters ...string) dataplane.Rule {
	t.Helper()
	if dst != "" {
		dst = `,"dstInterface":` + dst
	}
	body := fmt.Sprintf(`{"trafficRuleId":%q,"filterType":"FLOW","priority":%d,"action":%q,"state":"ACTIVE","trafficFilter":[%s]%s}`,
		id, prio, action, strings.Join(filters, ","), dst)
	tr, _, err := mec.DecodeTrafficRule([]byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return dataplane.Rule{Index: idx, AppInstanceID: app, ID: id, Traffic: tr}
}

func newVPP(t testing.TB, record bool) *fakevpp.VPP {
	v, err := fakevpp.New(record)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

func newDriver(t testing.TB, v *fakevpp.VPP, cfg vpp.Config) *vpp.Driver {
	t.Helper()
	if cfg.Interfaces == nil {
		cfg.Interfaces = []uint32{1, 2}
	}
	cfg.Log = quiet()
	d, err := vpp.New(v.Conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pfx parses a prefix with govpp's own parser.
func pfx(t testing.TB, s string) ip_types.Prefix {
	t.Helper()
	p, err := ip_types.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// entry builds an ACL entry: "permit"/"deny", prefixes, protocol number,
// source and destination ranges.
func entry(t testing.TB, action, src, dst string, proto uint8, sLo, sHi, dLo, dHi uint16) acl_types.ACLRule {
	a := acl_types.ACL_ACTION_API_DENY
	if action == "permit" {
		a = acl_types.ACL_ACTION_API_PERMIT
	}
	return acl_types.ACLRule{IsPermit: a, SrcPrefix: pfx(t, src), DstPrefix: pfx(t, dst), Proto: ip_types.IPProto(proto),
		SrcportOrIcmptypeFirst: sLo, SrcportOrIcmptypeLast: sHi, DstportOrIcmpcodeFirst: dLo, DstportOrIcmpcodeLast: dHi}
}

const (
	any4 = "0.0.0.0/0"
	any6 = "::/0"
)

func TestEntries(t *testing.T) {
	twenty := make([]string, 20)
	var twentyWant []acl_types.ACLRule
	for i := range twenty {
		twenty[i] = fmt.Sprintf(`{"dstAddress":["10.0.%d.0/24"],"protocol":["UDP"],"dstPort":["53"]}`, i)
		twentyWant = append(twentyWant, entry(t, "deny", any4, fmt.Sprintf("10.0.%d.0/24", i), 17, 0, 65535, 53, 53))
	}
	for _, c := range []struct {
		name string
		rule dataplane.Rule
		want []acl_types.ACLRule
	}{
		{"ipv4 tcp port and port range, drop", rule(t, 1, "r", 1, "DROP", "", `{"srcAddress":["192.168.1.0/24"],"dstAddress":["10.0.0.5"],"protocol":["TCP"],"dstPort":["80","8000-8080"]}`),
			[]acl_types.ACLRule{entry(t, "deny", "192.168.1.0/24", "10.0.0.5/32", 6, 0, 65535, 80, 80), entry(t, "deny", "192.168.1.0/24", "10.0.0.5/32", 6, 0, 65535, 8000, 8080)}},
		{"ipv6 udp source range, passthrough", rule(t, 1, "r", 1, "PASSTHROUGH", "", `{"srcAddress":["2001:db8::/64"],"dstAddress":["2001:db8:1::1"],"protocol":["udp"],"srcPort":["5000-5010"]}`),
			[]acl_types.ACLRule{entry(t, "permit", "2001:db8::/64", "2001:db8:1::1/128", 17, 5000, 5010, 0, 65535)}},
		{"source and destination ranges multiply", rule(t, 1, "r", 1, "DROP", "", `{"dstAddress":["10.0.0.1"],"protocol":["SCTP"],"srcPort":["1","2-3"],"dstPort":["4","5"]}`),
			[]acl_types.ACLRule{entry(t, "deny", any4, "10.0.0.1/32", 132, 1, 1, 4, 4), entry(t, "deny", any4, "10.0.0.1/32", 132, 1, 1, 5, 5),
				entry(t, "deny", any4, "10.0.0.1/32", 132, 2, 3, 4, 4), entry(t, "deny", any4, "10.0.0.1/32", 132, 2, 3, 5, 5)}},
		{"protocol name and number, no address: both families", rule(t, 1, "r", 1, "DROP", "", `{"protocol":["ICMP","47"]}`),
			[]acl_types.ACLRule{entry(t, "deny", any4, any4, 1, 0, 255, 0, 255), entry(t, "deny", any6, any6, 1, 0, 255, 0, 255),
				entry(t, "deny", any4, any4, 47, 0, 65535, 0, 65535), entry(t, "deny", any6, any6, 47, 0, 65535, 0, 65535)}},
		{"ports without protocol: tcp, udp, sctp", rule(t, 1, "r", 1, "DROP", "", `{"dstAddress":["10.0.0.0/8"],"dstPort":["443"]}`),
			[]acl_types.ACLRule{entry(t, "deny", any4, "10.0.0.0/8", 6, 0, 65535, 443, 443), entry(t, "deny", any4, "10.0.0.0/8", 17, 0, 65535, 443, 443),
				entry(t, "deny", any4, "10.0.0.0/8", 132, 0, 65535, 443, 443)}},
		{"address range becomes prefixes", rule(t, 1, "r", 1, "PASSTHROUGH", "", `{"srcAddress":["10.0.0.1-10.0.0.3"]}`),
			[]acl_types.ACLRule{entry(t, "permit", "10.0.0.1/32", any4, 0, 0, 65535, 0, 65535), entry(t, "permit", "10.0.0.2/31", any4, 0, 0, 65535, 0, 65535)}},
		{"twenty filters", rule(t, 1, "r", 1, "DROP", "", twenty...), twentyWant},
		{"forward to an ipv4 next hop keeps ipv4 only", rule(t, 1, "r", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`,
			`{"protocol":["TCP"]}`, `{"dstAddress":["2001:db8::1"]}`),
			[]acl_types.ACLRule{entry(t, "permit", any4, any4, 6, 0, 65535, 0, 65535)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVPP(t, true)
			d := newDriver(t, v, vpp.Config{})
			if _, err := d.Apply(context.Background(), c.rule, nil); err != nil {
				t.Fatal(err)
			}
			var got *acl.ACLAddReplace
			for _, m := range v.Requests() {
				if r, ok := m.(*acl.ACLAddReplace); ok && got == nil {
					got = r
				}
			}
			want := &acl.ACLAddReplace{ACLIndex: none, Tag: "kmep:1:" + app + ":r", Count: uint32(len(c.want)), R: c.want}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("acl_add_replace\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	tunnel := `{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"10.0.0.9","tunnelSrcAddress":"10.0.0.8"}}`
	two := `[{"interfaceType":"IP","dstIpAddress":"10.0.0.1"},{"interfaceType":"IP","dstIpAddress":"10.0.0.2"}]`
	for _, c := range []struct {
		name, reason string
		rule         dataplane.Rule
	}{
		{"tunnel filter", "tunnel", rule(t, 1, "r", 1, "DROP", "", `{"srcTunnelAddress":["10.0.0.1"]}`)},
		{"ports on icmp", "ports given for protocol icmp", rule(t, 1, "r", 1, "DROP", "", `{"protocol":["ICMP"],"dstPort":["80"]}`)},
		{"unknown protocol", `unknown protocol "QUIC"`, rule(t, 1, "r", 1, "DROP", "", `{"protocol":["QUIC"]}`)},
		{"duplicate", "cannot duplicate", rule(t, 1, "r", 1, "DUPLICATE_DECAPSULATED", two, `{}`)},
		{"forward into a tunnel", "TUNNEL interface", rule(t, 1, "r", 1, "FORWARD_ENCAPSULATED", tunnel, `{}`)},
		{"forward without next hop", "no default next hop", rule(t, 1, "r", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"MAC","dstMacAddress":"02:00:00:00:00:01"}`, `{}`)},
		{"forward ipv4 next hop, ipv6 filters", "IPv4 traffic", rule(t, 1, "r", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.0.0.1"}`, `{"dstAddress":["2001:db8::/32"]}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVPP(t, true)
			d := newDriver(t, v, vpp.Config{})
			_, err := d.Apply(context.Background(), c.rule, nil)
			var ue *dataplane.UnsupportedError
			if !errors.As(err, &ue) || ue.Driver != vpp.Name || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("Apply = %v; want an UnsupportedError of %q mentioning %q", err, vpp.Name, c.reason)
			}
			if n := len(v.Requests()); n != 0 {
				t.Fatalf("%d messages sent for a refused rule", n)
			}
		})
	}
}

// dumps are the requests that read the driver's view for interfaces 1, 2.
var dumps = []api.Message{&acl.ACLDump{ACLIndex: none}, &acl.ACLInterfaceListDump{SwIfIndex: 1},
	&acl.ACLInterfaceListDump{SwIfIndex: 2}, &abf.AbfPolicyDump{}, &abf.AbfItfAttachDump{}}

func setList(sw uint32, nIn uint8, acls ...uint32) *acl.ACLInterfaceSetACLList {
	return &acl.ACLInterfaceSetACLList{SwIfIndex: interface_types.InterfaceIndex(sw), Count: uint8(len(acls)), NInput: nIn, Acls: acls}
}

func permitRest() *acl.ACLAddReplace {
	r := []acl_types.ACLRule{
		{IsPermit: acl_types.ACL_ACTION_API_PERMIT, SrcPrefix: ip_types.Prefix{Address: ip_types.Address{Af: ip_types.ADDRESS_IP4}},
			DstPrefix: ip_types.Prefix{Address: ip_types.Address{Af: ip_types.ADDRESS_IP4}}, SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535},
		{IsPermit: acl_types.ACL_ACTION_API_PERMIT, SrcPrefix: ip_types.Prefix{Address: ip_types.Address{Af: ip_types.ADDRESS_IP6}},
			DstPrefix: ip_types.Prefix{Address: ip_types.Address{Af: ip_types.ADDRESS_IP6}}, SrcportOrIcmptypeLast: 65535, DstportOrIcmpcodeLast: 65535},
	}
	return &acl.ACLAddReplace{ACLIndex: none, Tag: "kmep:permit-rest", Count: 2, R: r}
}

func pathTo(t testing.TB, nh string) fib_types.FibPath {
	a := netip.MustParseAddr(nh)
	p := fib_types.FibPath{SwIfIndex: none, Weight: 1, Type: fib_types.FIB_API_PATH_TYPE_NORMAL, Proto: fib_types.FIB_API_PATH_NH_PROTO_IP4}
	if a.Is6() {
		p.Proto = fib_types.FIB_API_PATH_NH_PROTO_IP6
		p.Nh.Address = ip_types.AddressUnionIP6(a.As16())
	} else {
		p.Nh.Address = ip_types.AddressUnionIP4(a.As4())
	}
	return p
}

func attach(add bool, policy, sw, prio uint32, v6 bool) *abf.AbfItfAttachAddDel {
	return &abf.AbfItfAttachAddDel{IsAdd: add, Attach: abf.AbfItfAttach{PolicyID: policy, SwIfIndex: interface_types.InterfaceIndex(sw), Priority: prio, IsIPv6: v6}}
}

func expect(t testing.TB, v *fakevpp.VPP, want ...api.Message) {
	t.Helper()
	got := v.Requests()
	if !reflect.DeepEqual(got, want) {
		var g, w strings.Builder
		for _, m := range got {
			fmt.Fprintf(&g, "\n  %s %+v", m.GetMessageName(), m)
		}
		for _, m := range want {
			fmt.Fprintf(&w, "\n  %s %+v", m.GetMessageName(), m)
		}
		t.Fatalf("messages:%s\nwant:%s", g.String(), w.String())
	}
}

func TestApplyDropIsIdempotent(t *testing.T) {
	v := newVPP(t, true)
	d := newDriver(t, v, vpp.Config{})
	ctx := context.Background()
	r := rule(t, 7, "r1", 3, "DROP", "", `{"dstAddress":["10.0.0.5"],"protocol":["TCP"],"dstPort":["22"]}`)
	h, err := d.Apply(ctx, r, nil)
	if err != nil || !slices.Equal(h, dataplane.Handle{0}) {
		t.Fatalf("Apply = %v, %v", h, err)
	}
	add := &acl.ACLAddReplace{ACLIndex: none, Tag: "kmep:3:" + app + ":r1", Count: 1,
		R: []acl_types.ACLRule{entry(t, "deny", any4, "10.0.0.5/32", 6, 0, 65535, 22, 22)}}
	expect(t, v, append(slices.Clone(dumps), add, permitRest(), setList(1, 2, 0, 1), setList(2, 2, 0, 1))...)

	// Again: replaced in place, nothing else.
	if h, err = d.Apply(ctx, r, h); err != nil || !slices.Equal(h, dataplane.Handle{0}) {
		t.Fatalf("second Apply = %v, %v", h, err)
	}
	add.ACLIndex = 0
	expect(t, v, add)
	if got := v.InterfaceACLs(1); !slices.Equal(got.Input, []uint32{0, 1}) || len(got.Output) != 0 {
		t.Fatalf("interface 1 lists %+v", got)
	}
}

func TestForwardPolicy(t *testing.T) {
	v := newVPP(t, true)
	d := newDriver(t, v, vpp.Config{NextHop: netip.MustParseAddr("2001:db8::1"), PolicyBase: 1000})
	ctx := context.Background()
	r := rule(t, 42, "fw", 5, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`, `{"dstAddress":["192.0.2.0/24"]}`)
	h, err := d.Apply(ctx, r, nil)
	if err != nil || !slices.Equal(h, dataplane.Handle{0, 1042}) {
		t.Fatalf("Apply = %v, %v", h, err)
	}
	add := &acl.ACLAddReplace{ACLIndex: none, Tag: "kmep:5:" + app + ":fw", Count: 1,
		R: []acl_types.ACLRule{entry(t, "permit", any4, "192.0.2.0/24", 0, 0, 65535, 0, 65535)}}
	nh1 := pathTo(t, "10.10.0.1")
	pol := &abf.AbfPolicyAddDel{IsAdd: true, Policy: abf.AbfPolicy{PolicyID: 1042, ACLIndex: 0, NPaths: 1, Paths: []fib_types.FibPath{nh1}}}
	expect(t, v, append(slices.Clone(dumps), add, permitRest(), setList(1, 2, 0, 1), setList(2, 2, 0, 1),
		pol, attach(true, 1042, 1, 5, false), attach(true, 1042, 2, 5, false))...)

	// The same again changes nothing but the ACL's (same) content.
	if _, err := d.Apply(ctx, r, h); err != nil {
		t.Fatal(err)
	}
	add.ACLIndex = 0
	expect(t, v, add)

	// A new next hop (the configured default, IPv6) and priority: the
	// policy is rebuilt, for IPv6.
	r2 := rule(t, 42, "fw", 9, "FORWARD_ENCAPSULATED", `{"interfaceType":"MAC","dstMacAddress":"02:00:00:00:00:01"}`, `{}`)
	if _, err := d.Apply(ctx, r2, h); err != nil {
		t.Fatal(err)
	}
	got := v.Requests()
	add2 := &acl.ACLAddReplace{ACLIndex: 0, Tag: "kmep:9:" + app + ":fw", Count: 1, R: []acl_types.ACLRule{entry(t, "permit", any6, any6, 0, 0, 65535, 0, 65535)}}
	nh2 := pathTo(t, "2001:db8::1")
	del := &abf.AbfPolicyAddDel{IsAdd: false, Policy: abf.AbfPolicy{PolicyID: 1042, ACLIndex: 0, NPaths: 1, Paths: []fib_types.FibPath{nh1}}}
	pol2 := &abf.AbfPolicyAddDel{IsAdd: true, Policy: abf.AbfPolicy{PolicyID: 1042, ACLIndex: 0, NPaths: 1, Paths: []fib_types.FibPath{nh2}}}
	// Detaching goes through a map: its two messages come in either order.
	wantDetach := []api.Message{attach(false, 1042, 1, 5, false), attach(false, 1042, 2, 5, false)}
	if len(got) != 7 || !reflect.DeepEqual(got[0], add2) || !sameSet(got[1:3], wantDetach) || !reflect.DeepEqual(got[3:], []api.Message{del, pol2,
		attach(true, 1042, 1, 9, true), attach(true, 1042, 2, 9, true)}) {
		for _, m := range got {
			t.Logf("%s %+v", m.GetMessageName(), m)
		}
		t.Fatal("unexpected messages for the changed next hop")
	}
	if p := v.Policies(); len(p) != 1 || !reflect.DeepEqual(p[1042].Paths, []fib_types.FibPath{nh2}) {
		t.Fatalf("policies %+v", p)
	}

	// FORWARD → DROP: the policy goes, the ACL stays (as deny).
	r3 := rule(t, 42, "fw", 9, "DROP", "", `{}`)
	if h, err = d.Apply(ctx, r3, h); err != nil || !slices.Equal(h, dataplane.Handle{0}) {
		t.Fatalf("Apply = %v, %v", h, err)
	}
	got = v.Requests()
	if len(got) != 4 || !sameSet(got[1:3], []api.Message{attach(false, 1042, 1, 9, true), attach(false, 1042, 2, 9, true)}) ||
		!reflect.DeepEqual(got[3], &abf.AbfPolicyAddDel{IsAdd: false, Policy: abf.AbfPolicy{PolicyID: 1042, NPaths: 1, Paths: []fib_types.FibPath{nh2}}}) {
		t.Fatalf("FORWARD → DROP sent %+v", got)
	}
	if len(v.Policies()) != 0 || len(v.Attachments()) != 0 {
		t.Fatalf("policies %+v attachments %+v left", v.Policies(), v.Attachments())
	}
}

func sameSet(got, want []api.Message) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g api.Message) bool { return reflect.DeepEqual(g, w) }) {
			return false
		}
	}
	return true
}
