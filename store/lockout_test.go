package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/store"
)

// lockEnv is a store with a settable clock and one app instance "app" with
// the AK "AKL".
type lockEnv struct {
	s      *store.Store
	c      *redis.Client
	prefix string
	mu     sync.Mutex
	now    time.Time
}

func newLockEnv(t *testing.T) *lockEnv {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e := &lockEnv{c: srv.Client(t), prefix: srv.Prefix(), now: time.UnixMilli(1_700_000_000_000)}
	s, err := store.New(store.Options{Client: e.c, Prefix: e.prefix, EncryptionKey: key, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	if _, err := s.PutAppConf(context.Background(), store.AppConf{AppInstanceID: "app", AccessKeyID: "AKL", SecretKey: []byte("secret-of-app")}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *lockEnv) clock() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }

func (e *lockEnv) advance(d time.Duration) { e.mu.Lock(); e.now = e.now.Add(d); e.mu.Unlock() }

// keys lists the keys under the env's prefix (a test may scan).
func (e *lockEnv) keys(t *testing.T) []string {
	t.Helper()
	ks, err := e.c.Keys(context.Background(), e.prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func (e *lockEnv) admit(t *testing.T, source string) store.Admission {
	t.Helper()
	a, err := e.s.AdmitTokenRequest(context.Background(), "AKL", source)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (e *lockEnv) fail(t *testing.T, source string) store.AuthFailure {
	t.Helper()
	f, err := e.s.RecordAuthFailure(context.Background(), "AKL", source)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestUnknownAKNoState: an unknown AK is ErrNotFound to both steps and
// leaves no state, however often it is tried.
func TestUnknownAKNoState(t *testing.T) {
	ctx := context.Background()
	e := newLockEnv(t)
	before := len(e.keys(t))
	for range 10 {
		if _, err := e.s.AdmitTokenRequest(ctx, "GHOST", "192.0.2.7"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("admit unknown AK: %v", err)
		}
		if _, err := e.s.RecordAuthFailure(ctx, "GHOST", "192.0.2.7"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("failure of an unknown AK: %v", err)
		}
	}
	if after := e.keys(t); len(after) != before {
		t.Fatalf("unknown AK created state: %d keys before, now %v", before, after)
	}
}

// TestConcurrentFailures: of 40 concurrent bad signatures from one source
// exactly MaxFailures are counted, the last of them locking the source;
// the rest are refused as locked. Another source is admitted all the same.
func TestConcurrentFailures(t *testing.T) {
	e := newLockEnv(t)
	var counted, refused, locks atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 40 {
		wg.Go(func() {
			<-start
			f, err := e.s.RecordAuthFailure(context.Background(), "AKL", "192.0.2.7")
			switch {
			case err != nil:
				t.Error(err)
			case f.Refused:
				refused.Add(1)
			default:
				counted.Add(1)
				if f.Locks {
					locks.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if counted.Load() != store.MaxFailures || refused.Load() != 40-store.MaxFailures || locks.Load() != 1 {
		t.Fatalf("counted %d, refused %d, locking %d; want %d, %d, 1", counted.Load(), refused.Load(), locks.Load(), store.MaxFailures, 40-store.MaxFailures)
	}
	if a := e.admit(t, "192.0.2.7"); a.LockedFor != store.LockDuration || a.SecretKey != nil {
		t.Fatalf("locked source admitted: %+v", a)
	}
	if a := e.admit(t, "192.0.2.8"); a.LockedFor != 0 || a.AppInstanceID != "app" || string(a.SecretKey) != "secret-of-app" {
		t.Fatalf("another source: %+v", a)
	}
}

// TestLockWindow: failures older than the window do not count; MaxFailures
// within it lock the source for LockDuration, after which it starts afresh.
func TestLockWindow(t *testing.T) {
	e := newLockEnv(t)
	for range store.MaxFailures - 1 {
		if f := e.fail(t, "192.0.2.7"); f != (store.AuthFailure{}) {
			t.Fatalf("early failure: %+v", f)
		}
		e.advance(time.Second)
	}
	e.advance(store.FailureWindow)
	for i := range store.MaxFailures {
		f := e.fail(t, "192.0.2.7")
		if f.Refused || f.Locks != (i == store.MaxFailures-1) {
			t.Fatalf("failure %d of a new window: %+v", i+1, f)
		}
	}
	if f := e.fail(t, "192.0.2.7"); !f.Refused || f.LockedFor != store.LockDuration {
		t.Fatalf("failure while locked: %+v", f)
	}
	e.advance(store.LockDuration - time.Second)
	if a := e.admit(t, "192.0.2.7"); a.LockedFor != time.Second {
		t.Fatalf("near the end: locked for %v", a.LockedFor)
	}
	e.advance(time.Second)
	if a := e.admit(t, "192.0.2.7"); a.LockedFor != 0 {
		t.Fatalf("after the lock: %+v", a)
	}
	if f := e.fail(t, "192.0.2.7"); f != (store.AuthFailure{}) {
		t.Fatalf("first failure after the lock: %+v", f)
	}
}

// TestAcceptSignature: a good signature clears its source's failures; the
// same signature again is ErrConflict (a replay) and counts as no failure;
// from a locked source it is refused and not used up; a used signature is
// forgotten after its ttl.
func TestAcceptSignature(t *testing.T) {
	ctx := context.Background()
	e := newLockEnv(t)
	e.fail(t, "192.0.2.7")
	e.fail(t, "192.0.2.7")
	if locked, err := e.s.AcceptSignature(ctx, "AKL", "192.0.2.7", "sig-1", time.Minute); err != nil || locked != 0 {
		t.Fatalf("good signature: locked %v, %v", locked, err)
	}
	if l, err := e.s.Lockout(ctx, "app"); err != nil || len(l.Sources) != 0 {
		t.Fatalf("after a good signature: %+v %v", l, err)
	}
	if _, err := e.s.AcceptSignature(ctx, "AKL", "192.0.2.8", "sig-1", time.Minute); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replayed signature: %v", err)
	}
	if l, err := e.s.Lockout(ctx, "app"); err != nil || len(l.Sources) != 0 {
		t.Fatalf("a replay counted: %+v %v", l, err)
	}
	ttl, err := e.c.PTTL(ctx, e.prefix+":sig:AKL:sig-1").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("used signature kept for %v (%v), want at most a minute", ttl, err)
	}

	for range store.MaxFailures {
		e.fail(t, "192.0.2.7")
	}
	if locked, err := e.s.AcceptSignature(ctx, "AKL", "192.0.2.7", "sig-2", time.Minute); err != nil || locked != store.LockDuration {
		t.Fatalf("good signature from a locked source: locked %v, %v", locked, err)
	}
	if locked, err := e.s.AcceptSignature(ctx, "AKL", "192.0.2.9", "sig-2", time.Minute); err != nil || locked != 0 {
		t.Fatalf("the signature refused from a locked source was used up: locked %v, %v", locked, err)
	}
}

// TestLockoutView: the admin's view lists the sources, locked ones first;
// clearing unlocks them all; an app without configuration is ErrNotFound.
func TestLockoutView(t *testing.T) {
	ctx := context.Background()
	e := newLockEnv(t)
	for range store.MaxFailures {
		e.fail(t, "2001:db8:1:2::/64")
	}
	e.fail(t, "192.0.2.1")
	e.advance(time.Minute)
	l, err := e.s.Lockout(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SourceLockout{
		{Source: "2001:db8:1:2::/64", Failures: store.MaxFailures, WindowStart: time.UnixMilli(1_700_000_000_000), LockedFor: store.LockDuration - time.Minute},
		{Source: "192.0.2.1", Failures: 1, WindowStart: time.UnixMilli(1_700_000_000_000)},
	}
	if l.AccessKeyID != "AKL" || len(l.Sources) != 2 || l.Sources[0] != want[0] || l.Sources[1] != want[1] {
		t.Fatalf("lockout = %+v, want %+v", l, want)
	}
	cleared, err := e.s.ClearLockout(ctx, "app")
	if err != nil || len(cleared.Sources) != 2 {
		t.Fatalf("clear: %+v %v", cleared, err)
	}
	if a := e.admit(t, "2001:db8:1:2::/64"); a.LockedFor != 0 {
		t.Fatalf("after clearing: %+v", a)
	}
	if l, err := e.s.Lockout(ctx, "app"); err != nil || len(l.Sources) != 0 {
		t.Fatalf("after clearing: %+v %v", l, err)
	}
	if _, err := e.s.Lockout(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lockout of an unknown app: %v", err)
	}
	if _, err := e.s.ClearLockout(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("clear of an unknown app: %v", err)
	}
}
