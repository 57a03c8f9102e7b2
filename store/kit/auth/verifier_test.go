package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kmep-io/kmep/store/kit/auth"
)

// newKeyPair returns a signing key and its raw private key, for tests that
// hand-craft tokens with the jwt library.
func newKeyPair(t *testing.T) (auth.SigningKey, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := auth.NewSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k, priv
}

// craft signs claims with method and key, setting kid unless it is empty.
func craft(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims are claims a default Verifier accepts at now.
func goodClaims(now time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Issuer:    "kmep",
		Audience:  jwt.ClaimStrings{"kmep-mp1"},
		Subject:   "app-1",
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        "jti-1",
	}
}

// tamperPayload replaces the token's payload with claims, keeping the
// header and signature.
func tamperPayload(t *testing.T, token string, claims jwt.RegisteredClaims) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// flipSignature changes the first character of the signature.
func flipSignature(token string) string {
	i := strings.LastIndexByte(token, '.') + 1
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

func TestVerifyRoundTrip(t *testing.T) {
	clock := newClock()
	k := newKey(t)
	s := newSigner(t, auth.SignerOptions{}, k)
	v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{Now: clock.Now})

	issued := clock.Now()
	tok := issue(t, s, "app-1", issued)
	for i := range 2 { // the second answer comes from the cache and must be the same
		got, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if got.Subject != "app-1" || got.KeyID != k.KeyID() || got.ID == "" ||
			!got.IssuedAt.Equal(issued) || !got.ExpiresAt.Equal(issued.Add(time.Hour)) {
			t.Fatalf("verify %d: claims = %+v", i, got)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	k, priv := newKeyPair(t)
	_, otherPriv := newKeyPair(t)
	other, _ := newKeyPair(t)
	s := newSigner(t, auth.SignerOptions{}, k)
	good := issue(t, s, "app-1", now)

	noSub := goodClaims(now)
	noSub.Subject = ""
	noExp := goodClaims(now)
	noExp.ExpiresAt = nil
	otherSub := goodClaims(now)
	otherSub.Subject = "app-2"

	tests := []struct {
		name  string
		token string
		want  error // nil: accepted
	}{
		{name: "valid", token: good},
		{name: "expired", token: issue(t, s, "app-1", now.Add(-2*time.Hour)), want: auth.ErrTokenExpired},
		{name: "expired just beyond leeway", token: issue(t, s, "app-1", now.Add(-time.Hour-30*time.Second)), want: auth.ErrTokenExpired},
		{name: "expired within leeway", token: issue(t, s, "app-1", now.Add(-time.Hour-29*time.Second))},
		{name: "not yet valid", token: issue(t, s, "app-1", now.Add(time.Hour)), want: auth.ErrTokenNotYetValid},
		{name: "not yet valid within leeway", token: issue(t, s, "app-1", now.Add(30*time.Second))},
		{name: "not yet valid beyond leeway", token: issue(t, s, "app-1", now.Add(31*time.Second)), want: auth.ErrTokenNotYetValid},
		{name: "wrong audience", token: issue(t, newSigner(t, auth.SignerOptions{Audience: "kmep-admin"}, k), "app-1", now), want: auth.ErrWrongAudience},
		{name: "wrong issuer", token: issue(t, newSigner(t, auth.SignerOptions{Issuer: "evil"}, k), "app-1", now), want: auth.ErrWrongIssuer},
		{name: "signed by an unknown key", token: issue(t, newSigner(t, auth.SignerOptions{}, other), "app-1", now), want: auth.ErrUnknownKey},
		{name: "known kid, signed by another key", token: craft(t, jwt.SigningMethodEdDSA, otherPriv, k.KeyID(), goodClaims(now)), want: auth.ErrInvalidSignature},
		{name: "tampered payload", token: tamperPayload(t, good, otherSub), want: auth.ErrInvalidSignature},
		{name: "tampered signature", token: flipSignature(good), want: auth.ErrInvalidSignature},
		{name: "alg none", token: craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, k.KeyID(), goodClaims(now)), want: auth.ErrInvalidSignature},
		{name: "HS256 keyed with the public key", token: craft(t, jwt.SigningMethodHS256, []byte(k.Public().Key), k.KeyID(), goodClaims(now)), want: auth.ErrInvalidSignature},
		{name: "no kid", token: craft(t, jwt.SigningMethodEdDSA, priv, "", goodClaims(now)), want: auth.ErrUnknownKey},
		{name: "empty sub", token: craft(t, jwt.SigningMethodEdDSA, priv, k.KeyID(), noSub), want: auth.ErrInvalidClaims},
		{name: "no exp", token: craft(t, jwt.SigningMethodEdDSA, priv, k.KeyID(), noExp), want: auth.ErrInvalidClaims},
		{name: "exp not a number", token: craft(t, jwt.SigningMethodEdDSA, priv, k.KeyID(),
			jwt.MapClaims{"iss": "kmep", "aud": "kmep-mp1", "sub": "app-1", "exp": "tomorrow"}), want: auth.ErrMalformedToken},
		{name: "empty", token: "", want: auth.ErrMalformedToken},
		{name: "not a JWT", token: "hello", want: auth.ErrMalformedToken},
		{name: "three garbage parts", token: "a.b.c", want: auth.ErrMalformedToken},
		{name: "too long", token: good + strings.Repeat("A", 5000), want: auth.ErrMalformedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{Now: func() time.Time { return now }})
			got, err := v.Verify(context.Background(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got.Subject != "app-1" {
					t.Fatalf("sub = %q", got.Subject)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrKeysUnavailable) {
				t.Fatalf("err = %v, want %v (an ErrInvalidToken)", err, tt.want)
			}
			if got != (auth.Claims{}) {
				t.Errorf("refused token returned claims %+v", got)
			}
			if n := v.Stats().CachedTokens; n != 0 {
				t.Errorf("a refused token left %d cache entries", n)
			}
		})
	}
}

func TestVerifyCustomIssuerAudience(t *testing.T) {
	k := newKey(t)
	opts := auth.SignerOptions{Issuer: "edge-7", Audience: "mp1-test"}
	s := newSigner(t, opts, k)
	v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{Issuer: "edge-7", Audience: "mp1-test"})
	if _, err := v.Verify(context.Background(), issue(t, s, "app-1", time.Now())); err != nil {
		t.Fatal(err)
	}
	def := newSigner(t, auth.SignerOptions{}, k)
	if _, err := v.Verify(context.Background(), issue(t, def, "app-1", time.Now())); !errors.Is(err, auth.ErrWrongIssuer) {
		t.Fatalf("default-issuer token: err = %v, want ErrWrongIssuer", err)
	}
}

func TestVerifyRotation(t *testing.T) {
	ctx := context.Background()

	t.Run("token of a non-active key verifies", func(t *testing.T) {
		a, b := newKey(t), newKey(t)
		active := newSigner(t, auth.SignerOptions{}, a, b)
		previous := newSigner(t, auth.SignerOptions{}, b)
		v := auth.NewVerifier(auth.StaticKeys(active.JWKS()), auth.VerifierOptions{})
		for _, tc := range []struct {
			s    *auth.Signer
			want string
		}{{active, a.KeyID()}, {previous, b.KeyID()}} {
			got, err := v.Verify(ctx, issue(t, tc.s, "app-1", time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			if got.KeyID != tc.want {
				t.Errorf("kid = %s, want %s", got.KeyID, tc.want)
			}
		}
	})

	t.Run("new key picked up on unknown kid after the min interval", func(t *testing.T) {
		clock := newClock()
		a, c := newKey(t), newKey(t)
		src := &fakeKeys{jwks: jwks(t, a)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		tokA := issue(t, newSigner(t, auth.SignerOptions{}, a), "app-1", clock.Now())
		tokC := issue(t, newSigner(t, auth.SignerOptions{}, c), "app-1", clock.Now())

		if _, err := v.Verify(ctx, tokA); err != nil {
			t.Fatal(err)
		}
		src.set(jwks(t, a, c), nil)
		if _, err := v.Verify(ctx, tokC); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("within the min interval: err = %v, want ErrUnknownKey", err)
		}
		if n := src.count(); n != 1 {
			t.Fatalf("within the min interval: %d loads, want 1", n)
		}
		clock.Advance(time.Second)
		if _, err := v.Verify(ctx, tokC); err != nil {
			t.Fatalf("after the min interval: %v", err)
		}
		if _, err := v.Verify(ctx, tokC); err != nil {
			t.Fatal(err)
		}
		if n := src.count(); n != 2 {
			t.Fatalf("%d loads, want 2", n)
		}
	})

	t.Run("unknown kids reload at most once per min interval", func(t *testing.T) {
		clock := newClock()
		a := newKey(t)
		src := &fakeKeys{jwks: jwks(t, a)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now, KeyRefreshMinInterval: 10 * time.Second})
		for i := range 30 {
			tok := issue(t, newSigner(t, auth.SignerOptions{}, newKey(t)), "app-1", clock.Now())
			if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrUnknownKey) {
				t.Fatalf("token %d: err = %v, want ErrUnknownKey", i, err)
			}
			clock.Advance(time.Second)
		}
		if n := src.count(); n != 3 {
			t.Fatalf("30 unknown kids over 30 s: %d loads, want 3", n)
		}
	})

	t.Run("removed key is refused after the reload an unknown kid triggers", func(t *testing.T) {
		clock := newClock()
		a, b, c := newKey(t), newKey(t), newKey(t)
		src := &fakeKeys{jwks: jwks(t, a, b)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		tokA := issue(t, newSigner(t, auth.SignerOptions{}, a), "app-1", clock.Now())
		tokB := issue(t, newSigner(t, auth.SignerOptions{}, b), "app-1", clock.Now())
		tokC := issue(t, newSigner(t, auth.SignerOptions{}, c), "app-1", clock.Now())
		for _, tok := range []string{tokA, tokB} {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		src.set(jwks(t, a), nil)
		// Removal takes effect at the next load, not before.
		if _, err := v.Verify(ctx, tokB); err != nil {
			t.Fatalf("before the reload: %v", err)
		}
		clock.Advance(time.Second)
		if _, err := v.Verify(ctx, tokC); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("tokC: err = %v, want ErrUnknownKey", err)
		}
		if n := src.count(); n != 2 {
			t.Fatalf("%d loads, want 2", n)
		}
		checks := v.Stats().SignatureChecks
		if _, err := v.Verify(ctx, tokB); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("cached token of the removed key: err = %v, want ErrUnknownKey", err)
		}
		if _, err := v.Verify(ctx, tokA); err != nil {
			t.Fatalf("token of the kept key: %v", err)
		}
		st := v.Stats()
		if st.SignatureChecks != checks {
			t.Errorf("the kept key's token was re-checked: %d signature checks, want %d", st.SignatureChecks, checks)
		}
		if st.CachedTokens != 1 {
			t.Errorf("%d cached tokens, want 1 (the removed key's purged)", st.CachedTokens)
		}
	})

	t.Run("removed key is refused after the periodic reload", func(t *testing.T) {
		clock := newClock()
		a, b := newKey(t), newKey(t)
		src := &fakeKeys{jwks: jwks(t, a, b)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		tokA := issue(t, newSigner(t, auth.SignerOptions{}, a), "app-1", clock.Now())
		tokB := issue(t, newSigner(t, auth.SignerOptions{}, b), "app-1", clock.Now())
		for _, tok := range []string{tokA, tokB} {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		src.set(jwks(t, a), nil)
		clock.Advance(auth.DefaultKeyRefreshInterval - time.Second)
		if _, err := v.Verify(ctx, tokB); err != nil {
			t.Fatalf("before the refresh interval: %v", err)
		}
		clock.Advance(time.Second)
		if _, err := v.Verify(ctx, tokA); err != nil {
			t.Fatal(err)
		}
		if n := src.count(); n != 2 {
			t.Fatalf("%d loads, want 2", n)
		}
		if _, err := v.Verify(ctx, tokB); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("removed key: err = %v, want ErrUnknownKey", err)
		}
	})

	t.Run("Refresh applies a removal at once", func(t *testing.T) {
		a, b := newKey(t), newKey(t)
		src := &fakeKeys{jwks: jwks(t, a, b)}
		v := auth.NewVerifier(src, auth.VerifierOptions{})
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tokB := issue(t, newSigner(t, auth.SignerOptions{}, b), "app-1", time.Now())
		if _, err := v.Verify(ctx, tokB); err != nil {
			t.Fatal(err)
		}
		src.set(jwks(t, a), nil)
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, tokB); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey", err)
		}
	})

	t.Run("new key material under a known kid purges its tokens", func(t *testing.T) {
		a, privA := newKeyPair(t)
		b, _ := newKeyPair(t)
		pub := func(k auth.SigningKey) []byte {
			raw, err := auth.MarshalJWKS(auth.PublicKey{KeyID: "k1", Key: k.Public().Key})
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
		src := &fakeKeys{jwks: pub(a)}
		v := auth.NewVerifier(src, auth.VerifierOptions{})
		tok := craft(t, jwt.SigningMethodEdDSA, privA, "k1", goodClaims(time.Now()))
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		src.set(pub(b), nil)
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidSignature) {
			t.Fatalf("err = %v, want ErrInvalidSignature", err)
		}
	})
}

func TestVerifyKeySourceErrors(t *testing.T) {
	ctx := context.Background()
	errDown := errors.New("redis: connection refused")

	// wantUnavailable fails unless err is a key-source error and not a token error.
	wantUnavailable := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, auth.ErrKeysUnavailable) || errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrKeysUnavailable and not ErrInvalidToken", err)
		}
	}

	t.Run("source down at first use, then back", func(t *testing.T) {
		clock := newClock()
		a := newKey(t)
		src := &fakeKeys{err: errDown}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		tok := issue(t, newSigner(t, auth.SignerOptions{}, a), "app-1", clock.Now())
		for range 3 {
			_, err := v.Verify(ctx, tok)
			wantUnavailable(t, err)
			if !errors.Is(err, errDown) {
				t.Errorf("err = %v, want the cause %v", err, errDown)
			}
		}
		if n := src.count(); n != 1 {
			t.Fatalf("%d loads within the min interval, want 1", n)
		}
		src.set(jwks(t, a), nil)
		clock.Advance(time.Second)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})

	t.Run("corrupt JWKS", func(t *testing.T) {
		a := newKey(t)
		v := auth.NewVerifier(auth.StaticKeys(`{"keys":[{"kty":"RSA"}]}`), auth.VerifierOptions{})
		_, err := v.Verify(ctx, issue(t, newSigner(t, auth.SignerOptions{}, a), "app-1", time.Now()))
		wantUnavailable(t, err)
		if !errors.Is(err, auth.ErrInvalidJWKS) {
			t.Errorf("err = %v, want the cause ErrInvalidJWKS", err)
		}
	})

	t.Run("nil source", func(t *testing.T) {
		v := auth.NewVerifier(nil, auth.VerifierOptions{})
		_, err := v.Verify(ctx, issue(t, newSigner(t, auth.SignerOptions{}, newKey(t)), "app-1", time.Now()))
		wantUnavailable(t, err)
	})

	t.Run("source down when an unknown kid needs a reload", func(t *testing.T) {
		clock := newClock()
		a, c := newKey(t), newKey(t)
		sa := newSigner(t, auth.SignerOptions{}, a)
		src := &fakeKeys{jwks: jwks(t, a)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		src.set(nil, errDown)
		clock.Advance(time.Second)
		_, err := v.Verify(ctx, issue(t, newSigner(t, auth.SignerOptions{}, c), "app-1", clock.Now()))
		wantUnavailable(t, err)
		// A token of a loaded key needs no load and still verifies.
		if _, err := v.Verify(ctx, issue(t, sa, "app-2", clock.Now())); err != nil {
			t.Fatalf("known key while the source is down: %v", err)
		}
	})

	t.Run("failed periodic reload keeps the loaded keys", func(t *testing.T) {
		clock := newClock()
		a := newKey(t)
		sa := newSigner(t, auth.SignerOptions{}, a)
		src := &fakeKeys{jwks: jwks(t, a)}
		v := auth.NewVerifier(src, auth.VerifierOptions{Now: clock.Now})
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		src.set(nil, errDown)
		clock.Advance(auth.DefaultKeyRefreshInterval)
		if _, err := v.Verify(ctx, issue(t, sa, "app-1", clock.Now())); err != nil {
			t.Fatalf("stale keys: %v", err)
		}
		if n := src.count(); n != 2 {
			t.Fatalf("%d loads, want 2 (one periodic attempt)", n)
		}
		wantUnavailable(t, v.Refresh(ctx))
		if _, err := v.Verify(ctx, issue(t, sa, "app-2", clock.Now())); err != nil {
			t.Fatalf("after a failed Refresh: %v", err)
		}
	})
}

func TestVerifyCache(t *testing.T) {
	ctx := context.Background()
	k := newKey(t)
	s := newSigner(t, auth.SignerOptions{}, k)
	keys := auth.StaticKeys(s.JWKS())

	tests := []struct {
		name       string
		cacheSize  int
		calls      int
		wantChecks uint64
		wantCached int
	}{
		{name: "hits skip the signature check", calls: 5, wantChecks: 1, wantCached: 1},
		{name: "no cache checks every time", cacheSize: -1, calls: 5, wantChecks: 5, wantCached: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewVerifier(keys, auth.VerifierOptions{CacheSize: tt.cacheSize})
			tok := issue(t, s, "app-1", time.Now())
			for range tt.calls {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
			st := v.Stats()
			if st.SignatureChecks != tt.wantChecks || st.CachedTokens != tt.wantCached {
				t.Fatalf("stats = %+v, want %d checks and %d cached", st, tt.wantChecks, tt.wantCached)
			}
		})
	}

	t.Run("a cached token still expires", func(t *testing.T) {
		clock := newClock()
		v := auth.NewVerifier(keys, auth.VerifierOptions{Now: clock.Now})
		tok := issue(t, s, "app-1", clock.Now())
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour + auth.DefaultLeeway - time.Second)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("within exp+leeway: %v", err)
		}
		clock.Advance(time.Second)
		if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("err = %v, want ErrTokenExpired", err)
		}
		st := v.Stats()
		if st.SignatureChecks != 1 {
			t.Errorf("%d signature checks, want 1: expiry must be decided from the cache", st.SignatureChecks)
		}
		if st.CachedTokens != 0 {
			t.Errorf("expired token still cached")
		}
	})

	t.Run("failures are not cached", func(t *testing.T) {
		v := auth.NewVerifier(keys, auth.VerifierOptions{})
		bad := flipSignature(issue(t, s, "app-1", time.Now()))
		for range 3 {
			if _, err := v.Verify(ctx, bad); !errors.Is(err, auth.ErrInvalidSignature) {
				t.Fatalf("err = %v, want ErrInvalidSignature", err)
			}
		}
		if st := v.Stats(); st.SignatureChecks != 3 || st.CachedTokens != 0 {
			t.Fatalf("stats = %+v, want 3 checks and nothing cached", st)
		}
	})

	for _, size := range []int{8, 1024} {
		t.Run(fmt.Sprintf("size %d is a bound", size), func(t *testing.T) {
			v := auth.NewVerifier(keys, auth.VerifierOptions{CacheSize: size})
			now := time.Now()
			var toks []string
			for i := range size + size/2 {
				toks = append(toks, issue(t, s, fmt.Sprintf("app-%d", i), now))
			}
			for _, tok := range toks {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatal(err)
				}
				if n := v.Stats().CachedTokens; n > size {
					t.Fatalf("%d cached tokens, bound %d", n, size)
				}
			}
			for i, tok := range toks[:min(len(toks), 64)] { // evicted tokens verify again
				got, err := v.Verify(ctx, tok)
				if err != nil || got.Subject != fmt.Sprintf("app-%d", i) {
					t.Fatalf("token %d: %+v, %v", i, got, err)
				}
			}
			if n := v.Stats().CachedTokens; n == 0 {
				t.Fatal("nothing cached")
			}
		})
	}
}

// TestVerifyConcurrent exercises the cache, eviction, reloads and purges
// together; run it with -race.
func TestVerifyConcurrent(t *testing.T) {
	ctx := context.Background()
	a, b := newKey(t), newKey(t)
	withB, withoutB := jwks(t, a, b), jwks(t, a)
	src := &fakeKeys{jwks: withB}
	v := auth.NewVerifier(src, auth.VerifierOptions{CacheSize: 8, KeyRefreshMinInterval: -1})
	now := time.Now()
	var toksA, toksB []string
	for i := range 12 {
		toksA = append(toksA, issue(t, newSigner(t, auth.SignerOptions{}, a), fmt.Sprintf("a-%d", i), now))
		toksB = append(toksB, issue(t, newSigner(t, auth.SignerOptions{}, b), fmt.Sprintf("b-%d", i), now))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() { // rotates b in and out
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				src.set(withoutB, nil)
			} else {
				src.set(withB, nil)
			}
			if err := v.Refresh(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Go(func() {
			for i := range 200 {
				j := (i + w) % 12
				if _, err := v.Verify(ctx, toksA[j]); err != nil {
					t.Errorf("a token: %v", err)
					return
				}
				if _, err := v.Verify(ctx, toksB[j]); err != nil && !errors.Is(err, auth.ErrUnknownKey) {
					t.Errorf("b token: %v", err)
					return
				}
			}
		})
	}
	workers.Wait()
	stop.Store(true)
	wg.Wait()
}

func BenchmarkVerifyCached(b *testing.B) {
	s := newSigner(b, auth.SignerOptions{}, newKey(b))
	v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{})
	tok := issue(b, s, "app-instance-0123456789", time.Now())
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

func BenchmarkVerifyUncached(b *testing.B) {
	s := newSigner(b, auth.SignerOptions{}, newKey(b))
	v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{CacheSize: -1})
	ctx := context.Background()
	now := time.Now()
	toks := make([]string, 256)
	for i := range toks {
		toks[i] = issue(b, s, fmt.Sprintf("app-instance-%010d", i), now)
	}
	if err := v.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := toks[next.Add(1)%uint64(len(toks))]
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}
