package nft_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/nft"
	"github.com/kmep-io/kmep/store/mec"
)

// node is a network namespace (an EdgeNet's node) and a driver on it.
type node struct {
	t  testing.TB
	n  *testenv.EdgeNet
	ns *os.File
}

func newNode(t testing.TB, tools ...string) *node {
	testenv.RequireNetNS(t, tools...)
	n := testenv.NewEdgeNet(t)
	f, err := os.Open(testenv.NetNSPath(n.Node))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &node{t: t, n: n, ns: f}
}

func (nd *node) driver(interfaces ...string) *nft.Driver {
	nd.t.Helper()
	d, err := nft.New(context.Background(), nft.Config{NetNS: int(nd.ns.Fd()), Interfaces: interfaces,
		Log: testLog(nd.t)})
	if err != nil {
		nd.t.Fatal(err)
	}
	nd.t.Cleanup(func() { _ = d.Close() })
	return d
}

func (nd *node) nft(args ...string) string {
	nd.t.Helper()
	out, err := testenv.CommandIn(nd.n.Node, "nft", args...).CombinedOutput()
	if err != nil {
		nd.t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

func op(t testing.TB, app, body string) dataplane.Op {
	t.Helper()
	tr, _, err := mec.DecodeTrafficRule([]byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return dataplane.Op{Apply: &dataplane.Rule{AppInstanceID: app, ID: tr.TrafficRuleID, Traffic: tr}}
}

func trafficRule(id string, prio int, action, filter, dst string) string {
	b := fmt.Sprintf(`{"trafficRuleId":%q,"filterType":"FLOW","priority":%d,"action":%q,"state":"ACTIVE","trafficFilter":[%s]`,
		id, prio, action, filter)
	if dst != "" {
		b += `,"dstInterface":` + dst
	}
	return b + "}"
}

func batch(t testing.TB, d *nft.Driver, ops ...dataplane.Op) {
	t.Helper()
	for i, r := range d.Batch(context.Background(), ops) {
		if r.Err != nil {
			t.Fatalf("op %d: %v", i, r.Err)
		}
	}
}

// goldenRules are rules of every action and filter kind, in an order that
// is not their priority order.
var goldenRules = []string{
	trafficRule("fwd", 3, "FORWARD_DECAPSULATED", `{"dstAddress":["198.51.100.7"],"protocol":["TCP"],"dstPort":["80","8000-8080"]}`,
		`{"interfaceType":"IP","dstIpAddress":"192.0.2.10"}`),
	trafficRule("drop", 1, "DROP", `{"srcAddress":["10.0.0.0/8"],"dstAddress":["198.51.100.0-198.51.100.3"],"dSCP":46}`, ""),
	trafficRule("dup", 2, "DUPLICATE_DECAPSULATED", `{"protocol":["UDP"],"srcPort":["5000-5999"],"dstPort":["53"]}`,
		`[{"interfaceType":"IP","dstIpAddress":"192.0.2.10"},{"interfaceType":"IP","dstIpAddress":"198.51.100.53"}]`),
	trafficRule("pass6", 2, "PASSTHROUGH", `{"dstAddress":["2001:db8::/32"],"tC":184}`, ""),
	trafficRule("fwd6", 0, "FORWARD_DECAPSULATED", `{"dstAddress":["2001:db8:1::1"],"protocol":["17"]}`,
		`{"interfaceType":"IP","dstIpAddress":"2001:db8:2::10"}`),
}

// The rules as nft itself shows them (testdata/ruleset.golden; UPDATE=1
// rewrites it): every action, every filter kind, in priority order.
func TestRulesetAsNftShowsIt(t *testing.T) {
	nd := newNode(t, "nft")
	d := nd.driver("ue0", "gtp*")
	var ops []dataplane.Op
	for _, b := range goldenRules {
		ops = append(ops, op(t, "app1", b))
	}
	batch(t, d, ops...)
	got := nd.nft("list", "table", "ip", "kmep") + nd.nft("list", "table", "ip6", "kmep")
	path := filepath.Join("testdata", "ruleset.golden")
	if os.Getenv("UPDATE") != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("ruleset:\n%s\nwant (%s):\n%s", got, path, want)
	}
}

// One Batch is one transaction: the ruleset generation moves by one, and a
// replaced rule moves to its new place in the same step.
func TestBatchIsOneTransaction(t *testing.T) {
	nd := newNode(t, "nft")
	d := nd.driver()
	ctx := context.Background()
	g0, err := d.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ops []dataplane.Op
	for _, b := range goldenRules {
		ops = append(ops, op(t, "app1", b))
	}
	batch(t, d, ops...)
	g1, _ := d.Generation(ctx)
	if g1 != g0+1 {
		t.Fatalf("generation %d → %d for one Batch of %d rules, want one commit", g0, g1, len(ops))
	}
	// drop moves from priority 1 to 9: last.
	batch(t, d, op(t, "app1", trafficRule("drop", 9, "DROP", `{"dstAddress":["198.51.100.9"]}`, "")))
	if g2, _ := d.Generation(ctx); g2 != g1+1 {
		t.Fatalf("generation %d → %d for one replaced rule, want one commit", g1, g2)
	}
	if got := evalOrder(nd.nft("list", "table", "ip", "kmep")); got != "dup fwd fwd drop" {
		t.Fatalf("order after the replace: %s, want dup fwd fwd drop", got)
	}
	// Removing a rule the kernel does not hold is not an error and commits nothing.
	if err := d.Remove(ctx, dataplane.Applied{AppInstanceID: "app1", ID: "nothing"}); err != nil {
		t.Fatal(err)
	}
	if g3, _ := d.Generation(ctx); g3 != g1+1 {
		t.Fatalf("removing nothing committed (generation %d → %d)", g1+1, g3)
	}
}

var (
	commentRE = regexp.MustCompile(`comment "kmep:\d+:app1:([^#"]+)#`)
	chainRE   = regexp.MustCompile(`(?s)chain (\S+) \{\n(.*?)\n\t\}`)
	jumpRE    = regexp.MustCompile(`jump (rules_\d+)`)
)

// evalOrder lists the rule ids of the parts of a table's "rules" chain in
// the order packets meet them (its jumps to the priority chains, in turn).
func evalOrder(table string) string {
	chains := map[string]string{}
	for _, m := range chainRE.FindAllStringSubmatch(table, -1) {
		chains[m[1]] = m[2]
	}
	var out []string
	for _, j := range jumpRE.FindAllStringSubmatch(chains["rules"], -1) {
		if c := comments(chains[j[1]]); c != "" {
			out = append(out, c)
		}
	}
	return strings.Join(out, " ")
}

// comments lists the rule ids of the parts of a chain, in order.
func comments(chain string) string {
	var out []string
	for _, m := range commentRE.FindAllStringSubmatch(chain, -1) {
		out = append(out, m[1])
	}
	return strings.Join(out, " ")
}

// Parts deleted or moved behind the driver's back are found (Missing) once
// it reads the kernel again, applying the rule again repairs it, and Sweep
// removes what the agent does not hold; rules without kmep's comments
// (an operator's) are never touched.
func TestMissingAndSweep(t *testing.T) {
	nd := newNode(t, "nft")
	d := nd.driver()
	ctx := context.Background()
	var ops []dataplane.Op
	for _, b := range goldenRules {
		ops = append(ops, op(t, "app1", b))
	}
	batch(t, d, ops...)
	// An operator's rule in the chain of priority 2, whose traffic rules all go.
	nd.nft("add", "rule", "ip", "kmep", "rules_002", "ip", "daddr", "192.0.2.99", "counter", "comment", `"operator"`)
	listing := nd.nft("-a", "list", "chain", "ip", "kmep", "rules_003")
	m := regexp.MustCompile(`comment "kmep:3:app1:fwd#1/4" # handle (\d+)`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no part 1 of fwd in\n%s", listing)
	}
	nd.nft("delete", "rule", "ip", "kmep", "rules_003", "handle", m[1])
	held := []dataplane.Applied{{AppInstanceID: "app1", ID: "fwd"}, {AppInstanceID: "app1", ID: "drop"},
		{AppInstanceID: "app1", ID: "dup"}, {AppInstanceID: "app1", ID: "pass6"}, {AppInstanceID: "app1", ID: "fwd6"},
		{AppInstanceID: "app1", ID: "gone"}}
	d.Forget()
	missing, err := d.Missing(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(missing)); got != "[fwd gone]" {
		t.Fatalf("missing %s, want [fwd gone]", got)
	}
	batch(t, d, ops[0])
	if missing, _ := d.Missing(ctx, held[:5]); len(missing) != 0 {
		t.Fatalf("missing after the repair: %v", ids(missing))
	}
	n, err := d.Sweep(ctx, held[:2])
	if err != nil || n != 3 {
		t.Fatalf("Sweep removed %d, %v; want 3", n, err)
	}
	rules := nd.nft("list", "ruleset")
	if got := comments(rules); got != "drop fwd fwd fwd fwd" {
		t.Fatalf("after the sweep: %s\n%s", got, rules)
	}
	if !strings.Contains(rules, `comment "operator"`) || !strings.Contains(rules, `jump rules_002`) {
		t.Fatalf("the operator's rule is gone, or no longer reached:\n%s", rules)
	}
	if strings.Contains(rules, "nat_002") || strings.Contains(rules, "rules_000") {
		t.Fatalf("emptied priority chains are left:\n%s", rules)
	}
}

func ids(as []dataplane.Applied) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// A table named like the driver's that someone else made is refused, and
// left as it was.
func TestForeignTableRefused(t *testing.T) {
	nd := newNode(t, "nft")
	nd.nft("add", "table", "ip", "kmep")
	nd.nft("add", "chain", "ip", "kmep", "theirs")
	before := nd.nft("list", "ruleset")
	_, err := nft.New(context.Background(), nft.Config{NetNS: int(nd.ns.Fd()), Log: testLog(t)})
	if !errors.Is(err, nft.ErrForeignTable) {
		t.Fatalf("New: %v, want ErrForeignTable", err)
	}
	t.Logf("refused: %v", err)
	if after := nd.nft("list", "ruleset"); after != before {
		t.Fatalf("the foreign table changed:\n%s\nwas:\n%s", after, before)
	}
}

// On a kernel without nf_tables, New fails at once and says so.
func TestNoNFTables(t *testing.T) {
	for _, c := range []struct {
		name string
		dial func() (*netlink.Conn, error)
	}{
		{"no nfnetlink", func() (*netlink.Conn, error) { return nil, unix.EPROTONOSUPPORT }},
		{"no nf_tables subsystem", func() (*netlink.Conn, error) {
			return nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
				return nltest.Error(int(unix.EOPNOTSUPP), req)
			}), nil
		}},
		{"no nf_tables, old kernel", func() (*netlink.Conn, error) {
			return nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
				return nltest.Error(int(unix.EINVAL), req)
			}), nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := nft.New(context.Background(), nft.Config{Dial: c.dial, Log: testLog(t)})
			if !errors.Is(err, nft.ErrNoNFTables) || !strings.Contains(err.Error(), "nf") {
				t.Fatalf("New: %v, want ErrNoNFTables", err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []nft.Config{{Table: "a:b"}, {Interfaces: []string{"*"}}, {Interfaces: []string{"eth0", "eth0"}},
		{Interfaces: []string{"averyveryverylongname0"}}} {
		cfg.Dial = func() (*netlink.Conn, error) { return nil, errors.New("must not dial") }
		if _, err := nft.New(context.Background(), cfg); err == nil || strings.Contains(err.Error(), "must not dial") {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func testLog(testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A Batch the kernel refuses (here: its view is stale, a part it replaces
// was deleted behind its back) is tried again in halves: every rule of it
// is applied after two more commits, not a commit per rule.
func TestRefusedBatchIsRetriedInHalves(t *testing.T) {
	nd := newNode(t, "nft")
	d := nd.driver()
	ctx := context.Background()
	version := func(port int) []dataplane.Op {
		ops := make([]dataplane.Op, 64)
		for i := range ops {
			ops[i] = op(t, "app1", trafficRule(fmt.Sprint("r", i), 7, "DROP",
				fmt.Sprintf(`{"dstAddress":["198.51.100.%d"],"protocol":["TCP"],"dstPort":["%d"]}`, i, port), ""))
		}
		return ops
	}
	batch(t, d, version(80)...)
	// Behind the driver's back: r5's only part goes.
	m := regexp.MustCompile(`comment "kmep:7:app1:r5#0/1" # handle (\d+)`).FindStringSubmatch(nd.nft("-a", "list", "chain", "ip", "kmep", "rules_007"))
	if m == nil {
		t.Fatal("r5 not found in rules_007")
	}
	nd.nft("delete", "rule", "ip", "kmep", "rules_007", "handle", m[1])
	g0, err := d.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch(t, d, version(81)...) // replaces r5's deleted part: refused as a whole
	g1, err := d.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g1-g0 != 2 {
		t.Fatalf("generation %d → %d: want two commits (the halves after the refusal)", g0, g1)
	}
	list := nd.nft("list", "chain", "ip", "kmep", "rules_007")
	if n := strings.Count(list, "dport 81"); n != 64 || strings.Contains(list, "dport 80") {
		t.Fatalf("%d rules of the new version, want 64 and none of the old:\n%s", n, list)
	}
}

// A socket whose send buffer is smaller than a Batch (SO_SNDBUF without
// CAP_NET_ADMIN's SO_SNDBUFFORCE: the system's maximum) makes the kernel
// refuse the one big message (EMSGSIZE): the batch is split until its
// parts fit, and every rule is applied.
func TestSmallSocketBufferSplitsBatches(t *testing.T) {
	nd := newNode(t, "nft")
	d, err := nft.New(context.Background(), nft.Config{NetNS: int(nd.ns.Fd()), Log: testLog(t), Dial: func() (*netlink.Conn, error) {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(nd.ns.Fd())})
		if err == nil {
			err = c.SetWriteBuffer(32 << 10) // the kernel doubles it: 64 KiB
		}
		return c, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	g0, err := d.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ops := make([]dataplane.Op, 2048)
	for i := range ops {
		ops[i] = op(t, "app1", trafficRule(fmt.Sprint("r", i), i%8, "DROP",
			fmt.Sprintf(`{"dstAddress":["172.16.%d.%d"],"protocol":["TCP"],"dstPort":["80"]}`, i>>8, i&255), ""))
	}
	batch(t, d, ops...)
	g1, err := d.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g1-g0 < 2 {
		t.Fatalf("generation %d → %d: 2,048 rules in one commit through a 64 KiB buffer?", g0, g1)
	}
	if n := len(regexp.MustCompile(`comment "kmep:\d+:app1:r\d+#0/1"`).FindAllString(nd.nft("list", "table", "ip", "kmep"), -1)); n != 2048 {
		t.Fatalf("%d rules in the kernel, want 2,048", n)
	}
	t.Logf("2,048 rules in %d commits", g1-g0)
}
