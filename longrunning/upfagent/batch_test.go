package upfagent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store"
)

// batchDriver is a Batcher and Sweeper that holds rules in a map and
// records the size of each Batch and what Sweep was given.
type batchDriver struct {
	mu      sync.Mutex
	holds   map[string]bool // "<app>:<rule>"
	batches []int
	swept   []string // the held rules given to the last Sweep, sorted
	sweeps  int
}

var (
	_ upfagent.Batcher = (*batchDriver)(nil)
	_ upfagent.Sweeper = (*batchDriver)(nil)
)

func (d *batchDriver) Apply(ctx context.Context, r dataplane.Rule, prev dataplane.Handle) (dataplane.Handle, error) {
	return d.Batch(ctx, []dataplane.Op{{Apply: &r, Prev: prev}})[0].Handle, nil
}

func (d *batchDriver) Remove(ctx context.Context, a dataplane.Applied) error {
	return d.Batch(ctx, []dataplane.Op{{Remove: &a}})[0].Err
}

func (d *batchDriver) Batch(_ context.Context, ops []dataplane.Op) []dataplane.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.batches = append(d.batches, len(ops))
	for _, op := range ops {
		if op.Apply != nil {
			d.holds[op.Apply.AppInstanceID+":"+op.Apply.ID] = true
		} else {
			delete(d.holds, op.Remove.AppInstanceID+":"+op.Remove.ID)
		}
	}
	return make([]dataplane.Result, len(ops))
}

func (d *batchDriver) Sweep(_ context.Context, held []dataplane.Applied) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[string]bool{}
	d.swept = d.swept[:0]
	for _, a := range held {
		keep[a.AppInstanceID+":"+a.ID] = true
		d.swept = append(d.swept, a.AppInstanceID+":"+a.ID)
	}
	slices.Sort(d.swept)
	n := 0
	for k := range d.holds {
		if !keep[k] {
			delete(d.holds, k)
			n++
		}
	}
	d.sweeps++
	return n, nil
}

// TestResyncBatchesAndSweep: a resync hands a Batcher its rules in steps
// of ResyncBatch (the change stream in steps of Batch), and its sweep is
// given exactly the rules the store's records then say the data plane may
// hold: an orphaned record removed in the same resync is not among them,
// and what the driver holds without a record is swept.
func TestResyncBatchesAndSweep(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	for a := range 3 {
		var rules []store.Rule
		for i := range 83 + a { // 83 + 84 + 85 = 252 rules
			rules = append(rules, trule(fmt.Sprint("r", i), fmt.Sprintf("10.0.%d.%d", a, i), 1))
		}
		if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: fmt.Sprint("app", a), Traffic: rules}); err != nil {
			t.Fatal(err)
		}
	}
	// A record of a rule that no longer exists (the data plane holds it),
	// and a rule the data plane holds without any record.
	orphan := store.RuleStatus{AppInstanceID: "gone", RuleID: "r1", State: store.RuleApplied, Digest: "x", Index: 9999}
	if err := h.st.PutRuleStatuses(ctx, "upf1", "", "", []store.RuleStatus{orphan}, nil); err != nil {
		t.Fatal(err)
	}
	d := &batchDriver{holds: map[string]bool{"gone:r1": true, "ghost:r1": true}}
	a, _ := h.startDriver(h.st, d, upfagent.Config{ResyncBatch: 100, Batch: 10}, nil)
	waitFor(t, "resync", func() bool { return a.Stats().Resyncs == 1 })

	d.mu.Lock()
	batches, swept, holds := slices.Clone(d.batches), slices.Clone(d.swept), len(d.holds)
	d.mu.Unlock()
	total := 0
	for _, n := range batches {
		if n > 100 {
			t.Errorf("a resync batch of %d rules; ResyncBatch is 100", n)
		}
		total += n
	}
	// 253 items in steps of 100: three steps; the removal is a Batch of its own.
	if total != 253 || len(batches) > 4 {
		t.Fatalf("batches %v: %d ops; want 252 applies and 1 removal in at most 4 batches", batches, total)
	}
	if holds != 252 {
		t.Fatalf("the driver holds %d rules after the sweep, want 252", holds)
	}
	all, err := h.st.AllRuleStatuses(ctx, "upf1")
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, st := range all {
		if st.State == store.RuleApplied {
			recorded = append(recorded, st.Key().String())
		}
	}
	slices.Sort(recorded)
	if len(recorded) != 252 || !slices.Equal(swept, recorded) {
		t.Fatalf("Sweep was given %d rules, the store records %d applied (orphan gone: %v)",
			len(swept), len(recorded), !slices.Contains(recorded, "gone:r1"))
	}

	// The change stream: 30 new rules reach the driver in batches of at most Batch.
	d.mu.Lock()
	d.batches = nil
	d.mu.Unlock()
	var more []store.Rule
	for i := range 30 {
		more = append(more, trule(fmt.Sprint("n", i), fmt.Sprintf("10.9.0.%d", i), 1))
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app9", Traffic: more}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "30 more applied", func() bool { return a.Stats().Applied == 252+30 })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.batches {
		if n > 10 {
			t.Fatalf("a stream batch of %d rules; Batch is 10 (batches %v)", n, d.batches)
		}
	}
}

// A stored body that is not a valid traffic rule (no writer stores one,
// but the store may hold anything) is FAILED, permanently, with the
// reason, and never reaches the driver; the rules beside it are applied.
func TestInvalidStoredBodyFails(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	rules := []store.Rule{
		trule("ok", "10.0.0.1", 1),
		{Kind: store.RuleTraffic, ID: "notjson", State: "ACTIVE", Body: []byte(`{"trafficRuleId":`)},
		{Kind: store.RuleTraffic, ID: "invalid", State: "ACTIVE", Body: []byte(`{"trafficRuleId":"invalid","filterType":"FLOW","priority":1,"action":"EXPLODE","state":"ACTIVE"}`)},
	}
	if _, err := h.st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", Traffic: rules}); err != nil {
		t.Fatal(err)
	}
	d := &batchDriver{holds: map[string]bool{}}
	a, _ := h.startDriver(h.st, d, upfagent.Config{}, nil)
	waitFor(t, "resync", func() bool { return a.Stats().Resyncs == 1 })
	for _, id := range []string{"notjson", "invalid"} {
		s, ok := h.status("app1", id)
		if !ok || s.State != store.RuleFailed || !s.Permanent || !strings.Contains(s.Reason, "stored rule body is invalid") {
			t.Errorf("%s: %+v, want FAILED (permanent): stored rule body is invalid", id, s)
		}
	}
	if s, _ := h.status("app1", "ok"); s.State != store.RuleApplied {
		t.Errorf("ok: %+v, want APPLIED", s)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.holds) != 1 || !d.holds["app1:ok"] {
		t.Fatalf("the driver holds %v, want only app1:ok", d.holds)
	}
}
