package mp2upf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/fakevpp"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf/binapi/upf_mp2"
	"github.com/kmep-io/kmep/store/mec"
)

const app = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f"

func rule(t *testing.T, action, dst string, filters ...string) dataplane.Rule {
	t.Helper()
	body := fmt.Sprintf(`{"trafficRuleId":"r1","filterType":"FLOW","priority":5,"action":%q,"state":"ACTIVE","trafficFilter":[%s]%s}`,
		action, strings.Join(filters, ","), dst)
	tr, _, err := mec.DecodeTrafficRule([]byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return dataplane.Rule{Index: 42, AppInstanceID: app, ID: "r1", Traffic: tr}
}

func cstr(b []byte) string { return string(bytes.TrimRight(b, "\x00")) }

func newVPP(t *testing.T) *fakevpp.VPP {
	v, err := fakevpp.New(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestApplyMessages(t *testing.T) {
	fwd := `,"dstInterface":{"interfaceType":"IP","dstIpAddress":"10.10.0.1"}`
	dup := `,"dstInterface":[{"interfaceType":"IP","dstIpAddress":"10.10.0.1"},{"interfaceType":"IP","dstIpAddress":"10.10.0.2"}]`
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = fmt.Sprintf(`{"dstAddress":["10.0.%d.0/24"]}`, i)
	}
	for _, c := range []struct {
		name    string
		rule    dataplane.Rule
		want    []string // flow descriptions, or nil when refused
		refused string
	}{
		{"ipv4 tcp port range drop", rule(t, "DROP", "", `{"srcAddress":["192.168.1.0/24"],"dstAddress":["10.0.0.5"],"protocol":["TCP"],"dstPort":["80","8000-8080"]}`),
			[]string{"deny out tcp from 192.168.1.0/24 to 10.0.0.5 80,8000-8080"}, ""},
		{"ipv6 udp source ports passthrough", rule(t, "PASSTHROUGH", "", `{"srcAddress":["2001:db8::/64"],"dstAddress":["2001:db8:1::1"],"protocol":["udp"],"srcPort":["5000-5010"]}`),
			[]string{"permit out udp from 2001:db8::/64 5000-5010 to 2001:db8:1::1"}, ""},
		{"no protocol is ip, forward decapsulated", rule(t, "FORWARD_DECAPSULATED", fwd, `{"dstAddress":["10.1.0.0/16"]}`),
			[]string{"permit out ip from any to 10.1.0.0/16"}, ""},
		{"protocol number and name, forward encapsulated", rule(t, "FORWARD_ENCAPSULATED", fwd, `{"protocol":["132","ICMP"]}`),
			[]string{"permit out sctp from any to any", "permit out icmp from any to any"}, ""},
		{"two filters, duplicate decapsulated", rule(t, "DUPLICATE_DECAPSULATED", dup, `{"dstAddress":["10.0.0.1"]}`, `{"srcAddress":["10.0.0.2"]}`),
			[]string{"permit out ip from any to 10.0.0.1", "permit out ip from 10.0.0.2 to any"}, ""},
		{"address range, duplicate encapsulated", rule(t, "DUPLICATE_ENCAPSULATED", dup, `{"dstAddress":["10.0.0.1-10.0.0.3"]}`),
			[]string{"permit out ip from any to 10.0.0.1", "permit out ip from any to 10.0.0.2/31"}, ""},
		{"eight filters fit", rule(t, "DROP", "", nine[:8]...), func() []string {
			var w []string
			for i := range 8 {
				w = append(w, fmt.Sprintf("deny out ip from any to 10.0.%d.0/24", i))
			}
			return w
		}(), ""},
		{"nine filters are refused", rule(t, "DROP", "", nine...), nil, "needs 9 flow descriptions"},
		{"tunnel filter is refused", rule(t, "DROP", "", `{"srcTunnelAddress":["10.0.0.1"]}`), nil, "tunnel"},
		{"unknown protocol is refused", rule(t, "DROP", "", `{"protocol":["QUIC"]}`), nil, `unknown protocol "QUIC"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVPP(t)
			d := mp2upf.New(v.Conn)
			h, err := d.Apply(context.Background(), c.rule, nil)
			if c.want == nil {
				if !errors.Is(err, dataplane.ErrUnsupported) || !strings.Contains(err.Error(), c.refused) {
					t.Fatalf("Apply = %v; want ErrUnsupported mentioning %q", err, c.refused)
				}
				if n := len(v.Requests()); n != 0 {
					t.Fatalf("%d messages sent for a refused rule", n)
				}
				return
			}
			if err != nil || h != nil {
				t.Fatalf("Apply = %v, %v", h, err)
			}
			reqs := v.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			m := reqs[0].(*upf_mp2.UpfMp2IPTrafficRule)
			if m.IsAdd != 1 || m.DelAll != 0 || m.UpfTrafficruleID != 42 || cstr(m.AppID) != "5abe47822c704e479a4e0ee3a1a0fd1f" ||
				int(m.NPfdContents) != len(c.want) {
				t.Fatalf("message header %+v", m)
			}
			for i := range 8 {
				pc := m.Mp2TrafficRuleContent[i]
				if i >= len(c.want) {
					if pc.Flags != 0 || cstr(pc.FlowDescription) != "" {
						t.Fatalf("content %d should be empty: %+v", i, pc)
					}
					continue
				}
				if pc.Flags != 1 || cstr(pc.FlowDescription) != c.want[i] || cstr(pc.URL) != "" || cstr(pc.Domain) != "" || cstr(pc.Custom) != "" {
					t.Fatalf("content %d = flags %d %q; want %q", i, pc.Flags, cstr(pc.FlowDescription), c.want[i])
				}
			}
		})
	}
}

func TestRemoveAndErrors(t *testing.T) {
	v := newVPP(t)
	d := mp2upf.New(v.Conn)
	ctx := context.Background()
	if err := d.Remove(ctx, dataplane.Applied{Index: 7, AppInstanceID: "short-app", ID: "r"}); err != nil {
		t.Fatal(err)
	}
	m := v.Requests()[0].(*upf_mp2.UpfMp2IPTrafficRule)
	if m.IsAdd != 0 || m.UpfTrafficruleID != 7 || cstr(m.AppID) != "short-app" || m.NPfdContents != 0 {
		t.Fatalf("remove message %+v", m)
	}
	v.SetRetval(-7)
	err := d.Remove(ctx, dataplane.Applied{Index: 7, AppInstanceID: "a"})
	var rv *dataplane.RetvalError
	if !errors.As(err, &rv) || rv.Retval != -7 {
		t.Fatalf("refused: %v; want a RetvalError -7", err)
	}
	v.SetRetval(0)
	v.SetDown(true)
	if _, err := d.Apply(ctx, rule(t, "DROP", "", `{}`), nil); !errors.Is(err, fakevpp.ErrDown) {
		t.Fatalf("down: %v; want ErrDown", err)
	}
	if got := mp2upf.AppID(strings.Repeat("x", 40)); len(got) != 32 || string(got) != strings.Repeat("x", 32) {
		t.Fatalf("AppID of a long id = %q", got)
	}
}
