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

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/fakevpp"
	"github.com/kmep-io/kmep/longrunning/upfagent/vpp"
	"github.com/kmep-io/kmep/store/mec"
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
	// Never nil: that is how the fake decodes an empty list.
	return &acl.ACLInterfaceSetACLList{SwIfIndex: interface_types.InterfaceIndex(sw), Count: uint8(len(acls)), NInput: nIn, Acls: append([]uint32{}, acls...)}
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

// foreignACL creates an ACL the driver did not create, through the API.
func foreignACL(t testing.TB, v *fakevpp.VPP, tag string) uint32 {
	t.Helper()
	reply := &acl.ACLAddReplaceReply{}
	req := &acl.ACLAddReplace{ACLIndex: none, Tag: tag, Count: 1, R: []acl_types.ACLRule{entry(t, "deny", any4, "198.51.100.0/24", 0, 0, 65535, 0, 65535)}}
	if err := v.Conn.Invoke(context.Background(), req, reply); err != nil || reply.Retval != 0 {
		t.Fatalf("foreign ACL: %v, retval %d", err, reply.Retval)
	}
	return reply.ACLIndex
}

func invoke(t testing.TB, v *fakevpp.VPP, req api.Message, reply api.Message) {
	t.Helper()
	if err := v.Conn.Invoke(context.Background(), req, reply); err != nil {
		t.Fatal(err)
	}
	if rv := reflect.ValueOf(reply).Elem().FieldByName("Retval"); rv.Int() != 0 {
		t.Fatalf("%s: retval %d", req.GetMessageName(), rv.Int())
	}
}

func TestPriorityOrderWithForeignACLs(t *testing.T) {
	v := newVPP(t, true)
	ctx := context.Background()
	// Interface 1 has a foreign input and a foreign output ACL; 2 has none.
	f := foreignACL(t, v, "operator-in")
	o := foreignACL(t, v, "operator-out")
	invoke(t, v, setList(1, 1, f, o), &acl.ACLInterfaceSetACLListReply{})
	v.Requests()

	d := newDriver(t, v, vpp.Config{})
	acls := map[string]uint32{}
	for _, c := range []struct {
		id   string
		prio int
	}{{"mid", 10}, {"first", 0}, {"last", 255}, {"tie-b", 10}, {"tie-a", 10}} {
		h, err := d.Apply(ctx, rule(t, uint32(len(acls)+1), c.id, c.prio, "DROP", "", `{"dstAddress":["10.0.0.1"]}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		acls[c.id] = h[0]
	}
	ordered := []uint32{acls["first"], acls["mid"], acls["tie-a"], acls["tie-b"], acls["last"]}
	perm := uint32(0)
	for idx, a := range v.ACLs() {
		if a.Tag == "kmep:permit-rest" {
			perm = idx
		}
	}
	if got := v.InterfaceACLs(1); !slices.Equal(got.Input, append(slices.Clone(ordered), f)) || !slices.Equal(got.Output, []uint32{o}) {
		t.Fatalf("interface 1: %+v; want input %v then the foreign %d, output [%d]", got, ordered, f, o)
	}
	if got := v.InterfaceACLs(2); !slices.Equal(got.Input, append(slices.Clone(ordered), perm)) || perm == 0 {
		t.Fatalf("interface 2: %+v; want input %v then permit-rest %d", got, ordered, perm)
	}

	// "last" becomes the most important: it moves to the front, nothing else.
	v.Requests()
	if _, err := d.Apply(ctx, rule(t, 3, "last", 0, "DROP", "", `{"dstAddress":["10.0.0.1"]}`), nil); err != nil {
		t.Fatal(err)
	}
	// "first" and "last" both have priority 0: by key, "first" < "last".
	ordered = []uint32{acls["first"], acls["last"], acls["mid"], acls["tie-a"], acls["tie-b"]}
	expect(t, v, &acl.ACLAddReplace{ACLIndex: acls["last"], Tag: "kmep:0:" + app + ":last", Count: 1,
		R: []acl_types.ACLRule{entry(t, "deny", any4, "10.0.0.1/32", 0, 0, 65535, 0, 65535)}},
		setList(1, 6, append(append(slices.Clone(ordered), f), o)...), setList(2, 6, append(slices.Clone(ordered), perm)...))
	if a := v.ACLs(); a[f].Tag != "operator-in" || a[o].Tag != "operator-out" || len(a) != 8 {
		t.Fatalf("ACLs %+v", a)
	}
}

func TestRemove(t *testing.T) {
	v := newVPP(t, true)
	ctx := context.Background()
	d := newDriver(t, v, vpp.Config{})
	fw := rule(t, 5, "fw", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`, `{}`)
	h, err := d.Apply(ctx, fw, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropH, err := d.Apply(ctx, rule(t, 6, "drop", 2, "DROP", "", `{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Requests()
	// fw: ACL 0, permit-rest 1, drop 2.
	if err := d.Remove(ctx, dataplane.Applied{Index: 5, AppInstanceID: app, ID: "fw", Handle: h}); err != nil {
		for _, m := range v.Requests() {
			t.Logf("%s %+v", m.GetMessageName(), m)
		}
		t.Fatal(err)
	}
	got := v.Requests()
	want := []api.Message{&abf.AbfPolicyAddDel{IsAdd: false, Policy: abf.AbfPolicy{PolicyID: 5, ACLIndex: 0, NPaths: 1, Paths: []fib_types.FibPath{pathTo(t, "10.10.0.1")}}},
		setList(1, 2, 2, 1), setList(2, 2, 2, 1), &acl.ACLDel{ACLIndex: 0}}
	if len(got) != 6 || !sameSet(got[:2], []api.Message{attach(false, 5, 1, 1, false), attach(false, 5, 2, 1, false)}) || !reflect.DeepEqual(got[2:], want) {
		for _, m := range got {
			t.Logf("%s %+v", m.GetMessageName(), m)
		}
		t.Fatal("unexpected messages removing a FORWARD rule")
	}
	// Removing it again sends nothing.
	if err := d.Remove(ctx, dataplane.Applied{Index: 5, AppInstanceID: app, ID: "fw", Handle: h}); err != nil {
		t.Fatal(err)
	}
	expect(t, v)
	// The last rule: the lists are emptied, permit-rest and the ACL deleted.
	if err := d.Remove(ctx, dataplane.Applied{Index: 6, AppInstanceID: app, ID: "drop", Handle: dropH}); err != nil {
		t.Fatal(err)
	}
	expect(t, v, setList(1, 0), setList(2, 0), &acl.ACLDel{ACLIndex: 1}, &acl.ACLDel{ACLIndex: 2})
	if len(v.ACLs()) != 0 || len(v.Policies()) != 0 || len(v.Attachments()) != 0 || len(v.InterfaceACLs(1).Input) != 0 {
		t.Fatalf("left: ACLs %+v policies %+v attachments %+v", v.ACLs(), v.Policies(), v.Attachments())
	}
}

// TestResyncFindsOwnACLsByTag: a new driver (an agent restarted, or the
// standby taking over) finds the ACLs and policies by their tags, replaces
// them in place, and Sweep removes those of rules no longer held (and a
// duplicate), never a foreign ACL.
func TestResyncFindsOwnACLsByTag(t *testing.T) {
	v := newVPP(t, true)
	ctx := context.Background()
	f := foreignACL(t, v, "operator")
	invoke(t, v, setList(2, 1, f), &acl.ACLInterfaceSetACLListReply{})
	first := newDriver(t, v, vpp.Config{})
	fw := rule(t, 5, "fw", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`, `{}`)
	gone := rule(t, 6, "gone", 2, "DROP", "", `{}`)
	for _, r := range []dataplane.Rule{fw, gone} {
		if _, err := first.Apply(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	// fw: ACL 1, permit-rest 2, gone 3. A duplicate of gone's ACL (an agent
	// that died between acl_add_replace and recording its handle, twice).
	dup := foreignACL(t, v, "kmep:2:"+app+":gone")
	v.Requests()

	second := newDriver(t, v, vpp.Config{})
	h, err := second.Apply(ctx, fw, nil)
	if err != nil || !slices.Equal(h, dataplane.Handle{1, 5}) {
		t.Fatalf("Apply = %v, %v; want the known ACL 1 and policy 5", h, err)
	}
	expect(t, v, append(slices.Clone(dumps), &acl.ACLAddReplace{ACLIndex: 1, Tag: "kmep:1:" + app + ":fw", Count: 1,
		R: []acl_types.ACLRule{entry(t, "permit", any4, any4, 0, 0, 65535, 0, 65535)}})...)

	n, err := second.Sweep(ctx, []dataplane.Applied{{Index: 5, AppInstanceID: app, ID: "fw", Handle: h}})
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2 (gone and its duplicate)", n, err)
	}
	if a := v.ACLs(); len(a) != 3 || a[f].Tag != "operator" || a[1].Tag != "kmep:1:"+app+":fw" || a[2].Tag != "kmep:permit-rest" {
		t.Fatalf("ACLs after sweep %+v", a)
	}
	if _, ok := v.ACLs()[dup]; ok {
		t.Fatal("the duplicate survived")
	}
	if got := v.InterfaceACLs(1).Input; !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("interface 1 input %v", got)
	}
	if got := v.InterfaceACLs(2).Input; !slices.Equal(got, []uint32{1, f}) {
		t.Fatalf("interface 2 input %v", got)
	}
	if p := v.Policies(); len(p) != 1 || p[5].ACL != 1 || len(v.Attachments()) != 2 {
		t.Fatalf("policies %+v attachments %+v", p, v.Attachments())
	}

	// After VPP restarted, Forget makes the driver read the empty state and
	// create everything anew.
	v.Restart()
	second.Forget()
	v.Requests()
	if h, err = second.Apply(ctx, fw, h); err != nil || !slices.Equal(h, dataplane.Handle{0, 5}) {
		t.Fatalf("Apply after restart = %v, %v", h, err)
	}
	if got := v.Requests(); len(got) != len(dumps)+1+1+2+1+2 {
		t.Fatalf("%d messages after a restart", len(got))
	}
}

func TestTags(t *testing.T) {
	long := strings.Repeat("x", 64)
	tag := vpp.Tag("kmep", 255, app, long)
	if len(tag) != 63 || !strings.HasPrefix(tag, "kmep:255:"+app+":") || tag[len(tag)-17] != '~' {
		t.Fatalf("long tag %q (%d bytes)", tag, len(tag))
	}
	// The rule's ident does not depend on the priority's digits.
	if a, b := vpp.Tag("kmep", 1, app, long), vpp.Tag("kmep", 200, app, long); a[len("kmep:1:"):] != b[len("kmep:200:"):] {
		t.Fatalf("idents differ: %q %q", a, b)
	}
	if vpp.Tag("kmep", 1, app, long+"y") == vpp.Tag("kmep", 1, app, long) {
		t.Fatal("two long keys share a tag")
	}
	if got := vpp.Tag("p", 7, "a", "b"); got != "p:7:a:b" {
		t.Fatalf("short tag %q", got)
	}
	// A driver finds its ACL of a long key again.
	v := newVPP(t, false)
	ctx := context.Background()
	r := rule(t, 1, long, 4, "DROP", "", `{}`)
	d1 := newDriver(t, v, vpp.Config{})
	h1, err := d1.Apply(ctx, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := newDriver(t, v, vpp.Config{}).Apply(ctx, r, nil)
	if err != nil || !slices.Equal(h1, h2) {
		t.Fatalf("handles %v, %v (%v)", h1, h2, err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cfg  vpp.Config
	}{
		{"no interfaces", vpp.Config{Interfaces: []uint32{}}},
		{"interface twice", vpp.Config{Interfaces: []uint32{1, 1}}},
		{"tag prefix with colon", vpp.Config{Interfaces: []uint32{1}, TagPrefix: "a:b"}},
		{"unspecified next hop", vpp.Config{Interfaces: []uint32{1}, NextHop: netip.MustParseAddr("0.0.0.0")}},
	} {
		if _, err := vpp.New(newVPP(t, false).Conn, c.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", c.name, c.cfg)
		}
	}

	v := newVPP(t, true)
	d := newDriver(t, v, vpp.Config{})
	r := rule(t, 1, "r", 1, "DROP", "", `{}`)
	v.SetRetval(int32(api.INVALID_VALUE))
	_, err := d.Apply(ctx, r, nil)
	var rv *dataplane.RetvalError
	if !errors.As(err, &rv) || rv.Retval != int32(api.INVALID_VALUE) || rv.Message != "acl_add_replace" {
		t.Fatalf("refused: %v; want a RetvalError of acl_add_replace", err)
	}
	v.SetRetval(0)
	v.SetDown(true)
	if _, err := d.Apply(ctx, r, nil); !errors.Is(err, fakevpp.ErrDown) {
		t.Fatalf("down: %v; want ErrDown", err)
	}
	v.SetDown(false)
	v.Requests()
	// After a failure the driver reads VPP's state again.
	if _, err := d.Apply(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	if got := v.Requests(); len(got) < len(dumps) || !reflect.DeepEqual(got[:len(dumps)], dumps) {
		t.Fatalf("no dumps after a failure: %+v", got)
	}

	// An ABF policy id held by a foreign policy.
	invoke(t, v, &abf.AbfPolicyAddDel{IsAdd: true, Policy: abf.AbfPolicy{PolicyID: 9, ACLIndex: foreignACL(t, v, "op"), NPaths: 1,
		Paths: []fib_types.FibPath{pathTo(t, "10.0.0.1")}}}, &abf.AbfPolicyAddDelReply{})
	d.Forget()
	fw := rule(t, 9, "fw", 1, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`, `{}`)
	if _, err := d.Apply(ctx, fw, nil); !errors.Is(err, vpp.ErrPolicyIDTaken) {
		t.Fatalf("taken policy id: %v", err)
	}
}

func TestInterfaceFull(t *testing.T) {
	v := newVPP(t, false)
	ctx := context.Background()
	var fs []uint32
	for i := range 254 {
		fs = append(fs, foreignACL(t, v, fmt.Sprint("op", i)))
	}
	invoke(t, v, setList(1, 200, fs...), &acl.ACLInterfaceSetACLListReply{})
	d := newDriver(t, v, vpp.Config{Interfaces: []uint32{1}})
	if _, err := d.Apply(ctx, rule(t, 1, "a", 1, "DROP", "", `{}`), nil); err != nil {
		t.Fatalf("the 255th ACL: %v", err)
	}
	if _, err := d.Apply(ctx, rule(t, 2, "b", 1, "DROP", "", `{}`), nil); !errors.Is(err, vpp.ErrInterfaceFull) || errors.Is(err, dataplane.ErrUnsupported) {
		t.Fatalf("the 256th ACL: %v; want ErrInterfaceFull (transient)", err)
	}
	if n := len(v.ACLs()); n != 255 {
		t.Fatalf("%d ACLs; the refused rule must create none", n)
	}
}
