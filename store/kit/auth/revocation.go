package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/kmep-io/kmep/store"
)

// DefaultRevocationMaxStaleness bounds how late a revocation takes effect on
// a Verifier that follows revocations.
const DefaultRevocationMaxStaleness = time.Second

// RevocationSource is where a Verifier learns which tokens were revoked: a
// snapshot of the revocations still in force with the change-stream
// position it is current to, then the revocations of the stream's later
// entries. *store.Store implements it: deleting an app instance's
// credentials, giving it another AK and terminating it revoke its tokens in
// the same atomic step, and announce it on the change stream that every
// instance of every function can read.
type RevocationSource interface {
	Revocations(ctx context.Context) (store.RevocationSnapshot, error)
	ReadRevocations(ctx context.Context, after string, block time.Duration) (store.RevocationBatch, error)
}

var _ RevocationSource = (*store.Store)(nil)

// revoked is what the Verifier knows of one app instance's revocation.
type revoked struct {
	gen   int64
	until time.Time
}

// revocations is a Verifier's view of the revoked tokens. The map is
// replaced, never modified, so that check reads it without a lock.
type revocations struct {
	src   RevocationSource
	stale time.Duration
	block time.Duration
	log   *slog.Logger
	// base anchors synced to the monotonic clock.
	base time.Time
	// synced is when (ns after base, plus one) the last read began that
	// left nothing unread behind it: every revocation made before then is
	// in byApp. Zero until the first snapshot.
	synced atomic.Int64
	byApp  atomic.Pointer[map[string]revoked]
}

func (r *revocations) init(opts VerifierOptions) {
	r.src = opts.Revocations
	r.stale = opts.RevocationMaxStaleness
	if r.stale <= 0 {
		r.stale = DefaultRevocationMaxStaleness
	}
	r.block = max(r.stale/4, time.Millisecond)
	r.log = opts.Log
	if r.log == nil {
		r.log = slog.Default()
	}
	r.base = time.Now()
	r.byApp.Store(&map[string]revoked{})
}

// elapsed is now on the monotonic clock, as stored in synced.
func (r *revocations) elapsed() int64 { return int64(time.Since(r.base)) + 1 }

// check refuses cl if its app instance's tokens were revoked after it was
// issued, or if that cannot be told because the revocations were not
// followed lately.
func (r *revocations) check(cl Claims) error {
	if r.src == nil {
		return nil
	}
	synced, err := r.loaded()
	if err != nil {
		return err
	}
	if age := time.Duration(r.elapsed() - synced); age >= r.stale {
		return fmt.Errorf("%w: last followed %v ago", ErrRevocationsUnavailable, age.Round(time.Millisecond))
	}
	if rv, ok := (*r.byApp.Load())[cl.Subject]; ok && cl.Generation < rv.gen {
		return fmt.Errorf("%w: tokens of %s below generation %d", ErrTokenRevoked, cl.Subject, rv.gen)
	}
	return nil
}

// Ready returns nil once the Verifier can accept a token: without a
// RevocationSource at once, with one once Run has loaded the revocations
// (until then every token is refused with ErrRevocationsUnavailable). A
// function passes it as server.Options.Ready, so that no request reaches
// it before.
func (v *Verifier) Ready() error {
	if v.rev.src == nil {
		return nil
	}
	_, err := v.rev.loaded()
	return err
}

// loaded returns synced, refusing while no snapshot of the revocations
// has been loaded (synced is zero).
func (r *revocations) loaded() (int64, error) {
	synced := r.synced.Load()
	if synced == 0 {
		return 0, fmt.Errorf("%w: not loaded yet", ErrRevocationsUnavailable)
	}
	return synced, nil
}

// Run follows the revocations of VerifierOptions.Revocations until ctx ends:
// a snapshot, then the change stream, read with a blocking wait of a
// quarter of RevocationMaxStaleness. After a failure it logs it, waits
// (backing off up to 2 s) and starts again with a snapshot; meanwhile, once
// RevocationMaxStaleness has passed, tokens are refused with
// ErrRevocationsUnavailable. Without a RevocationSource it returns at once.
// It always returns nil.
func (v *Verifier) Run(ctx context.Context) error {
	r := &v.rev
	if r.src == nil {
		return nil
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			break
		}
		r.log.Warn("follow token revocations; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return nil
}

func (r *revocations) follow(ctx context.Context) error {
	start := r.elapsed()
	snap, err := r.src.Revocations(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]revoked, len(snap.Revocations))
	merge(m, snap.Revocations, time.Now())
	r.byApp.Store(&m)
	r.synced.Store(start)
	after := snap.After
	for {
		start := r.elapsed()
		b, err := r.src.ReadRevocations(ctx, after, r.block)
		if err != nil {
			return err
		}
		if len(b.Revocations) > 0 {
			now := time.Now()
			old := *r.byApp.Load()
			m := make(map[string]revoked, len(old)+len(b.Revocations))
			for app, rv := range old {
				if now.Before(rv.until) {
					m[app] = rv
				}
			}
			merge(m, b.Revocations, now)
			r.byApp.Store(&m)
		}
		after = b.Last
		if !b.More {
			r.synced.Store(start)
		}
	}
}

// merge adds rs to m, keeping the highest generation of each app instance,
// and leaves out those already forgotten.
func merge(m map[string]revoked, rs []store.Revocation, now time.Time) {
	for _, x := range rs {
		if !now.Before(x.Until) {
			continue
		}
		if cur, ok := m[x.AppInstanceID]; !ok || x.Generation > cur.gen {
			m[x.AppInstanceID] = revoked{gen: x.Generation, until: x.Until}
		}
	}
}
