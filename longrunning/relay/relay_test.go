package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
)

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newStore returns a Store with a prefix of its own on the shared server.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	return srv.Store(t, store.Options{})
}

// received is one event the sink accepted.
type received struct {
	id, typ, subject string
	rev              int64
}

// sink is a CloudEvents receiver that records what it accepted; fail, when
// set, decides per request whether to answer 503 instead; settle, when
// set, is the store it settles each accepted event in (as notify would).
type sink struct {
	*httptest.Server
	fail   atomic.Pointer[func() bool]
	settle atomic.Pointer[store.Store]

	mu   sync.Mutex
	got  []received
	errs []string
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.fail.Load(); f != nil && (*f)() {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Header.Get("Ce-Id") == "" {
			s.errs = append(s.errs, "not binary content mode")
		}
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			s.errs = append(s.errs, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc := received{id: e.ID(), typ: e.Type(), subject: e.Subject()}
		if e.Type() == events.TypeServiceChanged {
			var d events.ServiceChanged
			if err := json.Unmarshal(e.Data(), &d); err != nil {
				s.errs = append(s.errs, err.Error())
			}
			rc.rev = d.Rev
		}
		s.got = append(s.got, rc)
		if st := s.settle.Load(); st != nil {
			if err := st.Settle(r.Context(), e.ID()); err != nil {
				s.errs = append(s.errs, err.Error())
			}
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) setFail(f func() bool) { s.fail.Store(&f) }

func (s *sink) events() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func (s *sink) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.errs {
		t.Error("sink:", e)
	}
}

// ids is the set of distinct ids the sink accepted.
func (s *sink) ids() map[string]int {
	m := map[string]int{}
	for _, e := range s.events() {
		m[e.id]++
	}
	return m
}

func fastConfig(sinkURL string) relay.Config {
	return relay.Config{Sink: sinkURL, Workers: 4, LeaseTTL: time.Second, Block: 100 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, SendTimeout: 2 * time.Second}
}

// start runs a relay until the test ends (or stop is called) and waits
// until it leads, unless wantLeader is false.
func start(t *testing.T, cfg relay.Config, st relay.Stream, wantLeader bool) (a *relay.Agent, stop func()) {
	t.Helper()
	a, err := relay.New(cfg, relay.Deps{Store: st, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	if wantLeader {
		waitFor(t, 10*time.Second, "relay leads", func() bool { return a.Stats().Leader })
	}
	return a, stop
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPublished waits until a counts at least n events published: the sink
// records an event before its 2xx answer reaches the relay, which counts
// the event only then. The callers then check the exact count.
func waitPublished(t *testing.T, a *relay.Agent, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d events counted as published", n),
		func() bool { return a.Stats().Published >= uint64(n) })
}

// churn creates n services and updates each of them k times, interleaved,
// and returns the stream ids written.
func churn(t *testing.T, st *store.Store, tag string, n, k int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	recs := make([]store.ServiceRecord, n)
	for i := range recs {
		recs[i] = store.ServiceRecord{ID: fmt.Sprintf("%s-svc%d", tag, i), AppInstanceID: "app-" + tag, Name: "rni",
			State: store.StateActive, Info: []byte(`{"v":0}`)}
		var sid string
		var err error
		if recs[i], sid, err = st.CreateService(ctx, recs[i]); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sid)
	}
	for j := 1; j <= k; j++ {
		for i := range recs {
			recs[i].Info = []byte(fmt.Sprintf(`{"v":%d}`, j))
			var sid string
			var err error
			if recs[i], sid, err = st.UpdateService(ctx, recs[i], 0); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sid)
		}
	}
	return ids
}

func allDelivered(s *sink, ids []string) func() bool {
	return func() bool {
		got := s.ids()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	}
}

func TestOrderPerSubjectUnderFailingSink(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	var mu sync.Mutex
	rnd := mathrand.New(mathrand.NewPCG(1, 2))
	s.setFail(func() bool { mu.Lock(); defer mu.Unlock(); return rnd.IntN(100) < 30 })
	a, _ := start(t, fastConfig(s.URL), st, true)

	const services, updates = 12, 8
	ids := churn(t, st, "o", services, updates)
	// A termination is published too; a registration is not.
	_, termID, err := st.StartTermination(context.Background(), "app-o", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, termID)
	if _, err := st.CreateRegistration(context.Background(), store.Registration{AppInstanceID: "app-o", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, ids))
	waitFor(t, 5*time.Second, "the registration acknowledged unpublished", func() bool { return a.Stats().Unpublished == 1 })
	s.check(t)
	bySubject := map[string][]int64{}
	for _, e := range s.events() {
		if e.typ == events.TypeAppTerminating {
			if e.subject != "app-o" || e.id != termID {
				t.Errorf("termination event: %+v", e)
			}
			continue
		}
		bySubject[e.subject] = append(bySubject[e.subject], e.rev)
	}
	if len(bySubject) != services {
		t.Fatalf("%d subjects, want %d", len(bySubject), services)
	}
	for subj, revs := range bySubject {
		if len(revs) != updates+1 {
			t.Errorf("%s: %d events %v, want %d (no duplicates in a steady run)", subj, len(revs), revs, updates+1)
		}
		for i, r := range revs {
			if r != int64(i+1) {
				t.Errorf("%s: out of order: %v", subj, revs)
				break
			}
		}
	}
	waitPublished(t, a, len(ids))
	st2 := a.Stats()
	if st2.Published != uint64(len(ids)) || st2.SendFailures == 0 || st2.Malformed != 0 {
		t.Errorf("stats %+v, want %d published and some send failures", st2, len(ids))
	}
}

func TestNothingLostWhileSinkIsDown(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	var down atomic.Bool
	down.Store(true)
	s.setFail(down.Load)
	a, _ := start(t, fastConfig(s.URL), st, true)
	ids := churn(t, st, "d", 10, 4)
	waitFor(t, 10*time.Second, "failures pile up", func() bool { return a.Stats().SendFailures >= 20 })
	if n := len(s.events()); n != 0 {
		t.Fatalf("%d events accepted while the sink was down", n)
	}
	down.Store(false)
	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, ids))
	s.check(t)
}

func TestOnlyOneRelayPublishes(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	cfg := fastConfig(s.URL)
	cfg.Holder = "one"
	a1, stop1 := start(t, cfg, st, true)
	cfg.Holder = "two"
	a2, _ := start(t, cfg, st, false)

	ids := churn(t, st, "l", 8, 5)
	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, ids))
	waitPublished(t, a1, len(ids))
	for id, n := range s.ids() {
		if n != 1 {
			t.Errorf("%s delivered %d times in a steady run", id, n)
		}
	}
	if p1, p2 := a1.Stats().Published, a2.Stats().Published; p1 != uint64(len(ids)) || p2 != 0 || a2.Stats().Leader {
		t.Fatalf("published %d by the leader and %d by the standby (leader: %v), want %d and 0",
			p1, p2, a2.Stats().Leader, len(ids))
	}

	// The standby takes over when the leader stops (and releases the lease).
	stop1()
	waitFor(t, 10*time.Second, "the standby leads", func() bool { return a2.Stats().Leader })
	more := churn(t, st, "l2", 4, 2)
	waitFor(t, 30*time.Second, "the standby delivers", allDelivered(s, more))
	waitPublished(t, a2, len(more))
	if a2.Stats().Published != uint64(len(more)) {
		t.Fatalf("standby published %d, want %d", a2.Stats().Published, len(more))
	}
	s.check(t)
}

func TestRestartResendsPendingEntries(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	var down atomic.Bool
	down.Store(true)
	s.setFail(down.Load)
	a1, stop1 := start(t, fastConfig(s.URL), st, true)
	ids := churn(t, st, "r", 6, 3)
	waitFor(t, 10*time.Second, "the first relay tries", func() bool { return a1.Stats().SendFailures >= 6 })
	stop1()
	if a1.Stats().Published != 0 {
		t.Fatalf("published %d with the sink down", a1.Stats().Published)
	}

	down.Store(false)
	a2, _ := start(t, fastConfig(s.URL), st, true)
	waitFor(t, 30*time.Second, "the restarted relay re-sends what was pending", allDelivered(s, ids))
	waitPublished(t, a2, len(ids))
	if a2.Stats().Published != uint64(len(ids)) {
		t.Fatalf("published %d, want %d", a2.Stats().Published, len(ids))
	}
	s.check(t)
}

func TestChangesBeforeTheFirstStartAreNotPublished(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	before := churn(t, st, "b", 2, 0)
	start(t, fastConfig(s.URL), st, true)
	after := churn(t, st, "a", 2, 0)
	waitFor(t, 10*time.Second, "changes after the start delivered", allDelivered(s, after))
	for _, id := range before {
		if s.ids()[id] != 0 {
			t.Errorf("%s was written before the group existed but was published", id)
		}
	}
}

// ghostStream drops the result of one read of new entries, as a relay
// that stepped down in the middle of its read would: the entries are then
// pending for the consumer, but nobody has them in flight.
type ghostStream struct {
	*store.Store
	ghosted atomic.Bool
}

func (g *ghostStream) ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]store.Change, error) {
	chs, err := g.Store.ReadGroup(ctx, group, consumer, count, block, pending)
	if err == nil && !pending && len(chs) > 0 && g.ghosted.CompareAndSwap(false, true) {
		return nil, nil
	}
	return chs, err
}

func TestOrphanedPendingEntriesArePublished(t *testing.T) {
	st := &ghostStream{Store: newStore(t)}
	s := newSink(t)
	cfg := fastConfig(s.URL)
	cfg.PendingCheck = 200 * time.Millisecond
	a, _ := start(t, cfg, st, true)
	ids := churn(t, st.Store, "g", 3, 0)
	more := churn(t, st.Store, "h", 3, 3)
	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, append(ids, more...)))
	if !st.ghosted.Load() || a.Stats().Orphans == 0 {
		t.Fatalf("no orphans found: %+v", a.Stats())
	}
	for id, n := range s.ids() {
		if n != 1 {
			t.Errorf("%s delivered %d times: a pending check re-sent an entry in flight", id, n)
		}
	}
	s.check(t)
}

func TestSurvivesRedisRestart(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	st, err := store.New(store.Options{Client: r.Client(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t)
	a, _ := start(t, fastConfig(s.URL), st, true)
	ids := churn(t, st, "x", 3, 2)
	waitFor(t, 30*time.Second, "delivered before the restart", allDelivered(s, ids))
	// Redis away for longer than the lease: the relay steps down (it cannot
	// know whether another one took over), then leads again.
	r.Stop()
	waitFor(t, 5*time.Second, "the relay steps down", func() bool { return !a.Stats().Leader })
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "Redis answers again", func() bool { return st.Ping(context.Background()) == nil })
	more := churn(t, st, "y", 3, 2)
	waitFor(t, 30*time.Second, "delivered after the restart", allDelivered(s, more))
	waitFor(t, 10*time.Second, "leading again", func() bool { return a.Stats().Leader })
	s.check(t)
}

func TestNewRejectsBadConfig(t *testing.T) {
	st := newStore(t)
	for _, tc := range []struct {
		name string
		cfg  relay.Config
		deps relay.Deps
	}{
		{"no store", relay.Config{Sink: "http://x"}, relay.Deps{}},
		{"no sink", relay.Config{}, relay.Deps{Store: st}},
		{"relative sink", relay.Config{Sink: "/broker"}, relay.Deps{Store: st}},
		{"negative workers", relay.Config{Sink: "http://x", Workers: -1}, relay.Deps{Store: st}},
		{"tiny lease", relay.Config{Sink: "http://x", LeaseTTL: time.Millisecond}, relay.Deps{Store: st}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := relay.New(tc.cfg, tc.deps); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// settling makes s settle each event it accepts in st before it answers,
// as notify does once every callback was served.
func (s *sink) settling(st *store.Store) {
	s.settle.Store(st)
}

// pendingCount is the store's pending count, failing t on an error.
func pendingCount(t *testing.T, st *store.Store) int64 {
	t.Helper()
	n, err := st.PendingCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An event its consumer does not settle is published again once its
// redelivery timeout has passed since its last activity, and again after
// each further timeout, until it is settled; then never again.
func TestUnsettledEventsArePublishedAgain(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	cfg := fastConfig(s.URL)
	cfg.Redelivery, cfg.PendingCheck = 300*time.Millisecond, 50*time.Millisecond
	a, _ := start(t, cfg, st, true)
	ids := churn(t, st, "u", 3, 1)
	// A registration is not an event: never pending.
	if _, err := st.CreateRegistration(context.Background(), store.Registration{AppInstanceID: "app-u", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every event published twice", func() bool {
		got := s.ids()
		for _, id := range ids {
			if got[id] < 2 {
				return false
			}
		}
		return true
	})
	if a.Stats().Redelivered < uint64(len(ids)) {
		t.Errorf("stats %+v: want at least %d redelivered", a.Stats(), len(ids))
	}
	if n := pendingCount(t, st); n != int64(len(ids)) {
		t.Errorf("%d pending, want %d (the events, not the registration)", n, len(ids))
	}
	if err := st.Settle(context.Background(), ids...); err != nil {
		t.Fatal(err)
	}
	// A publication that was in flight when they were settled may still
	// land; after that, none.
	time.Sleep(cfg.Redelivery)
	before := len(s.events())
	time.Sleep(4 * cfg.Redelivery)
	if after := len(s.events()); after != before {
		t.Errorf("%d events published after every event was settled", after-before)
	}
	s.check(t)
}

// A consumer that settles an event before the relay has even recorded
// its publication (the sink answers after notify is done) leaves nothing
// pending and nothing is published twice.
func TestSettledBeforeTheAcknowledgment(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	s.settling(st)
	cfg := fastConfig(s.URL)
	cfg.Redelivery, cfg.PendingCheck = 200*time.Millisecond, 50*time.Millisecond
	a, _ := start(t, cfg, st, true)
	ids := churn(t, st, "e", 5, 3)
	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, ids))
	waitPublished(t, a, len(ids))
	time.Sleep(5 * cfg.Redelivery)
	for id, n := range s.ids() {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if n := pendingCount(t, st); n != 0 || a.Stats().Redelivered != 0 {
		t.Errorf("%d pending, stats %+v: want nothing left and nothing redelivered", n, a.Stats())
	}
	s.check(t)
}

// With RedeliverOnStart, a new relay publishes every pending event at its
// first leadership (the all-in-one: its broker's queue died with the
// previous process); without it, it waits for the timeout.
func TestRedeliverOnStart(t *testing.T) {
	st := newStore(t)
	s := newSink(t)
	cfg := fastConfig(s.URL)
	cfg.Redelivery = time.Hour
	a1, stop1 := start(t, cfg, st, true)
	ids := churn(t, st, "s", 4, 1)
	waitFor(t, 30*time.Second, "every change delivered", allDelivered(s, ids))
	waitPublished(t, a1, len(ids))
	stop1()

	a2, stop2 := start(t, cfg, st, true)
	// The first pending check has run once the relay reads new entries:
	// one more change, delivered, shows it.
	more := churn(t, st, "s2", 1, 0)
	waitFor(t, 30*time.Second, "a later change delivered", allDelivered(s, more))
	stop2()
	if got := a2.Stats().Redelivered; got != 0 {
		t.Fatalf("without RedeliverOnStart: %d redelivered before the timeout", got)
	}

	cfg.RedeliverOnStart = true
	a3, _ := start(t, cfg, st, true)
	waitFor(t, 30*time.Second, "every pending event published again", func() bool {
		got := s.ids()
		for _, id := range append(ids, more...) {
			if got[id] < 2 {
				return false
			}
		}
		return true
	})
	if got := a3.Stats().Redelivered; got != uint64(len(ids)+len(more)) {
		t.Errorf("redelivered %d, want %d", got, len(ids)+len(more))
	}
	s.check(t)
}
