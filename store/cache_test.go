package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

func names(cs []*store.CachedService) string {
	var s string
	for i, c := range cs {
		if i > 0 {
			s += ","
		}
		s += c.ID
	}
	return s
}

func TestServiceCacheFollowsStream(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _, _ := newStore(t)
	mustCreate(t, s, svc("c1", "appA", "rni", "cat", 0))
	cache := store.NewServiceCache(s, store.CacheOptions{
		Render: func(r store.ServiceRecord) []byte { return []byte(r.State + ":" + r.Name) },
	})
	done := make(chan struct{})
	go func() { cache.Run(ctx); close(done) }()

	sid := mustCreate(t, s, svc("c2", "appB", "rni", "", 0))
	if !cache.WaitFor(ctx, sid, 2*time.Second) {
		t.Fatal("cache did not catch up with c2")
	}
	if !cache.Fresh() {
		t.Fatal("cache not fresh while following")
	}
	if got := names(cache.Select(store.Filter{Names: []string{"rni"}})); got != "c1,c2" {
		t.Fatalf("by name: %q", got)
	}
	if got := names(cache.Select(store.Filter{Categories: []string{"cat"}})); got != "c1" {
		t.Fatalf("by cat: %q", got)
	}
	if got := names(cache.Select(store.Filter{App: "appB"})); got != "c2" {
		t.Fatalf("by app: %q", got)
	}
	if got := names(cache.Select(store.Filter{IDs: []string{"c2", "c1", "c2"}})); got != "c1,c2" {
		t.Fatalf("by ids: %q", got)
	}
	up := svc("c1", "appA", "loc", "", 0)
	up.State = store.StateInactive
	_, sid, err := s.UpdateService(ctx, up, 0)
	if err != nil {
		t.Fatal(err)
	}
	cache.WaitFor(ctx, sid, 2*time.Second)
	if cs, ok := cache.Get("c1"); !ok || string(cs.JSON) != "INACTIVE:loc" || cs.Rev != 2 {
		t.Fatalf("updated entry: %+v", cs)
	}
	if got := names(cache.Select(store.Filter{Names: []string{"rni"}})); got != "c2" {
		t.Fatalf("rename not applied: %q", got)
	}
	sid, err = s.DeleteService(ctx, "appB", "c2")
	if err != nil {
		t.Fatal(err)
	}
	cache.WaitFor(ctx, sid, 2*time.Second)
	if _, ok := cache.Get("c2"); ok || cache.Len() != 1 {
		t.Fatalf("removal not applied: len %d", cache.Len())
	}
	cancel()
	<-done
}

// A Redis outage makes the cache stale (readers fall back to the store,
// which answers ErrUnavailable), and it recovers by itself after a restart.
func TestServiceCacheStaleAndRecovers(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	c := r.Client(t)
	s, _ := store.New(store.Options{Client: c, EncryptionKey: make([]byte, 32)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := store.NewServiceCache(s, store.CacheOptions{MaxStaleness: 300 * time.Millisecond})
	go cache.Run(ctx)
	sid := mustCreate(t, s, svc("r1", "a", "n", "", 0))
	if !cache.WaitFor(ctx, sid, 2*time.Second) {
		t.Fatal("no catch-up")
	}
	r.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for cache.Fresh() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if cache.Fresh() {
		t.Fatal("cache still fresh with Redis down")
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	var sid2 string
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		if _, id, err := s.CreateService(ctx, svc("r2", "a", "n", "", 0)); err == nil {
			sid2 = id
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sid2 == "" || !cache.WaitFor(ctx, sid2, 5*time.Second) {
		t.Fatal("cache did not recover after the restart")
	}
	if got := names(cache.Select(store.Filter{})); got != "r1,r2" {
		t.Fatalf("after restart: %q (AOF should have kept r1)", got)
	}
}
