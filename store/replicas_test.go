package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// With min_replicas=1 against a real primary and replica (under three
// Sentinels): every kind of write (a script, a plain command, a pipeline, a
// MULTI/EXEC) is acknowledged only once the replica has it; with the
// replica paused (SIGSTOP) each fails with ErrReplicas, an ErrUnavailable,
// within the wait, while reads (commands and the read-only scripts) still
// answer; when it resumes, writes succeed again. Without min_replicas the
// same writes do not wait.
func TestMinReplicas(t *testing.T) {
	ha := testenv.NewSentinel(t, testenv.SentinelOptions{})
	ctx := context.Background()
	primary, err := ha.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replica := ha.Data[1]
	key := make([]byte, 32)
	open := func(url string) *store.Store {
		st, closeStore, err := store.Open(url, store.Options{EncryptionKey: key, Prefix: "ha"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = closeStore() })
		return st
	}
	guarded := open(ha.URL("min_replicas=1&min_replicas_timeout=300ms"))
	plain := open(ha.URL(""))
	_ = primary

	writes := []struct {
		name string
		do   func(s *store.Store, n string) error
	}{
		{"script", func(s *store.Store, n string) error {
			_, _, err := s.CreateService(ctx, svc("svc-"+n, "app-1", "name", "", 0))
			return err
		}},
		{"command", func(s *store.Store, n string) error { return s.MarkDone(ctx, "done-"+n, time.Minute) }},
		{"pipeline", func(s *store.Store, n string) error {
			_, err := s.AllocateMany(ctx, "upf", 100, "a-"+n, "b-"+n)
			return err
		}},
		{"transaction", func(s *store.Store, n string) error {
			_, err := s.PutHost(ctx, store.Host{Address: "host-" + n, Kubeconfig: []byte("k")})
			return err
		}},
		{"sync", func(s *store.Store, n string) error { return s.Sync(ctx) }},
	}
	reads := func(s *store.Store) error {
		if _, err := s.GetService(ctx, "svc-1"); err != nil {
			return err
		}
		if _, err := s.Revocations(ctx); err != nil {
			return err
		}
		if _, err := s.CredentialByAK(ctx, "no-such-ak"); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		_, err := s.ReadChanges(ctx, "0", 10, 0)
		return err
	}

	for _, w := range writes {
		if err := w.do(guarded, "1"); err != nil {
			t.Fatalf("%s with the replica up: %v", w.name, err)
		}
	}
	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		start := time.Now()
		err := w.do(guarded, "2")
		if !errors.Is(err, store.ErrReplicas) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the replica paused: %v, want ErrReplicas", w.name, err)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
			t.Errorf("%s with the replica paused failed after %s, want the 300ms wait", w.name, d)
		}
		if err := w.do(plain, "3"); err != nil {
			t.Errorf("%s without min_replicas, the replica paused: %v", w.name, err)
		}
	}
	start := time.Now()
	if err := reads(guarded); err != nil {
		t.Errorf("reads with the replica paused: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("reads with the replica paused took %s: they waited for it", d)
	}
	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if err := w.do(guarded, "4"); err != nil {
			t.Errorf("%s after the replica resumed: %v", w.name, err)
		}
	}
}
