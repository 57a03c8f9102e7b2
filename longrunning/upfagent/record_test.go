package upfagent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf"
	"github.com/kmep-io/kmep/store"
)

// holdingStore is the real store whose PutRuleStatuses waits for hold to
// be closed once entered is signalled.
type holdingStore struct {
	*store.Store
	entered chan struct{}
	hold    chan struct{}
}

func (s *holdingStore) PutRuleStatuses(ctx context.Context, upf, lease, holder string, put []store.RuleStatus, del []store.RuleKey) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.hold
	return s.Store.PutRuleStatuses(ctx, upf, lease, holder, put, del)
}

// Stats count what the store holds: while the statuses of a batch are
// being written, the batch's applies are not counted yet. (Counting them
// first let TestAgentResyncAfterRestart stop the agent on "20 applied"
// before any status was written: about 2 runs in 9 failed.)
func TestStatsCountRecordedOutcomes(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	var rules []store.Rule
	for i := range 5 {
		rules = append(rules, trule(fmt.Sprint("r", i), fmt.Sprintf("10.0.0.%d", i), 1))
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	hs := &holdingStore{Store: h.st, entered: make(chan struct{}, 1), hold: make(chan struct{})}
	var release sync.Once
	unhold := func() { release.Do(func() { close(hs.hold) }) }
	a, _ := h.start(hs, upfagent.Config{}, nil)
	t.Cleanup(unhold) // before the agent's stop (cleanups run last first)
	<-hs.entered
	time.Sleep(50 * time.Millisecond)
	if s := a.Stats(); s.Applied != 0 {
		t.Fatalf("Applied = %d while no status is written yet", s.Applied)
	}
	unhold()
	waitFor(t, "5 applied", func() bool { return a.Stats().Applied == 5 })
	for i := range 5 {
		if s, ok := h.status("app1", fmt.Sprint("r", i)); !ok || s.State != store.RuleApplied || s.Index == 0 {
			t.Fatalf("r%d counted as applied with status %+v (%v)", i, s, ok)
		}
	}
}

// blockingDriver is the mp2upf driver whose Apply of rule slow waits for
// the other rules' applies, then until the agent's context ends, then
// applies it: a data-plane call that completes as the agent stops.
type blockingDriver struct {
	*mp2upf.Driver
	slow    string
	others  sync.WaitGroup // the other rules' applies
	entered chan struct{}
}

func (d *blockingDriver) Apply(ctx context.Context, r dataplane.Rule, prev dataplane.Handle) (dataplane.Handle, error) {
	if r.ID == d.slow {
		d.others.Wait()
		close(d.entered)
		<-ctx.Done()
		return d.Driver.Apply(context.Background(), r, prev)
	}
	defer d.others.Done()
	return d.Driver.Apply(ctx, r, prev)
}

// An agent stopped after its data-plane calls and before their record
// still records them (fenced by its lease): the data plane is never ahead
// of the records, so the next agent neither redoes the work nor finds
// indexes in use without a status.
func TestStopAfterDataPlaneCallsRecordsThem(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1",
		Traffic: []store.Rule{trule("fast", "10.0.0.1", 1), trule("slow", "10.0.0.2", 1)}}); err != nil {
		t.Fatal(err)
	}
	drv := &blockingDriver{Driver: mp2upf.New(h.vpp.Conn), slow: "slow", entered: make(chan struct{})}
	drv.others.Add(1)
	a, stop := h.startDriver(h.st, drv, upfagent.Config{Workers: 2}, nil)
	<-drv.entered
	stop() // while the slow rule's Apply is in the data plane
	sent := h.sent()
	if len(sent) != 2 {
		t.Fatalf("sent %v, want both rules added", sent)
	}
	for _, id := range []string{"fast", "slow"} {
		s, ok := h.status("app1", id)
		if !ok || s.State != store.RuleApplied || s.Index == 0 {
			t.Fatalf("%s is in the data plane (%v) but its status is %+v (%v)", id, sent, s, ok)
		}
	}
	if s := a.Stats(); s.Applied != 2 {
		t.Fatalf("stats %+v, want 2 applied", s)
	}
	// The next agent finds nothing to do.
	b, _ := h.start(h.st, upfagent.Config{AgentID: "next"}, nil)
	waitFor(t, "resync", func() bool { return b.Stats().Resyncs >= 1 })
	if got := h.sent(); len(got) != 0 {
		t.Fatalf("the next agent sent %v, want nothing", got)
	}
}

// Once the agent stops, the steps of its batch not yet driven make no
// data-plane call (govpp sends a message even with a cancelled context)
// and stay unrecorded; the next agent applies them.
func TestStopMakesNoNewDataPlaneCalls(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	rules := []store.Rule{trule("slow", "10.0.0.1", 1)}
	for i := range 5 {
		rules = append(rules, trule(fmt.Sprint("r", i), fmt.Sprintf("10.0.1.%d", i), 1))
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	// One worker: slow blocks it, whichever rule it drives first.
	drv := &firstBlocksDriver{Driver: mp2upf.New(h.vpp.Conn), entered: make(chan struct{})}
	_, stop := h.startDriver(h.st, drv, upfagent.Config{Workers: 1}, nil)
	<-drv.entered
	stop()
	if sent := h.sent(); len(sent) != 1 {
		t.Fatalf("sent %v after the stop began, want only the call in flight", sent)
	}
	all, err := h.st.AllRuleStatuses(ctx, "upf1")
	if err != nil || len(all) != 1 || all[0].State != store.RuleApplied {
		t.Fatalf("statuses %+v, %v: want the one rule the data plane holds", all, err)
	}
	b, _ := h.start(h.st, upfagent.Config{AgentID: "next"}, nil)
	waitFor(t, "the rest applied", func() bool { return b.Stats().Applied == 5 })
	if sent := h.sent(); len(sent) != 5 {
		t.Fatalf("the next agent sent %v, want the 5 rules not applied yet", sent)
	}
}

// firstBlocksDriver is the mp2upf driver whose first Apply waits until the
// agent's context ends, then applies its rule.
type firstBlocksDriver struct {
	*mp2upf.Driver
	once    sync.Once
	entered chan struct{}
}

func (d *firstBlocksDriver) Apply(ctx context.Context, r dataplane.Rule, prev dataplane.Handle) (dataplane.Handle, error) {
	first := false
	d.once.Do(func() { first = true })
	if first {
		close(d.entered)
		<-ctx.Done()
		return d.Driver.Apply(context.Background(), r, prev)
	}
	return d.Driver.Apply(ctx, r, prev)
}
