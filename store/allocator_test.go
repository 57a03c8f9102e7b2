package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

func TestAllocatorIdempotentReuseFull(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	const space = "upf:a"
	alloc := func(key string, want uint32) {
		t.Helper()
		got, err := s.Allocate(ctx, space, 3, key)
		if err != nil || got != want {
			t.Fatalf("Allocate(%s) = %d, %v; want %d", key, got, err, want)
		}
	}
	alloc("a:1", 1)
	alloc("a:2", 2)
	alloc("a:1", 1) // idempotent
	alloc("a:3", 3)
	_, err := s.Allocate(ctx, space, 3, "a:4")
	var full *store.IndexFullError
	if !errors.Is(err, store.ErrFull) || !errors.As(err, &full) || full.Size != 3 || full.Key != "a:4" {
		t.Fatalf("Allocate in a full space: %v; want an *IndexFullError wrapping ErrFull", err)
	}
	// Freed indexes are reused first, lowest first.
	for _, k := range []string{"a:3", "a:1"} {
		if _, err := s.Release(ctx, space, k); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Release(ctx, space, "a:1"); err != nil || n != 0 {
		t.Fatalf("second Release = %d, %v; want 0, nil", n, err)
	}
	alloc("b:1", 1)
	alloc("b:2", 3)
	if _, err := s.LookupIndex(ctx, space, "a:1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupIndex of a released key: %v; want ErrNotFound", err)
	}
	if n, err := s.LookupIndex(ctx, space, "b:2"); err != nil || n != 3 {
		t.Fatalf("LookupIndex(b:2) = %d, %v", n, err)
	}
	all, err := s.Allocations(ctx, space)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(all) != "map[a:2:2 b:1:1 b:2:3]" {
		t.Fatalf("Allocations = %v", all)
	}
	// Another space is independent.
	if n, err := s.Allocate(ctx, "upf:b", 3, "a:1"); err != nil || n != 1 {
		t.Fatalf("other space: %d, %v", n, err)
	}
	// A space that shrank does not hand out freed indexes above its size.
	if _, err := s.Release(ctx, space, "b:2"); err != nil { // frees 3
		t.Fatal(err)
	}
	if _, err := s.Allocate(ctx, space, 2, "c:1"); !errors.Is(err, store.ErrFull) {
		t.Fatalf("shrunk space handed out index 3: %v", err)
	}
}

// TestAllocateManyAndReleaseMany allocates and releases many keys per call
// (one script run each): keys already mapped keep their index, a key given
// twice gets one index, freed indexes are reused lowest first before new
// ones, a space that fills up mid-call fails only the keys left without an
// index, and more keys than one chunk of the script (1000) work.
func TestAllocateManyAndReleaseMany(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	const space = "upf:many"
	idx := func(as []store.Allocation) string {
		var b strings.Builder
		for _, a := range as {
			fmt.Fprintf(&b, "%s=%d ", a.Key, a.Index)
		}
		return strings.TrimSpace(b.String())
	}
	as, err := s.AllocateMany(ctx, space, 6, "a", "b", "a", "c", "d")
	if err != nil || idx(as) != "a=1 b=2 a=1 c=3 d=4" {
		t.Fatalf("AllocateMany = %s, %v", idx(as), err)
	}
	freed, err := s.ReleaseMany(ctx, space, "c", "nope", "b", "c")
	if err != nil || fmt.Sprint(freed) != "[3 0 2 0]" {
		t.Fatalf("ReleaseMany = %v, %v; want [3 0 2 0]", freed, err)
	}
	// Freed 2 and 3 first, then 5 and 6; the space is full for f and h,
	// while d keeps its index.
	as, err = s.AllocateMany(ctx, space, 6, "e", "g", "x", "y", "f", "d", "h")
	if err != nil || idx(as) != "e=2 g=3 x=5 y=6 f=0 d=4 h=0" {
		t.Fatalf("AllocateMany in a filling space = %s, %v", idx(as), err)
	}
	for i, a := range as {
		if full := a.Index == 0; full != errors.Is(a.Err, store.ErrFull) {
			t.Errorf("key %d (%s): index %d, err %v", i, a.Key, a.Index, a.Err)
		}
	}
	all, err := s.Allocations(ctx, space)
	if err != nil || fmt.Sprint(all) != "map[a:1 d:4 e:2 g:3 x:5 y:6]" {
		t.Fatalf("Allocations = %v, %v", all, err)
	}
	// Beyond one chunk: 2,500 keys in one call, then all released in one.
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	as, err = s.AllocateMany(ctx, "upf:big", 10_000, keys...)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range as {
		if a.Err != nil || a.Index != uint32(i+1) || a.Key != keys[i] {
			t.Fatalf("key %d: %+v", i, a)
		}
	}
	if n, err := s.LookupIndex(ctx, "upf:big", "k2499"); err != nil || n != 2500 {
		t.Fatalf("LookupIndex(k2499) = %d, %v", n, err)
	}
	freed, err = s.ReleaseMany(ctx, "upf:big", keys...)
	if err != nil || len(freed) != len(keys) || freed[0] != 1 || freed[2499] != 2500 {
		t.Fatalf("ReleaseMany of 2,500: %d indexes, %v", len(freed), err)
	}
	if all, err := s.Allocations(ctx, "upf:big"); err != nil || len(all) != 0 {
		t.Fatalf("Allocations after ReleaseMany = %d, %v", len(all), err)
	}
	if n, err := s.Allocate(ctx, "upf:big", 10_000, "again"); err != nil || n != 1 {
		t.Fatalf("Allocate after ReleaseMany = %d, %v; want the lowest freed index, 1", n, err)
	}
}

func TestAllocatorBadInput(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for _, c := range []struct {
		space string
		size  uint32
		key   string
	}{{"", 5, "k"}, {"s", 0, "k"}, {"s", 5, ""}, {"s", store.MaxIndexSpace + 1, "k"}} {
		if _, err := s.Allocate(ctx, c.space, c.size, c.key); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Allocate(%q, %d, %q) = %v; want ErrInvalid", c.space, c.size, c.key, err)
		}
	}
}

// TestAllocatorTwoAgentsConcurrently has two agents (two clients, two
// stores) allocate 10,000 keys each at once, 5,000 of them the same keys:
// every key gets exactly one index, no index goes to two keys, and none
// leaks past the number of distinct keys.
func TestAllocatorTwoAgentsConcurrently(t *testing.T) {
	ctx := context.Background()
	prefix := srv.Prefix()
	agents := make([]*store.Store, 2)
	for i := range agents {
		st, err := store.New(store.Options{Client: srv.Client(t), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = st
	}
	const perAgent, shared = 10_000, 5_000
	got := make([]map[string]uint32, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for a := range agents {
		got[a] = map[string]uint32{}
		var mu sync.Mutex
		for w := range 4 { // four goroutines per agent, batches of 50
			wg.Go(func() {
				for b := w * 50; b < perAgent; b += 200 {
					keys := make([]string, 0, 50)
					for i := b; i < b+50; i++ {
						if i < shared {
							keys = append(keys, fmt.Sprintf("shared:%d", i))
						} else {
							keys = append(keys, fmt.Sprintf("agent%d:%d", a, i))
						}
					}
					as, err := agents[a].AllocateMany(ctx, "upf:x", 20_000, keys...)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, x := range as {
						if x.Err != nil {
							errs <- x.Err
						}
						got[a][x.Key] = x.Index
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	owner := map[uint32]string{}
	for a := range got {
		if len(got[a]) != perAgent {
			t.Fatalf("agent %d got %d keys, want %d", a, len(got[a]), perAgent)
		}
		for k, idx := range got[a] {
			if o, ok := owner[idx]; ok && o != k {
				t.Fatalf("index %d handed to %s and %s", idx, o, k)
			}
			owner[idx] = k
		}
	}
	for i := range shared {
		k := fmt.Sprintf("shared:%d", i)
		if got[0][k] != got[1][k] {
			t.Fatalf("%s: agent 0 got %d, agent 1 got %d", k, got[0][k], got[1][k])
		}
	}
	distinct := 2*perAgent - shared
	for idx := range owner {
		if idx < 1 || int(idx) > distinct {
			t.Fatalf("index %d outside 1..%d: a leak", idx, distinct)
		}
	}
	if len(owner) != distinct {
		t.Fatalf("%d indexes for %d distinct keys", len(owner), distinct)
	}
}

// TestAllocatorSurvivesRestart restarts Redis (append-only file on) and
// builds a new store, as a restarted agent would: mapped keys keep their
// index, freed ones are still reused first, and the next never-used index
// continues where it was.
func TestAllocatorSurvivesRestart(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	ctx := context.Background()
	open := func() *store.Store {
		st, err := store.New(store.Options{Client: r.Client(t), Prefix: "p"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// appendfsync always: a SIGKILL loses nothing acknowledged (everysec
	// may lose up to two seconds, which is Redis's durability, not ours).
	if err := r.Client(t).ConfigSet(ctx, "appendfsync", "always").Err(); err != nil {
		t.Fatal(err)
	}
	s := open()
	for i := range 5 {
		if _, err := s.Allocate(ctx, "upf", 100, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Release(ctx, "upf", "k1"); err != nil {
		t.Fatal(err)
	}
	waitAOFRewrite(t, r)
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	s = open()
	for _, c := range []struct {
		key  string
		want uint32
	}{{"k0", 1}, {"k4", 5}, {"new1", 2}, {"new2", 6}} {
		got, err := s.Allocate(ctx, "upf", 100, c.key)
		if err != nil || got != c.want {
			t.Errorf("after restart Allocate(%s) = %d, %v; want %d", c.key, got, err, c.want)
		}
	}
}

// waitAOFRewrite waits until the initial AOF rewrite that redis-server 7
// starts on an empty directory has finished: a crash before that loses the
// writes made meanwhile, which is not what a restart test is about.
func waitAOFRewrite(t *testing.T, r *testenv.Redis) {
	t.Helper()
	c := r.Client(t)
	for range 500 {
		info, err := c.Info(context.Background(), "persistence").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("AOF rewrite did not finish")
}

// BenchmarkAllocateTwoAgents allocates b.N distinct keys from two agents
// (two clients) at once, in batches of 100, and checks that no index was
// handed out twice.
func BenchmarkAllocateTwoAgents(b *testing.B) {
	ctx := context.Background()
	prefix := srv.Prefix()
	var agents [2]*store.Store
	for i := range agents {
		st, err := store.New(store.Options{Client: srv.Client(b), Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		agents[i] = st
	}
	var mu sync.Mutex
	seen := make(map[uint32]string, b.N)
	dup := 0
	b.ResetTimer()
	var wg sync.WaitGroup
	for a := range agents {
		wg.Go(func() {
			for lo := a * 100; lo < b.N; lo += 200 {
				keys := make([]string, 0, 100)
				for i := lo; i < min(lo+100, b.N); i++ {
					keys = append(keys, fmt.Sprint("k", i))
				}
				as, err := agents[a].AllocateMany(ctx, "bench", store.MaxIndexSpace, keys...)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				for _, x := range as {
					if _, ok := seen[x.Index]; ok || x.Err != nil {
						dup++
					}
					seen[x.Index] = x.Key
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if dup != 0 || len(seen) != b.N {
		b.Fatalf("%d duplicate or failed allocations, %d distinct indexes for %d keys", dup, len(seen), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}
