package upfagent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/nft"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
)

var (
	_ upfagent.Driver  = (*nft.Driver)(nil)
	_ upfagent.Batcher = (*nft.Driver)(nil)
	_ upfagent.Auditor = (*nft.Driver)(nil)
	_ upfagent.Sweeper = (*nft.Driver)(nil)
)

const mm5Admin = "upfagent-test-admin-token-0123"

// edge is an EdgeNet whose remote server and MEC app answer on the same
// ports (TCP: a greeting line with their name, then an echo; UDP: their
// name and what they got), with a store, the Mm5 handler on it, and UPF
// agents driving nftables in the node namespace.
type edge struct {
	// t is the running (sub)test, root the test that owns the agents.
	t, root testing.TB
	n       *testenv.EdgeNet
	st      *store.Store
	mm5     http.Handler
}

// edgePorts are the ports the servers answer on.
var edgePorts = []int{7001, 7002, 7003, 7004}

func newEdge(t testing.TB) *edge {
	n := testenv.NewEdgeNet(t)
	e := &edge{t: t, root: t, n: n, st: srv.Store(t, store.Options{EncryptionKey: make([]byte, 32)})}
	admin, err := auth.NewAdmin(mm5Admin)
	if err != nil {
		t.Fatal(err)
	}
	e.mm5 = lcm.New(lcm.Deps{Store: e.st, Admin: admin, Log: quiet()})
	for _, s := range []struct{ ns, ip, name string }{
		{n.Remote, n.RemoteIP, "remote"}, {n.App, n.AppIP, "app"}, {n.Remote, n.RemoteIP6, "remote"}, {n.App, n.AppIP6, "app"},
	} {
		for _, p := range edgePorts {
			e.serve(s.ns, net.JoinHostPort(s.ip, fmt.Sprint(p)), s.name)
		}
	}
	return e
}

func (e *edge) serve(ns, addr, name string) {
	ln, err := testenv.ListenIn(ns, "tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, name+"\n"); err == nil {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	pc, err := testenv.ListenPacketIn(ns, "udp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name+":"+string(buf[:k])), from)
		}
	}()
}

// errBlocked is what a probe gets when nothing answers.
var errBlocked = errors.New("no answer")

// who dials addr from the UE over network ("tcp" or "udp"), sends msg and
// returns who answered ("remote", "app") and what came back, or errBlocked.
func (e *edge) who(network, addr, msg string) (string, error) {
	c, err := testenv.DialIn(e.n.UE, network, addr, 700*time.Millisecond)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", errBlocked
		}
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(700 * time.Millisecond))
	if network == "udp" {
		if _, err := io.WriteString(c, msg); err != nil {
			return "", err
		}
		buf := make([]byte, 2048)
		k, err := c.Read(buf)
		if err != nil {
			return "", errBlocked
		}
		name, got, _ := strings.Cut(string(buf[:k]), ":")
		if got != msg {
			return "", fmt.Errorf("%s answered %q to %q", name, got, msg)
		}
		return name, nil
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", errBlocked
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	echo := make([]byte, len(msg))
	if _, err := io.ReadFull(r, echo); err != nil || string(echo) != msg {
		return "", fmt.Errorf("echo %q, %v", echo, err)
	}
	return strings.TrimSpace(line), nil
}

// expect checks, for TCP and UDP, who answers at ip:port from the UE
// ("" = nobody).
func (e *edge) expect(step, ip string, port int, want string) {
	e.t.Helper()
	for _, network := range []string{"tcp", "udp"} {
		addr := net.JoinHostPort(ip, fmt.Sprint(port))
		got, err := e.who(network, addr, fmt.Sprintf("%s-%s-%d", step, network, time.Now().UnixNano()))
		switch {
		case want == "" && errors.Is(err, errBlocked):
		case err != nil && want != "":
			e.t.Fatalf("%s: %s %s: %v, want an answer from %s", step, network, addr, err, want)
		case err != nil:
			e.t.Fatalf("%s: %s %s: %v", step, network, addr, err)
		case got != want:
			e.t.Fatalf("%s: %s %s answered by %q, want %q", step, network, addr, got, or(want, "nobody"))
		}
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// mm5 sends an Mm5 appd_configuration request for app.
func (e *edge) mm5Call(method, app, body string) {
	e.t.Helper()
	req := httptest.NewRequest(method, "/mepcfg/app_lcm/v1/applications/"+app+"/appd_configuration", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+mm5Admin)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	e.mm5.ServeHTTP(w, req)
	if w.Code/100 != 2 {
		e.t.Fatalf("Mm5 %s %s: %d %s", method, app, w.Code, w.Body)
	}
}

// appd is an appd_configuration body with these traffic rules.
func appd(rules ...string) string {
	return `{"appTrafficRule":[` + strings.Join(rules, ",") + `],"appDNSRule":[],"appSupportMp1":true,"appName":"mecapp"}`
}

func trafficRule(id string, prio int, action, filter, dst string) string {
	r := fmt.Sprintf(`{"trafficRuleId":%q,"filterType":"FLOW","priority":%d,"action":%q,"trafficFilter":[%s]`, id, prio, action, filter)
	if dst != "" {
		r += `,"dstInterface":` + dst
	}
	return r + "}"
}

func ipIf(ip string) string { return fmt.Sprintf(`{"interfaceType":"IP","dstIpAddress":%q}`, ip) }

// agentRun is a running UPF agent with its nftables driver.
type agentRun struct {
	a    *upfagent.Agent
	d    *nft.Driver
	stop func()
}

// start runs a UPF agent whose nftables driver programs the node
// namespace (rules on packets coming in from the UE side).
func (e *edge) start(id string) *agentRun {
	e.t.Helper()
	f, err := os.Open(testenv.NetNSPath(e.n.Node))
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := nft.New(context.Background(), nft.Config{NetNS: int(f.Fd()), Interfaces: []string{e.n.NodeUEIf}, Log: quiet()})
	if err != nil {
		_ = f.Close()
		e.t.Fatal(err)
	}
	a, err := upfagent.New(upfagent.Config{UPF: "upf1", AgentID: id, Block: 50 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, upfagent.Deps{Store: e.st, Driver: d, Log: quiet()})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	r := &agentRun{a: a, d: d}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
			_ = d.Close()
			_ = f.Close()
		})
	}
	e.root.Cleanup(r.stop)
	waitFor(e.t, "agent "+id+" resynchronised", func() bool { return a.Stats().Resyncs >= 1 })
	return r
}

// waitRules waits until the app's rules have these states (absent: no
// record) and returns their records.
func (e *edge) waitRules(app string, want map[string]string) map[string]store.RuleStatus {
	e.t.Helper()
	got := map[string]store.RuleStatus{}
	defer func() {
		if e.t.Failed() {
			all, err := e.st.AllRuleStatuses(context.Background(), "upf1")
			e.t.Logf("records: %+v %v", all, err)
		}
	}()
	waitFor(e.t, fmt.Sprintf("rule states %v", want), func() bool {
		for id, state := range want {
			s, err := e.st.RuleStatus(context.Background(), "upf1", app, id)
			switch {
			case errors.Is(err, store.ErrNotFound) && state == "absent":
			case err != nil || s.State != state:
				return false
			}
			got[id] = s
		}
		return true
	})
	return got
}

// nftList is the node's ruleset as nft shows it.
func (e *edge) nftList() string {
	e.t.Helper()
	out, err := testenv.CommandIn(e.n.Node, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		e.t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

func (e *edge) nft(args ...string) {
	e.t.Helper()
	if out, err := testenv.CommandIn(e.n.Node, "nft", args...).CombinedOutput(); err != nil {
		e.t.Fatalf("nft %v: %v: %s", args, err, out)
	}
}

// TestNftablesTrafficRules drives real packets (TCP and UDP, IPv4 and
// IPv6) from a UE namespace through an edge node namespace whose nftables
// the UPF agent programs, to a remote server and a local MEC app. Each
// action is proven by who answers; priorities decide overlaps; a rule
// nftables cannot express is FAILED and none of it is in the kernel; an
// agent restart commits nothing and a connection in flight goes on; Mm5's
// DELETE restores the original path; rules kmep did not make stay.
func TestNftablesTrafficRules(t *testing.T) {
	testenv.RequireNetNS(t, "nft")
	e := newEdge(t)
	n := e.n
	ctx := context.Background()
	// Someone else's table, before kmep's.
	e.nft("add", "table", "ip", "other")
	e.nft("add", "chain", "ip", "other", "forwarded", "{ type filter hook forward priority 0; policy accept; }")
	e.nft("add", "rule", "ip", "other", "forwarded", "counter", "comment", `"not kmep's"`)

	for _, p := range edgePorts {
		e.expect("no rules", n.RemoteIP, p, "remote")
	}
	agentA := e.start("A")
	// An operator's rule inside kmep's own chain.
	e.nft("add", "rule", "ip", "kmep", "rules", "ip", "daddr", "192.0.2.99", "counter", "comment", `"operator"`)

	remote := func(port int) string { return fmt.Sprintf(`{"dstAddress":[%q],"dstPort":["%d"]}`, n.RemoteIP, port) }
	rules := []string{
		trafficRule("dup", 0, "DUPLICATE_DECAPSULATED", remote(7004), "["+ipIf(n.AppIP)+","+ipIf(n.RemoteIP)+"]"),
		trafficRule("drop", 1, "DROP", remote(7003), ""),
		trafficRule("pass", 2, "PASSTHROUGH", remote(7001), ""),
		// Every port of the remote server, below the three above.
		trafficRule("fwd", 3, "FORWARD_DECAPSULATED", fmt.Sprintf(`{"dstAddress":[%q]}`, n.RemoteIP+"/32"), ipIf(n.AppIP)),
		trafficRule("fwd6", 3, "FORWARD_DECAPSULATED", fmt.Sprintf(`{"dstAddress":[%q],"protocol":["TCP","UDP"],"dstPort":["7000-7002"]}`, n.RemoteIP6), ipIf(n.AppIP6)),
		// Not expressible: GTP-U fields, an encapsulation.
		trafficRule("gtp", 4, "DROP", `{"srcTunnelAddress":["10.9.9.9"]}`, ""),
		trafficRule("encap", 4, "FORWARD_ENCAPSULATED", remote(7002),
			`{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"GTP_U","tunnelDstAddress":"10.9.9.9"}}`),
	}
	e.mm5Call("POST", "mecapp", appd(rules...))
	sts := e.waitRules("mecapp", map[string]string{"dup": store.RuleApplied, "drop": store.RuleApplied, "pass": store.RuleApplied,
		"fwd": store.RuleApplied, "fwd6": store.RuleApplied, "gtp": store.RuleFailed, "encap": store.RuleFailed})
	for id, want := range map[string]string{"gtp": "tunnel addresses", "encap": "GTP-U or GRE encapsulation"} {
		if s := sts[id]; !s.Permanent || !strings.Contains(s.Reason, want) {
			t.Errorf("%s: %+v; want a permanent failure saying %q", id, s, want)
		}
	}
	ruleset := e.nftList()
	for _, id := range []string{"gtp", "encap"} {
		if strings.Contains(ruleset, "mecapp:"+id+"#") {
			t.Fatalf("the kernel holds parts of the failed rule %s:\n%s", id, ruleset)
		}
	}

	t.Run("actions", func(t *testing.T) {
		e.t = t
		e.expect("PASSTHROUGH above FORWARD", n.RemoteIP, 7001, "remote")
		e.expect("FORWARD", n.RemoteIP, 7002, "app")
		e.expect("DROP above FORWARD", n.RemoteIP, 7003, "")
		e.expect("FORWARD IPv6", n.RemoteIP6, 7002, "app")
		e.expect("no rule for IPv6 7003", n.RemoteIP6, 7003, "remote")
		// DUPLICATE: the remote server answers, and the MEC app's link
		// carries a copy of what the UE sent (the app's stack drops it:
		// it is addressed to the remote server).
		capt, err := testenv.CaptureIn(n.App, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		defer capt.Close()
		for _, network := range []string{"tcp", "udp"} {
			marker := fmt.Sprintf("duplicate-%s-%d", network, time.Now().UnixNano())
			got, err := e.who(network, net.JoinHostPort(n.RemoteIP, "7004"), marker)
			if err != nil || got != "remote" {
				t.Fatalf("DUPLICATE %s: answered by %q, %v; want the remote server", network, got, err)
			}
			waitFor(t, "the copy of "+marker+" on the app's link", func() bool { return capt.Count([]byte(marker)) > 0 })
		}
	})

	t.Run("priorities", func(t *testing.T) {
		e.t = t
		// PASSTHROUGH and DROP now rank below FORWARD: FORWARD decides.
		rules[1] = trafficRule("drop", 5, "DROP", remote(7003), "")
		rules[2] = trafficRule("pass", 6, "PASSTHROUGH", remote(7001), "")
		e.mm5Call("PUT", "mecapp", appd(rules...))
		waitFor(t, "new priorities applied", func() bool {
			for _, id := range []string{"drop", "pass"} {
				s, err := e.st.RuleStatus(ctx, "upf1", "mecapp", id)
				if err != nil || s.State != store.RuleApplied || s.Rev < 2 {
					return false
				}
			}
			return true
		})
		e.expect("FORWARD above PASSTHROUGH", n.RemoteIP, 7001, "app")
		e.expect("FORWARD above DROP", n.RemoteIP, 7003, "app")
	})

	t.Run("restart", func(t *testing.T) {
		e.t = t
		tcp, err := testenv.DialIn(n.UE, "tcp", net.JoinHostPort(n.RemoteIP, "7002"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer tcp.Close()
		r := bufio.NewReader(tcp)
		if line, err := r.ReadString('\n'); err != nil || line != "app\n" {
			t.Fatalf("in-flight connection greeted by %q, %v", line, err)
		}
		exchange := func(msg string) {
			t.Helper()
			_ = tcp.SetDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(tcp, msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
				t.Fatalf("in-flight connection: %q, %v", buf, err)
			}
		}
		exchange("before the restart")
		gen, err := agentA.d.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		agentA.stop()
		exchange("between the agents")
		agentB := e.start("B")
		if s := agentB.a.Stats(); s.Applied != 0 || s.Removed != 0 {
			t.Fatalf("the restarted agent changed rules: %+v", s)
		}
		if g, err := agentB.d.Generation(ctx); err != nil || g != gen {
			t.Fatalf("ruleset generation %d before the restart, %d (%v) after: the restart committed something", gen, g, err)
		}
		exchange("after the restart")
		e.expect("FORWARD after the restart", n.RemoteIP, 7002, "app")
	})

	t.Run("Mm5 delete", func(t *testing.T) {
		e.t = t
		e.mm5Call("DELETE", "mecapp", "")
		e.waitRules("mecapp", map[string]string{"dup": "absent", "drop": "absent", "pass": "absent", "fwd": "absent",
			"fwd6": "absent", "gtp": "absent", "encap": "absent"})
		for _, p := range edgePorts {
			e.expect("after DELETE", n.RemoteIP, p, "remote")
		}
		e.expect("after DELETE, IPv6", n.RemoteIP6, 7002, "remote")
		ruleset := e.nftList()
		if strings.Contains(ruleset, "kmep:0:") || strings.Contains(ruleset, "mecapp:") {
			t.Fatalf("traffic rules left in the kernel:\n%s", ruleset)
		}
		for _, want := range []string{`comment "not kmep's"`, `comment "operator"`, `comment "kmep:jump:ue0"`} {
			if !strings.Contains(ruleset, want) {
				t.Fatalf("%s is gone:\n%s", want, ruleset)
			}
		}
	})
}

// A table emptied behind the agent's back (nft flush table) is found at
// the next resync: its chains are set up again and the rules recorded as
// applied go back in.
func TestNftablesRulesRestoredAfterFlush(t *testing.T) {
	testenv.RequireNetNS(t, "nft")
	e := newEdge(t)
	n := e.n
	a := e.start("A")
	e.mm5Call("POST", "mecapp", appd(trafficRule("fwd", 3, "FORWARD_DECAPSULATED",
		fmt.Sprintf(`{"dstAddress":[%q]}`, n.RemoteIP), ipIf(n.AppIP))))
	e.waitRules("mecapp", map[string]string{"fwd": store.RuleApplied})
	e.expect("FORWARD", n.RemoteIP, 7002, "app")
	a.stop()
	e.nft("flush", "table", "ip", "kmep")
	e.expect("flushed", n.RemoteIP, 7002, "remote")
	b := e.start("B")
	if s := b.a.Stats(); s.Applied != 1 {
		t.Fatalf("the restarted agent applied %d rules, want the 1 missing", s.Applied)
	}
	e.expect("restored", n.RemoteIP, 7002, "app")
}
