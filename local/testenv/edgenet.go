package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// EdgeNet is a MEC edge node between a UE and the internet, with a MEC app
// beside it, in Linux network namespaces:
//
//	ue ns ── eth0 10.O.1.2 ─┐                       ┌─ eth0 10.O.2.2 ── remote ns
//	                       ue0 ── node ns (routes) ── wan0
//	                                  app0
//	                                   └─ eth0 10.O.3.2 ── app ns
//
// The node routes between its three links (10.O.1.1, 10.O.2.1, 10.O.3.1;
// IPv6 fd17:O:1::1/64 and so on alongside; no duplicate address detection
// anywhere); the UE, the remote server and the MEC app have it as their
// default gateway. Nothing is NATed and no packet filter is set up: the
// node namespace is where a test programs one (the UPF agent's nftables
// driver, through netlink in NetNSPath(Node)). The root namespace has no
// link to any of them; sockets are made inside them with ListenIn,
// ListenPacketIn and DialIn.
type EdgeNet struct {
	// UE, Node, Remote and App are the namespace names.
	UE, Node, Remote, App string
	// UEIP, RemoteIP and AppIP are the IPv4 addresses of the UE, the remote
	// server and the MEC app; UEIP6, RemoteIP6 and AppIP6 their IPv6 ones.
	UEIP, RemoteIP, AppIP    string
	UEIP6, RemoteIP6, AppIP6 string
	// NodeUEIf, NodeWANIf and NodeAppIf are the node's interfaces towards
	// the UE, the remote server and the MEC app.
	NodeUEIf, NodeWANIf, NodeAppIf string
}

// NewEdgeNet builds the topology for one test and removes it at cleanup.
// The test is skipped, with the reason ("SKIPPED: ..."), when namespaces
// cannot be created (not root, no ip).
func NewEdgeNet(t testing.TB) *EdgeNet {
	t.Helper()
	RequireNetNS(t)
	id, o := newNetID()
	n := &EdgeNet{UE: id + "-ue", Node: id + "-node", Remote: id + "-remote", App: id + "-app",
		UEIP: fmt.Sprintf("10.%d.1.2", o), RemoteIP: fmt.Sprintf("10.%d.2.2", o), AppIP: fmt.Sprintf("10.%d.3.2", o),
		UEIP6: fmt.Sprintf("fd17:%d:1::2", o), RemoteIP6: fmt.Sprintf("fd17:%d:2::2", o), AppIP6: fmt.Sprintf("fd17:%d:3::2", o),
		NodeUEIf: "ue0", NodeWANIf: "wan0", NodeAppIf: "app0"}
	t.Cleanup(n.Close)
	if err := n.build(o); err != nil {
		if strings.Contains(err.Error(), "ip netns add") {
			t.Skipf("SKIPPED: cannot create network namespaces: %v", err)
		}
		t.Fatal(err)
	}
	return n
}

func (n *EdgeNet) build(o int) error {
	if err := addNamespaces(n.UE, n.Node, n.Remote, n.App); err != nil {
		return err
	}
	// No duplicate address detection at all (link-local addresses too):
	// while a link-local address is tentative, the first packets between
	// the namespaces are lost.
	for _, ns := range []string{n.UE, n.Node, n.Remote, n.App} {
		if err := runCmd("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.accept_dad=0"); err != nil {
			return err
		}
	}
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if err := runCmd("ip", "netns", "exec", n.Node, "sysctl", "-qw", kv); err != nil {
			return err
		}
	}
	for i, l := range []struct{ ns, nodeIf string }{{n.UE, n.NodeUEIf}, {n.Remote, n.NodeWANIf}, {n.App, n.NodeAppIf}} {
		net := i + 1
		gw4, gw6 := fmt.Sprintf("10.%d.%d.1", o, net), fmt.Sprintf("fd17:%d:%d::1", o, net)
		if err := veth(n.Node, l.nodeIf, []string{gw4 + "/24", gw6 + "/64"},
			l.ns, "eth0", []string{fmt.Sprintf("10.%d.%d.2/24", o, net), fmt.Sprintf("fd17:%d:%d::2/64", o, net)}); err != nil {
			return err
		}
		if err := runCmd("ip", "-n", l.ns, "route", "add", "default", "via", gw4); err != nil {
			return err
		}
		if err := runCmd("ip", "-n", l.ns, "-6", "route", "add", "default", "via", gw6); err != nil {
			return err
		}
	}
	return nil
}

// Close removes the namespaces (their veths and rules go with them).
func (n *EdgeNet) Close() {
	for _, ns := range []string{n.UE, n.Node, n.Remote, n.App} {
		_ = runCmd("ip", "netns", "del", ns)
	}
}
