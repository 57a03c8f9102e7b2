package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
)

// fakeRevocations is a RevocationSource whose snapshot, stream and errors
// the test sets; ReadRevocations blocks until the test pushes a batch or the
// block time passes.
type fakeRevocations struct {
	mu   sync.Mutex
	snap store.RevocationSnapshot
	err  error
	next chan []store.Revocation
}

var _ auth.RevocationSource = (*fakeRevocations)(nil)

func newFakeRevocations(rs ...store.Revocation) *fakeRevocations {
	return &fakeRevocations{snap: store.RevocationSnapshot{After: "0-0", Revocations: rs}, next: make(chan []store.Revocation)}
}

func (f *fakeRevocations) Revocations(context.Context) (store.RevocationSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap, f.err
}

func (f *fakeRevocations) ReadRevocations(ctx context.Context, after string, block time.Duration) (store.RevocationBatch, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return store.RevocationBatch{Last: after}, err
	}
	t := time.NewTimer(block)
	defer t.Stop()
	select {
	case rs := <-f.next:
		return store.RevocationBatch{Last: after, Revocations: rs}, nil
	case <-t.C:
		return store.RevocationBatch{Last: after}, nil
	case <-ctx.Done():
		return store.RevocationBatch{Last: after}, ctx.Err()
	}
}

func (f *fakeRevocations) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// push hands rs to the follower (it applies them right after).
func (f *fakeRevocations) push(rs ...store.Revocation) { f.next <- rs }

func revocation(app string, gen int64) store.Revocation {
	return store.Revocation{AppInstanceID: app, Generation: gen, Until: time.Now().Add(time.Hour)}
}

// run starts v.Run until the test ends.
func run(t *testing.T, v *auth.Verifier) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = v.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually polls fn until it returns nil; the bound is far beyond what the
// code under test needs.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func isErr(target error) func(error) error {
	return func(err error) error {
		if !errors.Is(err, target) {
			return errors.New("got " + errString(err) + ", want " + target.Error())
		}
		return nil
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

type revocationEnv struct {
	v      *auth.Verifier
	src    *fakeRevocations
	signer *auth.Signer
	clock  *fakeClock
}

func newRevocationEnv(t *testing.T, src *fakeRevocations, stale time.Duration) *revocationEnv {
	t.Helper()
	k := newKey(t)
	clk := newClock()
	v := auth.NewVerifier(auth.StaticKeys(jwks(t, k)), auth.VerifierOptions{Now: clk.Now, Revocations: src, RevocationMaxStaleness: stale})
	return &revocationEnv{v: v, src: src, signer: newSigner(t, auth.SignerOptions{}, k), clock: clk}
}

func (e *revocationEnv) token(t *testing.T, app string, gen int64) string {
	t.Helper()
	tok, _, err := e.signer.IssueGeneration(app, gen, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *revocationEnv) verify(tok string) error {
	_, err := e.v.Verify(context.Background(), tok)
	return err
}

// TestRevocations: tokens of a generation below their app's revocation are
// refused, from the snapshot and from the stream, cached or not; later
// generations and other apps' tokens are not; forgotten revocations no
// longer apply.
func TestRevocations(t *testing.T) {
	src := newFakeRevocations(revocation("app-a", 5),
		store.Revocation{AppInstanceID: "app-old", Generation: 9, Until: time.Now().Add(-time.Second)})
	e := newRevocationEnv(t, src, 10*time.Second) // staleness is not what this test is about
	before, after, other, old := e.token(t, "app-a", 4), e.token(t, "app-a", 5), e.token(t, "app-b", 0), e.token(t, "app-old", 1)
	if err := e.verify(before); !errors.Is(err, auth.ErrRevocationsUnavailable) {
		t.Fatalf("before Run: %v, want ErrRevocationsUnavailable", err)
	}
	if err := e.v.Ready(); !errors.Is(err, auth.ErrRevocationsUnavailable) {
		t.Fatalf("Ready before Run: %v, want ErrRevocationsUnavailable", err)
	}
	run(t, e.v)
	eventually(t, "revoked by the snapshot", func() error { return isErr(auth.ErrTokenRevoked)(e.verify(before)) })
	if err := e.v.Ready(); err != nil {
		t.Fatalf("Ready once the snapshot is in: %v", err)
	}
	for name, tok := range map[string]string{"a later generation": after, "another app": other, "a forgotten revocation": old} {
		if cl, err := e.v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s: %+v, %v", name, cl, err)
		}
	}
	cl, err := e.v.Verify(context.Background(), other)
	if err != nil || cl.Generation != 0 || cl.Subject != "app-b" {
		t.Fatalf("claims %+v, %v", cl, err)
	}

	// From the stream: the cached token of app-b is refused, and the
	// highest generation wins whatever the order.
	src.push(revocation("app-b", 3), revocation("app-a", 7), revocation("app-a", 6))
	eventually(t, "cached token revoked by the stream", func() error { return isErr(auth.ErrTokenRevoked)(e.verify(other)) })
	if err := e.verify(after); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Errorf("generation 5 after app-a's revocation at 7 (then 6): %v", err)
	}
	if err := e.verify(e.token(t, "app-a", 7)); err != nil {
		t.Errorf("generation 7: %v", err)
	}
	if s := e.v.Stats(); s.SignatureChecks == 0 || s.CachedTokens == 0 {
		t.Errorf("stats %+v: the tokens went through the cache", s)
	}
}

// TestRevocationsStale: once the revocations have not been followed for
// RevocationMaxStaleness, every token is refused with
// ErrRevocationsUnavailable (a 503 with Retry-After over HTTP), never
// accepted unchecked; when the source answers again, tokens verify again.
func TestRevocationsStale(t *testing.T) {
	src := newFakeRevocations()
	e := newRevocationEnv(t, src, 100*time.Millisecond)
	tok := e.token(t, "app-a", 0)
	run(t, e.v)
	eventually(t, "verifies", func() error { return e.verify(tok) })

	src.setErr(errors.New("redis: connection refused"))
	eventually(t, "stale", func() error { return isErr(auth.ErrRevocationsUnavailable)(e.verify(tok)) })
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	_, err := e.v.App(req)
	pe := problem.From(err)
	if pe.Status != http.StatusServiceUnavailable || pe.RetryAfter != 1 {
		t.Errorf("App while stale: %+v", pe)
	}

	src.setErr(nil)
	eventually(t, "verifies again", func() error { return e.verify(tok) })
}

// TestRevokedAnswer: a revoked token is a 401 saying so, with the
// invalid_token challenge.
func TestRevokedAnswer(t *testing.T) {
	e := newRevocationEnv(t, newFakeRevocations(revocation("app-a", 1)), 10*time.Second)
	run(t, e.v)
	tok := e.token(t, "app-a", 0)
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	eventually(t, "revoked", func() error {
		_, err := e.v.App(req)
		return isErr(auth.ErrTokenRevoked)(err)
	})
	_, err := e.v.App(req)
	pe := problem.From(err)
	if pe.Status != http.StatusUnauthorized || pe.Detail != "token revoked" || pe.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("revoked token: %+v", pe)
	}
}

// TestNoRevocationSource: without a RevocationSource Run returns at once and
// tokens are never revoked.
func TestNoRevocationSource(t *testing.T) {
	k := newKey(t)
	clk := newClock()
	v := auth.NewVerifier(auth.StaticKeys(jwks(t, k)), auth.VerifierOptions{Now: clk.Now})
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready without revocations: %v", err)
	}
	if err := v.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, _, err := newSigner(t, auth.SignerOptions{}, k).IssueGeneration("app-a", 3, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cl, err := v.Verify(context.Background(), tok); err != nil || cl.Generation != 3 {
		t.Fatalf("%+v, %v", cl, err)
	}
}
