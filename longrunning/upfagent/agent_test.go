package upfagent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/fakevpp"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf/binapi/upf_mp2"
	"github.com/kmep-io/kmep/store"
)

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

// body is a traffic rule whose one filter sends to dst over TCP; with
// filters > 1 it has that many filters (9 cannot be expressed by mp2upf).
func body(id, dst string, filters int) []byte {
	fs := make([]string, max(filters, 1))
	for i := range fs {
		fs[i] = fmt.Sprintf(`{"dstAddress":[%q],"protocol":["TCP"],"dstPort":["%d"]}`, dst, 80+i)
	}
	return fmt.Appendf(nil, `{"trafficRuleId":%q,"filterType":"FLOW","priority":1,"action":"DROP","state":"ACTIVE","trafficFilter":[%s]}`,
		id, strings.Join(fs, ","))
}

func trule(id, dst string, filters int) store.Rule {
	return store.Rule{Kind: store.RuleTraffic, ID: id, State: "ACTIVE", Body: body(id, dst, filters)}
}

type harness struct {
	t   testing.TB
	st  *store.Store
	vpp *fakevpp.VPP
}

func newHarness(t testing.TB, record bool) *harness {
	v, err := fakevpp.New(record)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &harness{t: t, st: srv.Store(t, store.Options{}), vpp: v}
}

// start runs an agent with the mp2upf driver on st until the test ends
// (or stop is called).
func (h *harness) start(st upfagent.Store, cfg upfagent.Config, reset <-chan struct{}) (a *upfagent.Agent, stop func()) {
	h.t.Helper()
	return h.startDriver(st, mp2upf.New(h.vpp.Conn), cfg, reset)
}

// startDriver runs an agent with driver drv on st until the test ends (or
// stop is called).
func (h *harness) startDriver(st upfagent.Store, drv upfagent.Driver, cfg upfagent.Config, reset <-chan struct{}) (a *upfagent.Agent, stop func()) {
	h.t.Helper()
	if cfg.UPF == "" {
		cfg.UPF = "upf1"
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	if cfg.Block == 0 {
		cfg.Block = 50 * time.Millisecond
	}
	a, err := upfagent.New(cfg, upfagent.Deps{Store: st, Driver: drv, Log: quiet(), Reset: reset})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return a, stop
}

// waitFor polls cond until it holds or 10 s passed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) status(app, id string) (store.RuleStatus, bool) {
	st, err := h.st.RuleStatus(context.Background(), "upf1", app, id)
	if errors.Is(err, store.ErrNotFound) {
		return st, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return st, true
}

func (h *harness) waitState(app, id, state string) store.RuleStatus {
	h.t.Helper()
	var st store.RuleStatus
	waitFor(h.t, app+":"+id+" "+state, func() bool {
		var ok bool
		st, ok = h.status(app, id)
		return ok && st.State == state
	})
	return st
}

// sent returns the mp2 messages the fake received, as "add 3 <first
// description>" / "del 3".
func (h *harness) sent() []string {
	var out []string
	for _, m := range h.vpp.Requests() {
		r, ok := m.(*upf_mp2.UpfMp2IPTrafficRule)
		if !ok {
			continue
		}
		if r.IsAdd == 0 {
			out = append(out, fmt.Sprintf("del %d", r.UpfTrafficruleID))
			continue
		}
		out = append(out, fmt.Sprintf("add %d %s", r.UpfTrafficruleID, bytes.TrimRight(r.Mp2TrafficRuleContent[0].FlowDescription, "\x00")))
	}
	return out
}

func TestAgentAppliesFollowsAndRemoves(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: []store.Rule{trule("r1", "10.0.0.1", 1), trule("r2", "10.0.0.2", 9)}}); err != nil {
		t.Fatal(err)
	}
	a, _ := h.start(h.st, upfagent.Config{}, nil)
	r1 := h.waitState("app1", "r1", store.RuleApplied)
	r2 := h.waitState("app1", "r2", store.RuleFailed)
	if r1.Index == 0 || r1.Rev != 1 {
		t.Fatalf("r1 status %+v", r1)
	}
	if !r2.Permanent || !strings.Contains(r2.Reason, "needs 9 flow descriptions") {
		t.Fatalf("r2 status %+v; want a permanent failure with the reason", r2)
	}
	if got := fmt.Sprint(h.sent()); got != fmt.Sprintf("[add %d deny out tcp from any to 10.0.0.1 80]", r1.Index) {
		t.Fatalf("sent %s", got)
	}

	// An update through Mp1 (the change stream).
	up := trule("r1", "10.9.9.9", 1)
	up.AppInstanceID = "app1"
	if _, _, err := h.st.UpdateRule(ctx, up, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "r1 rev 2 applied", func() bool { s, _ := h.status("app1", "r1"); return s.Rev == 2 && s.State == store.RuleApplied })
	if got := fmt.Sprint(h.sent()); got != fmt.Sprintf("[add %d deny out tcp from any to 10.9.9.9 80]", r1.Index) {
		t.Fatalf("sent after update %s", got)
	}
	// INACTIVE takes it out of the data plane.
	up.State = "INACTIVE"
	if _, _, err := h.st.UpdateRule(ctx, up, 0); err != nil {
		t.Fatal(err)
	}
	h.waitState("app1", "r1", store.RuleInactive)
	if got := fmt.Sprint(h.sent()); got != fmt.Sprintf("[del %d]", r1.Index) {
		t.Fatalf("sent after INACTIVE %s", got)
	}
	// Deleting the configuration removes the records and frees the indexes.
	if err := h.st.DeleteAppD(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "records gone", func() bool {
		all, err := h.st.AllRuleStatuses(ctx, "upf1")
		return err == nil && len(all) == 0
	})
	allocs, err := h.st.Allocations(ctx, "upf:upf1")
	if err != nil || len(allocs) != 0 {
		t.Fatalf("indexes left: %v %v", allocs, err)
	}
	if got := fmt.Sprint(h.sent()); got != "[]" {
		t.Fatalf("sent for deleting an inactive and an unsupported rule: %s", got)
	}
	s := a.Stats()
	if s.Applied != 2 || s.Removed != 1 || s.Unsupported != 1 || s.Resyncs != 1 || !s.Active {
		t.Fatalf("stats %+v", s)
	}
}

func TestAgentRetriesWhileDataPlaneDown(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	h.vpp.SetDown(true)
	a, _ := h.start(h.st, upfagent.Config{}, nil)
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: []store.Rule{trule("r1", "10.0.0.1", 1)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two failed attempts", func() bool { s, _ := h.status("app1", "r1"); return s.State == store.RuleFailed && s.Attempts >= 2 })
	s, _ := h.status("app1", "r1")
	if s.Permanent || !strings.Contains(s.Reason, fakevpp.ErrDown.Error()) {
		t.Fatalf("status while down %+v", s)
	}
	// A refusal (retval) is retried too.
	h.vpp.SetDown(false)
	h.vpp.SetRetval(-1)
	waitFor(t, "a refused attempt", func() bool { s, _ := h.status("app1", "r1"); return strings.Contains(s.Reason, "retval -1") })
	h.vpp.SetRetval(0)
	h.waitState("app1", "r1", store.RuleApplied)
	if st := a.Stats(); st.Failed < 3 || st.Applied != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAgentResyncAfterRestart stops the agent, changes rules while none
// runs, and starts a new one: it applies exactly the difference.
func TestAgentResyncAfterRestart(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	var rules []store.Rule
	for i := range 20 {
		rules = append(rules, trule(fmt.Sprint("r", i), fmt.Sprintf("10.0.0.%d", i), 1))
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	a, stop := h.start(h.st, upfagent.Config{}, nil)
	waitFor(t, "20 applied", func() bool { return a.Stats().Applied == 20 })
	stop()
	before := map[string]uint32{}
	for i := range 20 {
		s, _ := h.status("app1", fmt.Sprint("r", i))
		before[s.RuleID] = s.Index
	}
	h.vpp.Requests()

	// While no agent runs: r0..r4 deleted, r5 changed, r20 added.
	next := append([]store.Rule{}, rules[5:]...)
	next[0] = trule("r5", "10.5.5.5", 1)
	next = append(next, trule("r20", "10.0.0.20", 1))
	if _, err := h.st.ReplaceAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: next}); err != nil {
		t.Fatal(err)
	}
	b, _ := h.start(h.st, upfagent.Config{AgentID: "second"}, nil)
	waitFor(t, "resync", func() bool { s := b.Stats(); return s.Resyncs >= 1 && s.Changes >= 1 })
	waitFor(t, "r20 applied", func() bool { s, _ := h.status("app1", "r20"); return s.State == store.RuleApplied })
	got := map[string]bool{}
	for _, s := range h.sent() {
		got[s] = true
	}
	want := map[string]bool{
		fmt.Sprintf("add %d deny out tcp from any to 10.5.5.5 80", before["r5"]): true,
	}
	for i := range 5 {
		want[fmt.Sprintf("del %d", before[fmt.Sprint("r", i)])] = true
	}
	r20, _ := h.status("app1", "r20")
	want[fmt.Sprintf("add %d deny out tcp from any to 10.0.0.20 80", r20.Index)] = true
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart sent %v\nwant %v", got, want)
	}
	// r20 reuses a freed index (one of r0..r4's).
	if r20.Index > 20 {
		t.Fatalf("r20 got index %d; a freed one (<= 20) should be reused first", r20.Index)
	}
	if s := b.Stats(); s.Applied != 2 || s.Removed != 5 {
		t.Fatalf("second agent stats %+v", s)
	}
}

func TestAgentDataPlaneResetReappliesAll(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: []store.Rule{trule("r1", "10.0.0.1", 1), trule("r2", "10.0.0.2", 1)}}); err != nil {
		t.Fatal(err)
	}
	reset := make(chan struct{}, 1)
	a, _ := h.start(h.st, upfagent.Config{}, reset)
	waitFor(t, "applied", func() bool { return a.Stats().Applied == 2 })
	h.vpp.Requests()
	reset <- struct{}{}
	waitFor(t, "reapplied", func() bool { return a.Stats().Applied == 4 })
	if n := len(h.sent()); n != 2 {
		t.Fatalf("%d messages after a reset, want 2", n)
	}
}

// partition is a go-redis hook that cuts one client off Redis.
type partition struct{ cut atomic.Bool }

var errCut = errors.New("partitioned")

func (p *partition) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p.cut.Load() {
			return nil, errCut
		}
		return next(ctx, network, addr)
	}
}

func (p *partition) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if p.cut.Load() {
			cmd.SetErr(errCut)
			return errCut
		}
		return next(ctx, cmd)
	}
}

func (p *partition) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if p.cut.Load() {
			for _, c := range cmds {
				c.SetErr(errCut)
			}
			return errCut
		}
		return next(ctx, cmds)
	}
}

// TestAgentFailover runs two agents for one UPF. The active one is cut off
// Redis; the standby takes over within 2 × lease TTL and applies the
// rules changed meanwhile; the old one, back, stays standby; no version of
// a rule reaches the data plane after a newer one.
func TestAgentFailover(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	const ttl = 400 * time.Millisecond
	prefix := srv.Prefix()
	open := func(hook redis.Hook) *store.Store {
		c := srv.Client(t)
		if hook != nil {
			c.AddHook(hook)
		}
		st, err := store.New(store.Options{Client: c, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	cut := &partition{}
	stA, stB := open(cut), open(nil)
	h.st = stB
	var rules []store.Rule
	for i := range 10 {
		rules = append(rules, trule(fmt.Sprint("r", i), "10.0.1.1", 1))
	}
	if _, err := stB.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	a, _ := h.start(stA, upfagent.Config{AgentID: "A", LeaseTTL: ttl}, nil)
	waitFor(t, "A applied", func() bool { return a.Stats().Applied == 10 })
	b, _ := h.start(stB, upfagent.Config{AgentID: "B", LeaseTTL: ttl}, nil)
	time.Sleep(ttl) // B is standing by
	if b.Stats().Active {
		t.Fatal("two agents active")
	}

	cut.cut.Store(true)
	died := time.Now()
	for i := range rules {
		rules[i] = trule(fmt.Sprint("r", i), "10.0.2.2", 1)
	}
	if _, err := stB.ReplaceAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B active", func() bool { return b.Stats().Active })
	took := time.Since(died)
	t.Logf("takeover after %s (lease TTL %s)", took.Round(time.Millisecond), ttl)
	if took > 2*ttl+100*time.Millisecond { // scheduling slack on a shared machine
		t.Errorf("takeover took %s, more than 2 × %s", took, ttl)
	}
	waitFor(t, "B applied the new versions", func() bool { return b.Stats().Applied == 10 })
	cut.cut.Store(false)
	time.Sleep(2 * ttl)
	if a.Stats().Active {
		t.Fatal("A active again although B holds the lease")
	}
	// Order: per index, once 10.0.2.2 was sent, 10.0.1.1 never again.
	newer := map[uint32]bool{}
	for _, m := range h.vpp.Requests() {
		r := m.(*upf_mp2.UpfMp2IPTrafficRule)
		d := string(bytes.TrimRight(r.Mp2TrafficRuleContent[0].FlowDescription, "\x00"))
		switch {
		case strings.Contains(d, "10.0.2.2"):
			newer[r.UpfTrafficruleID] = true
		case newer[r.UpfTrafficruleID]:
			t.Fatalf("rule %d: old version %q sent after the new one", r.UpfTrafficruleID, d)
		}
	}
	if len(newer) != 10 {
		t.Fatalf("%d rules got the new version, want 10", len(newer))
	}
	all, err := stB.AllRuleStatuses(ctx, "upf1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Agent != "B" || s.State != store.RuleApplied || s.Rev != 2 {
			t.Fatalf("status %+v; want applied rev 2 by B", s)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := newHarness(t, false)
	d := mp2upf.New(h.vpp.Conn)
	for _, c := range []upfagent.Config{{UPF: "a:b"}, {LeaseTTL: time.Millisecond}, {MinBackoff: time.Second, MaxBackoff: time.Millisecond}} {
		if _, err := upfagent.New(c, upfagent.Deps{Store: h.st, Driver: d}); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if _, err := upfagent.New(upfagent.Config{}, upfagent.Deps{Store: h.st}); err == nil {
		t.Error("New without a driver accepted")
	}
}
