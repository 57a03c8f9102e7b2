package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
)

// TestRevocationGenerations: deleting an app's credentials, giving it
// another AK, and purging it each revoke its tokens: the revocation's
// generation is above every credential read before it and at most that of
// every credential read after it, it reaches readers of the change stream,
// and a snapshot holds it. Re-putting the same AK revokes nothing.
func TestRevocationGenerations(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	put := func(app, ak string) {
		t.Helper()
		if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: app, AccessKeyID: ak, SecretKey: []byte("secret-" + ak)}); err != nil {
			t.Fatal(err)
		}
	}
	gen := func(ak string) int64 {
		t.Helper()
		c, err := s.CredentialByAK(ctx, ak)
		if err != nil {
			t.Fatal(err)
		}
		return c.Generation
	}
	after, err := s.LastChangeID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// read returns the revocations appended since the last read.
	read := func() []store.Revocation {
		t.Helper()
		b, err := s.ReadRevocations(ctx, after, 0)
		if err != nil {
			t.Fatal(err)
		}
		after = b.Last
		return b.Revocations
	}
	revokes := func(step string, app string, before int64, fn func()) int64 {
		t.Helper()
		fn()
		rs := read()
		if len(rs) == 0 {
			t.Fatalf("%s: no revocation on the stream", step)
		}
		r := rs[len(rs)-1]
		if r.AppInstanceID != app || r.Generation <= before {
			t.Fatalf("%s: revocation %+v, want app %s above generation %d", step, r, app, before)
		}
		if left := time.Until(r.Until); left < store.RevocationRetention-time.Minute || left > store.RevocationRetention+time.Minute {
			t.Errorf("%s: remembered for %v, want %v", step, left, store.RevocationRetention)
		}
		return r.Generation
	}

	put("app", "AK1")
	put("other", "AK9")
	g0 := gen("AK1")
	put("app", "AK1")
	if rs := read(); len(rs) != 0 {
		t.Fatalf("re-putting the same AK revoked: %+v", rs)
	}
	g1 := revokes("AK rotation", "app", g0, func() { put("app", "AK2") })
	if g := gen("AK2"); g < g1 {
		t.Fatalf("credential after the rotation has generation %d, below the revocation's %d", g, g1)
	}
	g2 := revokes("delete", "app", gen("AK2"), func() {
		if err := s.DeleteAppConf(ctx, "app"); err != nil {
			t.Fatal(err)
		}
	})
	put("app", "AK1")
	if g := gen("AK1"); g < g2 {
		t.Fatalf("credential after re-provisioning has generation %d, below the revocation's %d", g, g2)
	}
	g3 := revokes("purge", "app", gen("AK1"), func() {
		if _, err := s.PurgeApp(ctx, "app"); err != nil {
			t.Fatal(err)
		}
	})
	if g := gen("AK9"); g < g3 {
		t.Fatalf("another app's credential: generation %d", g)
	}

	snap, err := s.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.After != after {
		t.Errorf("snapshot after %s, want the last entry %s", snap.After, after)
	}
	if len(snap.Revocations) != 1 || snap.Revocations[0].AppInstanceID != "app" || snap.Revocations[0].Generation != g3 {
		t.Fatalf("snapshot %+v, want app at generation %d", snap.Revocations, g3)
	}
}

// TestReadRevocationsBlocks: a blocking read returns as soon as a
// revocation is appended, and empty when nothing comes.
func TestReadRevocationsBlocks(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	if _, err := s.PutAppConf(ctx, store.AppConf{AppInstanceID: "app", AccessKeyID: "AK1", SecretKey: []byte("secret")}); err != nil {
		t.Fatal(err)
	}
	after, err := s.LastChangeID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.ReadRevocations(ctx, after, 50*time.Millisecond)
	if err != nil || len(b.Revocations) != 0 || b.Last != after || b.More {
		t.Fatalf("empty read: %+v %v", b, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = s.DeleteAppConf(ctx, "app")
	}()
	b, err = s.ReadRevocations(ctx, after, 10*time.Second)
	if err != nil || len(b.Revocations) != 1 || b.Revocations[0].AppInstanceID != "app" {
		t.Fatalf("blocking read: %+v %v", b, err)
	}
}
