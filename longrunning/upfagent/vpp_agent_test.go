package upfagent_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.fd.io/govpp/binapi/acl"
	"go.fd.io/govpp/binapi/acl_types"

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/vpp"
	"github.com/kmep-io/kmep/store"
)

func vppDriver(t testing.TB, h *harness) *vpp.Driver {
	t.Helper()
	d, err := vpp.New(h.vpp.Conn, vpp.Config{Interfaces: []uint32{1, 2}, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tagged returns the fake's ACL indexes by tag.
func tagged(h *harness) map[string]uint32 {
	out := map[string]uint32{}
	for idx, a := range h.vpp.ACLs() {
		out[a.Tag] = idx
	}
	return out
}

// TestAgentWithVPPDriver runs the agent with the stock-VPP driver on a
// real redis-server: rules applied in priority order, an unsupported one
// failed with its reason, a restarted agent finding its ACLs by tag (no
// duplicates) and sweeping an ACL of a rule it holds no record of, and a
// deleted configuration leaving nothing behind.
func TestAgentWithVPPDriver(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	rules := []store.Rule{
		{Kind: store.RuleTraffic, ID: "drop", State: "ACTIVE", Body: []byte(`{"trafficRuleId":"drop","filterType":"FLOW","priority":5,"action":"DROP","state":"ACTIVE",
			"trafficFilter":[{"dstAddress":["10.0.0.0/8"],"protocol":["TCP"],"dstPort":["22"]}]}`)},
		{Kind: store.RuleTraffic, ID: "fw", State: "ACTIVE", Body: []byte(`{"trafficRuleId":"fw","filterType":"FLOW","priority":1,"action":"FORWARD_DECAPSULATED",
			"trafficFilter":[{"dstAddress":["10.1.0.0/16"]}],"dstInterface":{"interfaceType":"IP","dstIpAddress":"192.0.2.1"},"state":"ACTIVE"}`)},
		{Kind: store.RuleTraffic, ID: "tunnel", State: "ACTIVE", Body: []byte(`{"trafficRuleId":"tunnel","filterType":"FLOW","priority":2,"action":"DROP","state":"ACTIVE",
			"trafficFilter":[{"srcTunnelAddress":["10.9.0.1"]}]}`)},
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	_, stop := h.startDriver(h.st, vppDriver(t, h), upfagent.Config{}, nil)
	drop := h.waitState("app1", "drop", store.RuleApplied)
	fw := h.waitState("app1", "fw", store.RuleApplied)
	tun := h.waitState("app1", "tunnel", store.RuleFailed)
	if !tun.Permanent || !strings.Contains(tun.Reason, "vpp: tunnel addresses") {
		t.Fatalf("tunnel rule status %+v; want a permanent failure with the driver's reason", tun)
	}
	tags := tagged(h)
	dropACL, fwACL, permit := tags["kmep:5:app1:drop"], tags["kmep:1:app1:fw"], tags["kmep:permit-rest"]
	if len(tags) != 3 || !slices.Equal(drop.Handle, []uint32{dropACL}) || !slices.Equal(fw.Handle, []uint32{fwACL, fw.Index}) {
		t.Fatalf("ACLs %v; handles %v %v", tags, drop.Handle, fw.Handle)
	}
	for _, sw := range []uint32{1, 2} {
		if got := h.vpp.InterfaceACLs(sw).Input; !slices.Equal(got, []uint32{fwACL, dropACL, permit}) {
			t.Fatalf("interface %d input %v; want fw (priority 1), drop (5), permit-rest", sw, got)
		}
	}
	if p := h.vpp.Policies(); len(p) != 1 || p[fw.Index].ACL != fwACL || len(h.vpp.Attachments()) != 2 {
		t.Fatalf("policies %+v attachments %+v", p, h.vpp.Attachments())
	}
	stop()

	// An ACL of the driver's for a rule nobody holds (its records lost).
	reply := &acl.ACLAddReplaceReply{}
	if err := h.vpp.Conn.Invoke(ctx, &acl.ACLAddReplace{ACLIndex: ^uint32(0), Tag: "kmep:3:ghost:r", Count: 1,
		R: []acl_types.ACLRule{{IsPermit: acl_types.ACL_ACTION_API_PERMIT}}}, reply); err != nil || reply.Retval != 0 {
		t.Fatalf("ghost ACL: %v %d", err, reply.Retval)
	}
	// A new agent (new driver, empty view) after a data-plane reset
	// reapplies every rule in place and sweeps the ghost.
	reset := make(chan struct{}, 1)
	reset <- struct{}{}
	a2, _ := h.startDriver(h.st, vppDriver(t, h), upfagent.Config{}, reset)
	waitFor(t, "two resyncs", func() bool { return a2.Stats().Resyncs >= 2 })
	if got := tagged(h); len(got) != 3 || got["kmep:5:app1:drop"] != dropACL || got["kmep:1:app1:fw"] != fwACL || got["kmep:permit-rest"] != permit {
		t.Fatalf("ACLs after the restart %v; want the same three, no duplicate, no ghost", got)
	}
	if got := h.vpp.InterfaceACLs(1).Input; !slices.Equal(got, []uint32{fwACL, dropACL, permit}) {
		t.Fatalf("interface 1 input after the restart %v", got)
	}

	if err := h.st.DeleteAppD(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "data plane empty", func() bool {
		return len(h.vpp.ACLs()) == 0 && len(h.vpp.Policies()) == 0 && len(h.vpp.Attachments()) == 0 && len(h.vpp.InterfaceACLs(1).Input) == 0
	})
}
