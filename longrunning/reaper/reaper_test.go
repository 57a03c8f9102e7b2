package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/reaper"
	"github.com/kmep-io/kmep/store"
)

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newStore returns a Store with a prefix of its own on the shared server.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	return srv.Store(t, store.Options{})
}

func service(id string, live int) store.ServiceRecord {
	return store.ServiceRecord{ID: id, AppInstanceID: "app", Name: "svc", State: store.StateActive,
		LivenessInterval: live, Info: []byte(`{"serInstanceId":"` + id + `"}`)}
}

// start runs an Agent over s until the test ends or the returned stop is
// called; stop waits for Run to return and fails the test on its error.
func start(t *testing.T, s reaper.Store, cfg reaper.Config) (*reaper.Agent, func()) {
	t.Helper()
	a, err := reaper.New(cfg, reaper.Deps{Store: s, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// register creates n services named prefix+i with intervals live(i) from a
// few goroutines, and returns their ids.
func register(t *testing.T, s *store.Store, n int, prefix string, live func(int) int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				ids[i] = fmt.Sprintf("%s%05d", prefix, i)
				if _, _, err := s.CreateService(context.Background(), service(ids[i], live(i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	return ids
}

// heartbeat sends one heartbeat for each id from a few goroutines.
func heartbeat(t *testing.T, s *store.Store, ids []string) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(ids); i += 8 {
				if _, err := s.Heartbeat(context.Background(), "app", ids[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// suspensions follows the change stream from after and counts the
// STATE_CHANGED→SUSPENDED entries per service id.
type suspensions struct {
	s     *store.Store
	after string
	count map[string]int
	at    map[string]time.Time // stream time of the latest entry per id
	// late is, per id, the stream time of the latest entry minus the
	// deadline it acted on (last heartbeat + interval + grace, from the
	// entry itself).
	late  map[string]time.Duration
	total int
}

func newSuspensions(t *testing.T, s *store.Store) *suspensions {
	t.Helper()
	after, err := s.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &suspensions{s: s, after: after, count: map[string]int{}, at: map[string]time.Time{}, late: map[string]time.Duration{}}
}

func (sp *suspensions) poll(t *testing.T) {
	t.Helper()
	for {
		chs, err := sp.s.ReadChanges(context.Background(), sp.after, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(chs) == 0 {
			return
		}
		for _, c := range chs {
			if c.Type == store.ChangeStateChanged && c.Service.State == store.StateSuspended {
				sp.count[c.Service.ID]++
				at := streamTime(c.StreamID)
				iv := time.Duration(c.Service.LivenessInterval) * time.Second
				sp.at[c.Service.ID] = at
				sp.late[c.Service.ID] = at.Sub(c.Service.LastHeartbeat.Add(iv + store.Grace(iv)))
				sp.total++
			}
		}
		sp.after = chs[len(chs)-1].StreamID
	}
}

// waitTotal polls until at least n suspensions were seen or timeout passed.
func (sp *suspensions) waitTotal(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		sp.poll(t)
		if sp.total >= n {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d suspensions after %s, want %d", sp.total, timeout, n)
		}
	}
}

// exactlyOnce checks that every id was suspended once and nothing else was.
func (sp *suspensions) exactlyOnce(t *testing.T, ids []string) {
	t.Helper()
	sp.poll(t)
	bad := 0
	for _, id := range ids {
		if sp.count[id] != 1 {
			if bad++; bad <= 10 {
				t.Errorf("%s: suspended %d times, want 1", id, sp.count[id])
			}
		}
	}
	if sp.total != len(ids) {
		t.Errorf("%d suspensions in all, want %d", sp.total, len(ids))
	}
}

// streamTime is the millisecond part of a stream entry id: when Redis
// appended it.
func streamTime(id string) time.Time {
	n, _ := strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64)
	return time.UnixMilli(n)
}

func TestExpirySuspendsAndHeartbeatRestores(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	sp := newSuspensions(t, s)
	a, _ := start(t, s, reaper.Config{})
	register(t, s, 1, "long", func(int) int { return 60 })
	register(t, s, 1, "x", func(int) int { return 1 })
	const id = "x00000"
	deadline, err := s.LivenessDeadline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	sp.waitTotal(t, 1, 5*time.Second)
	if sp.count[id] != 1 {
		t.Fatalf("suspended %v, want %s", sp.count, id)
	}
	if late := sp.at[id].Sub(deadline); late < 0 {
		t.Fatalf("suspended %s before its deadline", -late)
	} else {
		t.Logf("suspended %s after the deadline", late)
	}
	if r, _ := s.GetService(ctx, id); r.State != store.StateSuspended {
		t.Fatalf("state %s", r.State)
	}

	// A heartbeat brings it back, with its own STATE_CHANGED.
	l, err := s.Heartbeat(ctx, "app", id)
	if err != nil || l.State != store.StateActive || l.StreamID == "" {
		t.Fatalf("heartbeat: %+v %v", l, err)
	}
	if r, _ := s.GetService(ctx, id); r.State != store.StateActive {
		t.Fatalf("state after heartbeat %s", r.State)
	}
	chs, _ := s.ReadChanges(ctx, sp.after, 10, 0)
	if len(chs) != 1 || chs[0].Type != store.ChangeStateChanged || chs[0].Service.State != store.StateActive {
		t.Fatalf("changes after heartbeat: %+v", chs)
	}
	// ... and once it stops again, it is suspended again.
	sp.waitTotal(t, 2, 5*time.Second)
	if r, _ := s.GetService(ctx, "long00000"); r.State != store.StateActive {
		t.Fatalf("a service whose deadline is far off was touched: %+v", r)
	}
	if st := a.Stats(); st.Suspended != 2 || st.Claimed != 2 || st.Errors != 0 || time.Since(st.LastTick) > time.Second {
		t.Fatalf("stats %+v", st)
	}
}

// Two replicas over 2,000 services with 1–3 s intervals that heartbeat once
// and then stop: every expiry is handled exactly once, also when one replica
// is stopped in the middle.
func TestReplicasHandleEachExpiryOnce(t *testing.T) {
	const n = 2000
	for _, tc := range []struct {
		name      string
		stopOneAt int // stop replica 0 after this many suspensions; 0: never
	}{
		{"both run", 0},
		{"one stopped mid-run", n / 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ids := register(t, s, n, "r", func(i int) int { return 1 + i%3 })
			sp := newSuspensions(t, s)
			// The last heartbeat goes before the replicas start: on a slow
			// machine a deadline set at registration may pass first, and
			// a suspension before it would be undone and repeated.
			heartbeat(t, s, ids)
			cfg := reaper.Config{Batch: 50} // small batches: the replicas interleave
			a0, stop0 := start(t, s, cfg)
			a1, _ := start(t, s, cfg)
			if tc.stopOneAt > 0 {
				sp.waitTotal(t, tc.stopOneAt, 10*time.Second)
				stop0()
				t.Logf("stopped replica 0 after %d suspensions (its own: %d)", sp.total, a0.Stats().Suspended)
			}
			sp.waitTotal(t, n, 15*time.Second)
			time.Sleep(300 * time.Millisecond) // room for a second, wrong suspension to show up
			sp.exactlyOnce(t, ids)
			s0, s1 := a0.Stats(), a1.Stats()
			t.Logf("replica 0 %+v, replica 1 %+v", s0, s1)
			// A claim cut off by the stop may have run in Redis without
			// being counted: the stream above is the exact record.
			if sum := s0.Suspended + s1.Suspended; sum > n || (tc.stopOneAt == 0 && sum != n) {
				t.Fatalf("replicas counted %d suspensions, want %d", sum, n)
			}
		})
	}
}

func TestRecoversAfterRedisRestart(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	rdb, err := store.Dial(r.URL()) // the binary's client: short timeouts
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := store.New(store.Options{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	sp := newSuspensions(t, s)
	a, _ := start(t, s, reaper.Config{})
	ids := register(t, s, 200, "o", func(int) int { return 1 })
	time.Sleep(300 * time.Millisecond) // the AOF has the registrations

	r.Stop() // SIGKILL: a crash
	down := time.Now()
	time.Sleep(1500 * time.Millisecond) // every deadline falls due meanwhile
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis was down %s", time.Since(down).Round(time.Millisecond))
	sp.waitTotal(t, len(ids), 10*time.Second)
	sp.exactlyOnce(t, ids)
	if st := a.Stats(); st.Errors == 0 || st.Suspended != uint64(len(ids)) {
		t.Fatalf("stats %+v: want errors during the outage and %d suspensions", st, len(ids))
	}
}

// fakeStore serves deadlines from hooks.
type fakeStore struct {
	mu          sync.Mutex
	nextFn      func() (time.Time, bool, error)
	claimFn     func(limit int) ([]store.Expiry, error)
	claimsCalls int
}

var _ reaper.Store = (*fakeStore)(nil)

func (f *fakeStore) NextDeadline(context.Context) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextFn()
}

func (f *fakeStore) ClaimExpired(_ context.Context, _ time.Time, limit int) ([]store.Expiry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claimsCalls++
	return f.claimFn(limit)
}

func (f *fakeStore) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claimsCalls
}

func TestDrainsFullBatchesAndBacksOff(t *testing.T) {
	due := 7 // suspended expiries waiting
	failures := 3
	f := &fakeStore{}
	f.nextFn = func() (time.Time, bool, error) {
		if failures > 0 {
			failures--
			return time.Time{}, false, errors.New("connection refused")
		}
		return time.Now().Add(-time.Second), due > 0, nil
	}
	f.claimFn = func(limit int) ([]store.Expiry, error) {
		var out []store.Expiry
		for ; due > 0 && len(out) < limit; due-- {
			out = append(out, store.Expiry{ID: strconv.Itoa(due), State: store.StateSuspended, StreamID: "1-1"})
		}
		return out, nil
	}
	a, stop := start(t, f, reaper.Config{Batch: 3, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxPoll: 5 * time.Millisecond})
	for end := time.Now().Add(5 * time.Second); a.Stats().Claimed < 7; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("stats %+v", a.Stats())
		}
	}
	stop()
	// 3 + 3 + 1: the short batch ends the tick; nothing is due after it.
	if st := a.Stats(); st.Claimed != 7 || st.Suspended != 7 || st.Errors != 3 || f.calls() != 3 {
		t.Fatalf("stats %+v after %d claims", st, f.calls())
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  reaper.Config
		deps reaper.Deps
	}{
		{"no store", reaper.Config{}, reaper.Deps{}},
		{"negative poll", reaper.Config{MaxPoll: -1}, reaper.Deps{Store: &fakeStore{}}},
		{"negative batch", reaper.Config{Batch: -1}, reaper.Deps{Store: &fakeStore{}}},
		{"coalesce over max poll", reaper.Config{MaxPoll: time.Millisecond, Coalesce: time.Second}, reaper.Deps{Store: &fakeStore{}}},
		{"backoffs reversed", reaper.Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, reaper.Deps{Store: &fakeStore{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := reaper.New(tc.cfg, tc.deps); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
