package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
)

func TestMeshPeers(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()

	if got, err := s.MeshPeers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	a := store.MeshPeer{ID: "12D3KooWA", Node: "node-a", Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}, Networks: []string{"10.0.0.0/24"}}
	b := store.MeshPeer{ID: "12D3KooWB", Node: "relay", Addrs: []string{"/ip4/10.0.0.2/tcp/4001"}, Relay: true}
	short := store.MeshPeer{ID: "12D3KooWC", Addrs: []string{"/ip4/10.0.0.3/tcp/4001"}}
	for _, p := range []store.MeshPeer{b, a} {
		if err := s.PutMeshPeer(ctx, p, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutMeshPeer(ctx, short, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got, err := s.MeshPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != a.ID || got[1].ID != b.ID || got[2].ID != short.ID {
		t.Fatalf("peers = %+v", got)
	}
	if !got[1].Relay || got[0].Networks[0] != "10.0.0.0/24" || got[0].Node != "node-a" || got[0].Expires.Before(time.Now().Add(50*time.Second)) {
		t.Fatalf("record not kept as put: %+v", got)
	}

	// The short record lapses; the others stay.
	time.Sleep(120 * time.Millisecond)
	got, err = s.MeshPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("after the short TTL: %+v", got)
	}

	// A refresh replaces the record.
	a.Addrs = append(a.Addrs, "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWB/p2p-circuit")
	if err := s.PutMeshPeer(ctx, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeshPeer(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeshPeer(ctx, "never-there"); err != nil {
		t.Fatalf("deleting an absent peer: %v", err)
	}
	got, err = s.MeshPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != a.ID || len(got[0].Addrs) != 2 {
		t.Fatalf("after refresh and delete: %+v", got)
	}
}

func TestMeshPeerBadInput(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		p   store.MeshPeer
		ttl time.Duration
	}{
		"empty id": {store.MeshPeer{}, time.Minute},
		"colon":    {store.MeshPeer{ID: "a:b"}, time.Minute},
		"no ttl":   {store.MeshPeer{ID: "a"}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if err := s.PutMeshPeer(ctx, tc.p, tc.ttl); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if err := s.DeleteMeshPeer(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("delete empty id: %v", err)
	}
}

func TestMeshPeersRedisDown(t *testing.T) {
	s, c, _ := newStore(t)
	_ = c.Close() // the store's client is closed: every call fails
	ctx := context.Background()
	if err := s.PutMeshPeer(ctx, store.MeshPeer{ID: "a"}, time.Minute); err == nil {
		t.Fatal("put on a closed client succeeded")
	}
	if _, err := s.MeshPeers(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("list on a closed client: %v", err)
	}
}
