package relay_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
)

// gatedSender accepts every event, but while it is closed each Send waits
// (the relay's first event of a burst stays in flight). It settles what it
// accepts in its store, as notify does.
type gatedSender struct {
	st *store.Store

	mu   sync.Mutex
	gate chan struct{} // nil: open; else closed when the gate opens
	got  []cloudevents.Event
	wait int // Sends waiting at the gate
}

var _ relay.Sender = (*gatedSender)(nil)

func (g *gatedSender) Send(ctx context.Context, e cloudevents.Event) protocol.Result {
	g.mu.Lock()
	gate := g.gate
	if gate != nil {
		g.wait++
	}
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			g.mu.Lock()
			g.wait--
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
		g.wait--
		g.mu.Unlock()
	}
	if err := g.st.Settle(ctx, e.ID()); err != nil {
		return err
	}
	g.mu.Lock()
	g.got = append(g.got, e)
	g.mu.Unlock()
	return protocol.ResultACK
}

func (g *gatedSender) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedSender) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gatedSender) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wait
}

func (g *gatedSender) events() []cloudevents.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// burst is a relay in front of a gated sender, and services that lapse
// together.
type burst struct {
	st   *store.Store
	snd  *gatedSender
	a    *relay.Agent
	svcs []store.ServiceRecord
	// other is a service without a liveness interval: it never lapses.
	other store.ServiceRecord
	now   time.Time
}

// newBurst starts a relay with cfg (one partition, so that every event
// shares one queue) and registers n services with a liveness interval and
// one without, whose ADDED events it publishes before it returns.
func newBurst(t *testing.T, cfg relay.Config, n int) *burst {
	t.Helper()
	b := &burst{now: time.Now()}
	b.st = srv.Store(t, store.Options{Now: func() time.Time { return b.now }})
	b.snd = &gatedSender{st: b.st}
	cfg.Workers = 1
	var err error
	if b.a, err = relay.New(cfg, relay.Deps{Store: b.st, Sender: b.snd, Log: quiet()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "relay leads", func() bool { return b.a.Stats().Leader })
	for i := range n {
		r, _, err := b.st.CreateService(context.Background(), store.ServiceRecord{ID: fmt.Sprintf("lapse-%03d", i),
			AppInstanceID: "app", Name: "rni", State: store.StateActive, LivenessInterval: 10, Info: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		b.svcs = append(b.svcs, r)
	}
	if b.other, _, err = b.st.CreateService(context.Background(), store.ServiceRecord{ID: "other", AppInstanceID: "app",
		Name: "rni", State: store.StateActive, Info: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, b.a, n+1)
	return b
}

// lapse closes the gate and suspends every service in one claim: n bulk
// changes, the first of which stays in flight at the gate.
func (b *burst) lapse(t *testing.T) {
	t.Helper()
	b.snd.close()
	ex, err := b.st.ClaimExpired(context.Background(), b.now.Add(time.Hour), len(b.svcs))
	if err != nil || len(ex) != len(b.svcs) {
		t.Fatalf("claim: %d expiries, %v", len(ex), err)
	}
	waitFor(t, 10*time.Second, "the first bulk event at the gate", func() bool { return b.snd.waiting() == 1 })
}

// change makes a live change of service id (a new version in its info)
// and returns its stream id.
func (b *burst) change(t *testing.T, r store.ServiceRecord) string {
	t.Helper()
	r.Info = []byte(`{"v":2}`)
	_, sid, err := b.st.UpdateService(context.Background(), r, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// position is where the event id is in evs (-1: absent), and fails t when it is
// there more than once.
func position(t *testing.T, evs []cloudevents.Event, id string) int {
	t.Helper()
	at := -1
	for i, e := range evs {
		if e.ID() == id {
			if at >= 0 {
				t.Errorf("%s published twice (at %d and %d)", id, at, i)
			}
			at = i
		}
	}
	return at
}

// TestLiveChangesPassABulkBacklog: while the sink holds the first of 300
// bulk changes (a mass expiry), a live change of an unrelated service is
// read past the backlog, which is larger than QueueSize, and published
// next; a live change of a service whose bulk change is still queued waits
// behind it. With FIFO the unrelated change waits behind the whole burst.
// Nothing is published twice, although the backlog outlives the
// redelivery timeout and pending checks run meanwhile.
func TestLiveChangesPassABulkBacklog(t *testing.T) {
	const n = 300
	for _, tc := range []struct {
		name string
		fifo bool
	}{{"fair", false}, {"fifo", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastConfig("")
			cfg.QueueSize, cfg.Batch, cfg.FIFO = 16, 50, tc.fifo
			cfg.Redelivery, cfg.PendingCheck = 300*time.Millisecond, 50*time.Millisecond
			b := newBurst(t, cfg, n)
			tail := b.svcs[n-1]
			b.lapse(t)
			unrelated := b.change(t, b.other)
			behind := b.change(t, tail)
			if !tc.fifo {
				// Both read past the backlog and held as pending.
				waitFor(t, 10*time.Second, "every change read", func() bool { return pendingCount(t, b.st) == n+2 })
			}
			// Longer than the redelivery timeout: the queued events are
			// overdue, but in flight.
			time.Sleep(3 * cfg.Redelivery)
			b.snd.open()
			waitPublished(t, b.a, 2*n+3)

			evs := b.snd.events()[n+1:] // after the ADDED events
			if len(evs) != n+2 {
				t.Errorf("%d events published after the lapse, want %d", len(evs), n+2)
			}
			bulk := 0
			for _, e := range evs {
				if events.Bulk(e) {
					bulk++
				}
			}
			if bulk != n {
				t.Errorf("%d events marked bulk, want %d", bulk, n)
			}
			pu, pb := position(t, evs, unrelated), position(t, evs, behind)
			tailAt := slices.IndexFunc(evs, func(e cloudevents.Event) bool { return e.Subject() == tail.ID })
			if tc.fifo {
				if pu != n {
					t.Errorf("FIFO: the unrelated change published at %d, want %d (after the burst)", pu, n)
				}
			} else if pu != 1 {
				t.Errorf("the unrelated change published at %d, want 1 (right after the event in flight)", pu)
			}
			if pb <= tailAt || events.Bulk(evs[pb]) {
				t.Errorf("the live change of %s published at %d, its bulk change at %d: out of order", tail.ID, pb, tailAt)
			}
			if s := b.a.Stats(); s.Redelivered != 0 || s.Orphans != 0 {
				t.Errorf("stats %+v: an event queued was published again", s)
			}
			if p := pendingCount(t, b.st); p != 0 {
				t.Errorf("%d events still pending", p)
			}
		})
	}
}

// TestBulkBacklogIsBounded: the reader reads ahead past bulk changes only
// as far as BulkQueueSize (plus one read's Batch): the rest stay in Redis
// until the partition has room, and then every one is published once.
func TestBulkBacklogIsBounded(t *testing.T) {
	const n = 200
	cfg := fastConfig("")
	cfg.QueueSize, cfg.BulkQueueSize, cfg.Batch = 4, 40, 10
	b := newBurst(t, cfg, n)
	b.lapse(t)
	// What the reader took: held as pending, in flight (1), queued, or
	// read and waiting for room (at most one read).
	time.Sleep(500 * time.Millisecond)
	if p := pendingCount(t, b.st); p > int64(1+cfg.BulkQueueSize+int(cfg.Batch)) || p < int64(cfg.BulkQueueSize) {
		t.Errorf("%d events read ahead, want between %d and %d", p, cfg.BulkQueueSize, 1+cfg.BulkQueueSize+int(cfg.Batch))
	}
	b.snd.open()
	waitPublished(t, b.a, 2*n+1)
	evs := b.snd.events()[n+1:]
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.ID()] {
			t.Errorf("%s published twice", e.ID())
		}
		seen[e.ID()] = true
	}
	if len(seen) != n {
		t.Errorf("%d bulk events published, want %d", len(seen), n)
	}
}

// corruptStream garbles the data of every termination change it reads, as
// a change whose event cannot be built.
type corruptStream struct{ *store.Store }

func (c corruptStream) ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]store.Change, error) {
	chs, err := c.Store.ReadGroup(ctx, group, consumer, count, block, pending)
	for i := range chs {
		if chs[i].Kind == store.KindApp && chs[i].Type == store.ChangeTerminating {
			chs[i].Data = []byte("{not json")
		}
	}
	return chs, err
}

// TestMalformedChangeIsSettled: a change whose event the worker cannot
// build is acknowledged and settled (it was held as pending), never
// published, and never claimed again; the changes around it are published.
func TestMalformedChangeIsSettled(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	s.settling(st)
	cfg := fastConfig(s.URL)
	cfg.Redelivery, cfg.PendingCheck = 200*time.Millisecond, 50*time.Millisecond
	a, _ := start(t, cfg, corruptStream{st}, true)
	before := churn(t, st, "m", 2, 0)
	if _, _, err := st.StartTermination(context.Background(), "app-m", time.Second); err != nil {
		t.Fatal(err)
	}
	after := churn(t, st, "n", 2, 0)
	waitFor(t, 10*time.Second, "the other changes delivered", allDelivered(s, append(before, after...)))
	waitFor(t, 5*time.Second, "the malformed change acknowledged", func() bool { return a.Stats().Malformed == 1 })
	time.Sleep(5 * cfg.Redelivery)
	if st2 := a.Stats(); st2.Malformed != 1 || st2.Unpublished != 1 || st2.Redelivered != 0 || st2.Published != 4 {
		t.Errorf("stats %+v: want 1 malformed and unpublished, 4 published, none redelivered", st2)
	}
	if n := pendingCount(t, st); n != 0 {
		t.Errorf("%d pending: the malformed change was not settled", n)
	}
	for _, e := range s.events() {
		if e.typ == events.TypeAppTerminating {
			t.Errorf("the malformed change was published: %+v", e)
		}
	}
	s.check(t)
}
