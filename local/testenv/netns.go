package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NATNet is a small internet in Linux network namespaces:
//
//	host (root ns) ─ 10.O.0.2 ┐
//	                          relay ns (10.O.0.1, 11.O.1.1, 11.O.2.1: routes between its links)
//	natA ns 11.O.1.2 ─────────┘│            └──────── natB ns 11.O.2.2
//	  MASQUERADE                                         MASQUERADE
//	nodeA ns 10.O.11.2 (gw natA 10.O.11.1)     nodeB ns 10.O.12.2 (gw natB 10.O.12.1)
//
// The two nodes sit on separate private networks behind NAT (iptables
// MASQUERADE, which keeps source ports where it can: an endpoint-
// independent mapping, as hole punching needs). A NAT drops what comes in
// from outside unless it answers a connection from inside (no RST either,
// like a home router), so neither node can be reached from outside unless
// AllowDirect forwards a port; both reach the relay. The NATs' outside
// addresses (11.O.1.2, 11.O.2.2) are public-looking, because libp2p only
// hole-punches from addresses multiaddr/net.IsPublicAddr accepts (10/8,
// 100.64/10, 198.18/15 and the documentation ranges are not); they never
// leave the namespaces (the relay namespace has no default route, and the
// root namespace routes only 10.O.0.0/24 to it). The test process (root
// ns) reaches the relay namespace only; Dial and Listen make sockets
// inside any of the namespaces.
type NATNet struct {
	// Relay, NATA, NATB, NodeA, NodeB are the namespace names.
	Relay, NATA, NATB, NodeA, NodeB string
	// RelayIP is the relay's address on the host link (10.O.0.1); RelayIPA
	// and RelayIPB on the NAT links (11.O.1.1, 11.O.2.1). NATAPublic/NATBPublic are the NATs'
	// outside addresses, NodeAIP/NodeBIP the nodes' private addresses,
	// NetA/NetB their networks.
	RelayIP, RelayIPA, RelayIPB  string
	NATAPublic, NATBPublic       string
	NodeAIP, NodeBIP, NetA, NetB string
	id                           string
	hostIf                       string
}

var netSeq atomic.Int64

func runCmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// NewNATNet builds the topology for one test and removes it at cleanup.
// The test is skipped, with the reason, when namespaces cannot be created
// (not root, no ip/iptables); CI runs as root.
func NewNATNet(t testing.TB) *NATNet {
	t.Helper()
	RequireNetNS(t, "iptables")
	id, o := newNetID()
	n := &NATNet{
		Relay: id + "-relay", NATA: id + "-nata", NATB: id + "-natb", NodeA: id + "-a", NodeB: id + "-b",
		RelayIP: fmt.Sprintf("10.%d.0.1", o), RelayIPA: fmt.Sprintf("11.%d.1.1", o), RelayIPB: fmt.Sprintf("11.%d.2.1", o),
		NATAPublic: fmt.Sprintf("11.%d.1.2", o), NATBPublic: fmt.Sprintf("11.%d.2.2", o),
		NodeAIP: fmt.Sprintf("10.%d.11.2", o), NodeBIP: fmt.Sprintf("10.%d.12.2", o),
		NetA: fmt.Sprintf("10.%d.11.0/24", o), NetB: fmt.Sprintf("10.%d.12.0/24", o),
		id: id, hostIf: id + "h",
	}
	t.Cleanup(n.Close)
	if err := n.build(o); err != nil {
		if strings.Contains(err.Error(), "ip netns add") {
			t.Skipf("SKIPPED: cannot create network namespaces: %v", err)
		}
		t.Fatal(err)
	}
	return n
}

// RequireNetNS skips the test, saying why ("SKIPPED: ..."), unless it
// runs as root with ip and the other tools named (nft, iptables, tc...)
// on the PATH: what building network namespaces needs. CI runs as root.
func RequireNetNS(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: network namespaces need root (CI runs as root)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}[tool]
			if pkg == "" {
				pkg = tool
			}
			t.Skipf("SKIPPED: %s is missing (apt-get install -y %s)", tool, pkg)
		}
	}
}

// newNetID returns a namespace name prefix no other test of this machine
// uses ("k" + pid + a sequence number) and a second address octet
// (200..249) for the topology's private addresses.
func newNetID() (id string, octet int) {
	seq := netSeq.Add(1)
	return fmt.Sprintf("k%d%d", os.Getpid()%10000, seq), 200 + int(os.Getpid()+int(seq))%50
}

// addNamespaces creates the namespaces with their loopback up.
func addNamespaces(names ...string) error {
	for _, ns := range names {
		if err := runCmd("ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := runCmd("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	return nil
}

// veth creates a veth pair between namespaces ns1 ("" = root) and ns2,
// named if1 and if2, with the addresses given (prefixes such as
// "10.0.0.1/24"; IPv6 ones are added without duplicate address detection),
// and sets both ends up.
func veth(ns1, if1 string, addrs1 []string, ns2, if2 string, addrs2 []string) error {
	cmd := []string{"ip", "link", "add", "name", if1}
	if ns1 != "" {
		cmd = append(cmd, "netns", ns1)
	}
	cmd = append(cmd, "type", "veth", "peer", "name", if2, "netns", ns2)
	if err := runCmd(cmd...); err != nil {
		return err
	}
	for _, e := range []struct {
		ns, dev string
		addrs   []string
	}{{ns1, if1, addrs1}, {ns2, if2, addrs2}} {
		pre := []string{"ip"}
		if e.ns != "" {
			pre = append(pre, "-n", e.ns)
		}
		for _, a := range e.addrs {
			args := append(slices.Clone(pre), "addr", "add", a, "dev", e.dev)
			if strings.Contains(a, ":") {
				args = append(args, "nodad")
			}
			if err := runCmd(args...); err != nil {
				return err
			}
		}
		if err := runCmd(append(pre, "link", "set", e.dev, "up")...); err != nil {
			return err
		}
	}
	return nil
}

func (n *NATNet) build(o int) error {
	if err := addNamespaces(n.Relay, n.NATA, n.NATB, n.NodeA, n.NodeB); err != nil {
		return err
	}
	// link creates a veth pair between two namespaces ("" = root) with /24 addresses.
	link := func(ns1, if1, ip1, ns2, if2, ip2 string) error {
		return veth(ns1, if1, []string{ip1 + "/24"}, ns2, if2, []string{ip2 + "/24"})
	}
	steps := []func() error{
		func() error { return link("", n.hostIf, fmt.Sprintf("10.%d.0.2", o), n.Relay, "uplink", n.RelayIP) },
		func() error { return link(n.Relay, "toa", n.RelayIPA, n.NATA, "pub", n.NATAPublic) },
		func() error { return link(n.Relay, "tob", n.RelayIPB, n.NATB, "pub", n.NATBPublic) },
		func() error { return link(n.NATA, "priv", fmt.Sprintf("10.%d.11.1", o), n.NodeA, "eth0", n.NodeAIP) },
		func() error { return link(n.NATB, "priv", fmt.Sprintf("10.%d.12.1", o), n.NodeB, "eth0", n.NodeBIP) },
		func() error { return runCmd("ip", "-n", n.NATA, "route", "add", "default", "via", n.RelayIPA) },
		func() error { return runCmd("ip", "-n", n.NATB, "route", "add", "default", "via", n.RelayIPB) },
		func() error {
			return runCmd("ip", "-n", n.NodeA, "route", "add", "default", "via", fmt.Sprintf("10.%d.11.1", o))
		},
		func() error {
			return runCmd("ip", "-n", n.NodeB, "route", "add", "default", "via", fmt.Sprintf("10.%d.12.1", o))
		},
	}
	for _, ns := range []string{n.Relay, n.NATA, n.NATB} {
		steps = append(steps, func() error { return runCmd("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1") })
	}
	for _, ns := range []string{n.NATA, n.NATB} {
		steps = append(steps, func() error {
			return runCmd("ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "pub", "-j", "MASQUERADE")
		}, func() error {
			// A NAT: replies and nothing else come in from outside.
			return runCmd("ip", "netns", "exec", ns, "iptables", "-A", "FORWARD", "-i", "pub", "-m", "conntrack",
				"!", "--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "DROP")
		}, func() error {
			// Unsolicited packets to the NAT itself are dropped, not
			// answered with a RST: a hole-punching SYN that arrives before
			// the NAT saw its own side's SYN is lost (and retried), not
			// refused, as with a home router.
			return runCmd("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-i", "pub", "-m", "conntrack",
				"!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP")
		})
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// AllowDirect forwards TCP port on natB's outside address to nodeB (a port
// forward, as an operator would configure): nodeA can then dial nodeB
// directly at NATBPublic:port.
func (n *NATNet) AllowDirect(port int) error {
	return runCmd("ip", "netns", "exec", n.NATB, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "pub", "-p", "tcp",
		"--dport", fmt.Sprint(port), "-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", n.NodeBIP, port))
}

// SymmetricNAT makes natB map every outgoing connection to a random port
// (MASQUERADE --random-fully: an endpoint-dependent mapping, as carrier-
// grade and corporate NATs do), which defeats hole punching: a peer behind
// it is reachable through a relay only. Call it before the nodes connect.
func (n *NATNet) SymmetricNAT() error {
	return runCmd("ip", "netns", "exec", n.NATB, "iptables", "-t", "nat", "-R", "POSTROUTING", "1", "-o", "pub",
		"-j", "MASQUERADE", "--random-fully")
}

// Shape limits the path between the two NATs (the relay namespace's links
// to them, both directions) to rate bits per second with a token bucket
// (tc tbf, burst rate/1000 s and at least 256 KiB, 50 ms of queue): the
// path then has a bottleneck of its own, as between two sites. Calling it
// again replaces the shape; a zero rate removes it. (netem, which could
// add delay too, is not in these machines' kernels.)
func (n *NATNet) Shape(bitsPerSecond int64) error {
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("tc is missing (apt-get install -y iproute2): %w", err)
	}
	burst := max(256<<10, bitsPerSecond/8/1000)
	for _, dev := range []string{"toa", "tob"} {
		_ = runCmd("ip", "netns", "exec", n.Relay, "tc", "qdisc", "del", "dev", dev, "root")
		if bitsPerSecond <= 0 {
			continue
		}
		if err := runCmd("ip", "netns", "exec", n.Relay, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
			"rate", fmt.Sprintf("%dbit", bitsPerSecond), "burst", fmt.Sprint(burst), "latency", "50ms"); err != nil {
			return err
		}
	}
	return nil
}

// NetNSPath is the file of the named network namespace ns (what
// setns(2) and netlink's NetNS option take an fd of).
func NetNSPath(ns string) string { return filepath.Join("/var/run/netns", ns) }

// InNamespace runs fn on an OS thread switched into network namespace ns:
// sockets fn creates belong to ns and keep working from any goroutine. The
// thread is discarded afterwards (its goroutine ends locked), so no other
// goroutine ever runs in ns.
func InNamespace(ns string, fn func()) error { return inNamespace(ns, fn) }

func inNamespace(ns string, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(NetNSPath(ns))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// Listen listens on a TCP address inside namespace ns.
func (n *NATNet) Listen(ns, addr string) (net.Listener, error) { return ListenIn(ns, "tcp", addr) }

// Dial connects to a TCP address from inside namespace ns.
func (n *NATNet) Dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	return DialIn(ns, "tcp", addr, timeout)
}

// Command returns a command that runs name in namespace ns.
func (n *NATNet) Command(ns, name string, args ...string) *exec.Cmd {
	return CommandIn(ns, name, args...)
}

// ListenIn listens on a stream address ("tcp", "tcp4", "tcp6") inside
// namespace ns.
func ListenIn(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	var lerr error
	if err := inNamespace(ns, func() { ln, lerr = net.Listen(network, addr) }); err != nil {
		return nil, err
	}
	return ln, lerr
}

// ListenPacketIn listens on a datagram address ("udp", "udp4", "udp6")
// inside namespace ns.
func ListenPacketIn(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	var lerr error
	if err := inNamespace(ns, func() { pc, lerr = net.ListenPacket(network, addr) }); err != nil {
		return nil, err
	}
	return pc, lerr
}

// DialIn connects (TCP) or binds and connects (UDP) to addr from inside
// namespace ns.
func DialIn(ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var derr error
	if err := inNamespace(ns, func() { c, derr = net.DialTimeout(network, addr, timeout) }); err != nil {
		return nil, err
	}
	return c, derr
}

// CommandIn returns a command that runs name in namespace ns.
func CommandIn(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// StartRedis starts a redis-server inside the relay namespace, on
// RelayIP:6379 (reachable from the nodes through their NATs and from the
// test process), without persistence, and stops it at cleanup. It returns
// the redis:// URL.
func (n *NATNet) StartRedis(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	cmd := n.Command(n.Relay, "redis-server", "--bind", n.RelayIP, "--port", "6379", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server in %s: %v", n.Relay, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort(n.RelayIP, "6379")
	for i := 0; ; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("redis-server in %s did not listen: %s", n.Relay, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0"
}

// Close removes the namespaces (their veths and rules go with them).
func (n *NATNet) Close() {
	for _, ns := range []string{n.NodeA, n.NodeB, n.NATA, n.NATB, n.Relay} {
		_ = runCmd("ip", "netns", "del", ns)
	}
	_ = runCmd("ip", "link", "del", n.hostIf)
}
