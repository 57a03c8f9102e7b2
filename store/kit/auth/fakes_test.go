package auth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/auth"
)

// fakeKeys is a KeySource whose JWKS and error the test sets, counting calls.
type fakeKeys struct {
	mu    sync.Mutex
	jwks  []byte
	err   error
	calls int
}

var _ auth.KeySource = (*fakeKeys)(nil)

func (f *fakeKeys) JWKS(context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return f.jwks, nil
}

func (f *fakeKeys) set(jwks []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jwks, f.err = jwks, err
}

func (f *fakeKeys) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeClock is a settable clock for VerifierOptions.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newKey returns a fresh signing key, going through the PEM path.
func newKey(tb testing.TB) auth.SigningKey {
	tb.Helper()
	p, err := auth.GenerateSigningKeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := auth.ParseSigningKeys(p)
	if err != nil {
		tb.Fatal(err)
	}
	return keys[0]
}

func newSigner(tb testing.TB, opts auth.SignerOptions, keys ...auth.SigningKey) *auth.Signer {
	tb.Helper()
	s, err := auth.NewSigner(keys, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func jwks(tb testing.TB, keys ...auth.SigningKey) []byte {
	tb.Helper()
	pub := make([]auth.PublicKey, len(keys))
	for i, k := range keys {
		pub[i] = k.Public()
	}
	b, err := auth.MarshalJWKS(pub...)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func issue(tb testing.TB, s *auth.Signer, sub string, now time.Time) string {
	tb.Helper()
	tok, _, err := s.Issue(sub, now)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
