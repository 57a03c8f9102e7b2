package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier defaults.
const (
	// DefaultLeeway is the clock skew tolerated on exp and nbf.
	DefaultLeeway = 30 * time.Second
	// DefaultCacheSize is how many verified tokens a Verifier remembers.
	DefaultCacheSize = 100_000
	// DefaultKeyRefreshMinInterval is the shortest time between two reloads
	// of the keys.
	DefaultKeyRefreshMinInterval = time.Second
	// DefaultKeyRefreshInterval is the age from which loaded keys are
	// reloaded by the next Verify.
	DefaultKeyRefreshInterval = 5 * time.Minute
)

// maxTokenLen bounds the token text Verify accepts; kmep tokens are about
// 400 bytes.
const maxTokenLen = 4096

// Errors returned by Verify. Every token error wraps ErrInvalidToken (HTTP
// 401); ErrKeysUnavailable (HTTP 503) does not.
var (
	// ErrInvalidToken is wrapped by every reason to refuse a token.
	ErrInvalidToken = errors.New("invalid token")
	// ErrMalformedToken reports text that is not a JWT.
	ErrMalformedToken = fmt.Errorf("%w: malformed", ErrInvalidToken)
	// ErrInvalidSignature reports a signature that does not verify, or an
	// algorithm other than EdDSA.
	ErrInvalidSignature = fmt.Errorf("%w: invalid signature", ErrInvalidToken)
	// ErrUnknownKey reports a token without a kid, or whose kid is not among
	// the published keys even after a reload.
	ErrUnknownKey = fmt.Errorf("%w: unknown signing key", ErrInvalidToken)
	// ErrTokenExpired reports a token past its exp (plus leeway).
	ErrTokenExpired = fmt.Errorf("%w: expired", ErrInvalidToken)
	// ErrTokenNotYetValid reports a token before its nbf (minus leeway).
	ErrTokenNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	// ErrWrongAudience reports an aud that does not name this API.
	ErrWrongAudience = fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	// ErrWrongIssuer reports an iss other than the expected issuer.
	ErrWrongIssuer = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	// ErrInvalidClaims reports any other unacceptable claim (no exp, empty
	// sub, ...).
	ErrInvalidClaims = fmt.Errorf("%w: invalid claims", ErrInvalidToken)

	// ErrTokenRevoked reports a token issued to an app instance before its
	// tokens were revoked (its credentials were deleted or given another
	// AK, or it was terminated).
	ErrTokenRevoked = fmt.Errorf("%w: revoked", ErrInvalidToken)

	// ErrKeysUnavailable reports that the keys needed to verify a token
	// could not be loaded from the KeySource (or were not a valid JWKS).
	ErrKeysUnavailable = errors.New("token verification keys unavailable")
	// ErrRevocationsUnavailable reports that a Verifier with a
	// RevocationSource cannot tell whether a token was revoked: it has not
	// followed the revocations within its RevocationMaxStaleness.
	ErrRevocationsUnavailable = errors.New("token revocations unavailable")
)

// KeySource returns the JWKS document of the public keys tokens may be
// signed with. The store implements it over Redis, where the token function
// publishes its Signer's JWKS.
type KeySource interface {
	JWKS(ctx context.Context) ([]byte, error)
}

// StaticKeys is a KeySource holding a fixed JWKS document, for tests and for
// operators who configure the public keys in the environment.
type StaticKeys []byte

var _ KeySource = StaticKeys(nil)

// JWKS returns the document itself.
func (s StaticKeys) JWKS(context.Context) ([]byte, error) { return s, nil }

// Claims is what a verified token says about its bearer.
type Claims struct {
	// Subject is the sub claim: the appInstanceId the token was issued to.
	Subject string
	// ID is the jti claim; empty if the token has none.
	ID string
	// IssuedAt is the iat claim; zero if the token has none.
	IssuedAt time.Time
	// ExpiresAt is the exp claim.
	ExpiresAt time.Time
	// KeyID is the kid of the key that signed the token.
	KeyID string
	// Generation is the gen claim: the store's token generation when the
	// token was issued; 0 if the token has none.
	Generation int64
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// Issuer is the required iss claim. Zero value: DefaultIssuer ("kmep").
	Issuer string
	// Audience is the audience the aud claim must contain. Zero value:
	// DefaultAudience ("kmep-mp1").
	Audience string
	// Leeway is the clock skew tolerated on exp and nbf. Zero value:
	// DefaultLeeway (30 s); negative: no leeway.
	Leeway time.Duration
	// CacheSize is about how many verified tokens are remembered. Zero value:
	// DefaultCacheSize (100,000); negative: no cache, every Verify checks
	// the signature.
	CacheSize int
	// KeyRefreshMinInterval is the shortest time between two loads of the
	// keys from the KeySource, whatever triggers them (an unknown kid, age,
	// a failed load). Zero value: DefaultKeyRefreshMinInterval (1 s);
	// negative: no limit.
	KeyRefreshMinInterval time.Duration
	// KeyRefreshInterval is the age from which the loaded keys are reloaded
	// by the next Verify, so that a removed key is noticed even if no token
	// with an unknown kid comes along. If that reload fails the loaded keys
	// stay in use. Zero value: DefaultKeyRefreshInterval (5 min); negative:
	// keys are only reloaded on an unknown kid or by Refresh.
	KeyRefreshInterval time.Duration
	// Now returns the current time. Zero value: time.Now.
	Now func() time.Time

	// Revocations, when set, makes the Verifier refuse the tokens of app
	// instances whose tokens were revoked after they were issued, as Run
	// learns from it; Run must then be running: while the revocations have
	// not been followed within RevocationMaxStaleness, every token is
	// refused with ErrRevocationsUnavailable (HTTP 503), never accepted
	// unchecked. Zero value: tokens are never revoked.
	Revocations RevocationSource
	// RevocationMaxStaleness bounds how late a revocation may take effect
	// here. Zero or negative: DefaultRevocationMaxStaleness (1 s).
	RevocationMaxStaleness time.Duration
	// Log receives Run's failures to follow the revocations. Zero value:
	// slog.Default().
	Log *slog.Logger
}

// keySet is one loaded JWKS. It is never modified once published.
type keySet struct {
	keys     map[string]ed25519.PublicKey
	raw      []byte
	loadedAt time.Time
}

func (ks *keySet) get(kid string) (ed25519.PublicKey, bool) {
	if ks == nil {
		return nil, false
	}
	k, ok := ks.keys[kid]
	return k, ok
}

// Verifier verifies kmep tokens locally against keys from a KeySource,
// caching the tokens that verified. It is safe for concurrent use.
type Verifier struct {
	src             KeySource
	leeway          time.Duration
	minInterval     time.Duration
	refreshInterval time.Duration
	now             func() time.Time
	parser          *jwt.Parser
	cache           *tokenCache // nil when disabled

	keys     atomic.Pointer[keySet] // nil until the first successful load
	nextLoad atomic.Int64           // Unix ns before which no load starts

	mu      sync.Mutex // serialises loads; guards lastErr
	lastErr error      // cause of the last failed load, nil after a success

	sigChecks atomic.Uint64
	loads     atomic.Uint64

	rev revocations
}

// NewVerifier returns a Verifier over the keys of src. Keys are loaded
// lazily by the first Verify that needs them; call Refresh to load them up
// front. A nil src makes every load fail with ErrKeysUnavailable.
func NewVerifier(src KeySource, opts VerifierOptions) *Verifier {
	v := &Verifier{
		src:             src,
		leeway:          positiveOr(opts.Leeway, DefaultLeeway),
		minInterval:     positiveOr(opts.KeyRefreshMinInterval, DefaultKeyRefreshMinInterval),
		refreshInterval: positiveOr(opts.KeyRefreshInterval, DefaultKeyRefreshInterval),
		now:             opts.Now,
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.rev.init(opts)
	issuer, audience := opts.Issuer, opts.Audience
	if issuer == "" {
		issuer = DefaultIssuer
	}
	if audience == "" {
		audience = DefaultAudience
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(v.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(v.now),
	)
	switch {
	case opts.CacheSize == 0:
		v.cache = newTokenCache(DefaultCacheSize)
	case opts.CacheSize > 0:
		v.cache = newTokenCache(opts.CacheSize)
	}
	return v
}

// positiveOr maps zero to def and a negative d to zero.
func positiveOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Verify checks token and returns its claims. It accepts only EdDSA tokens
// whose kid is a loaded key, signed by that key, with the expected iss and
// aud, within exp and nbf (give or take the leeway), with a non-empty sub
// and, with a RevocationSource, not revoked. A token that verified before
// is answered from the cache, re-checking only its expiry and revocation.
//
// Refusals wrap ErrInvalidToken (and a more precise sentinel, e.g.
// ErrTokenExpired); a failure to load keys wraps ErrKeysUnavailable, and
// revocations not followed lately ErrRevocationsUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" || len(token) > maxTokenLen {
		return Claims{}, fmt.Errorf("%w: %d bytes", ErrMalformedToken, len(token))
	}
	now := v.now()
	v.refreshIfOld(ctx, now)

	if v.cache != nil {
		if cl, ok := v.cache.get(token); ok {
			if !now.Before(cl.ExpiresAt.Add(v.leeway)) {
				v.cache.remove(token)
				return Claims{}, fmt.Errorf("%w: at %s", ErrTokenExpired, cl.ExpiresAt.UTC().Format(time.RFC3339))
			}
			if err := v.rev.check(cl); err != nil {
				return Claims{}, err
			}
			return cl, nil
		}
	}

	cl, signer, err := v.verify(ctx, token, now)
	if err != nil {
		return Claims{}, err
	}
	if err := v.rev.check(cl); err != nil {
		return Claims{}, err
	}
	if v.cache != nil {
		// Admitted under the shard lock only if the signing key is still
		// loaded, so that a concurrent reload's purge cannot miss this entry.
		v.cache.put(token, cl, now, v.leeway, func() bool {
			k, ok := v.keys.Load().get(cl.KeyID)
			return ok && k.Equal(signer)
		})
	}
	return cl, nil
}

// verify does the full check of token: parse, key lookup, signature, claims.
// It also returns the key that verified the signature.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (Claims, ed25519.PublicKey, error) {
	var (
		tc     tokenClaims
		kid    string
		signer ed25519.PublicKey
		keyErr error
	)
	_, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			keyErr = fmt.Errorf("%w: no kid in header", ErrUnknownKey)
			return nil, keyErr
		}
		k, err := v.lookup(ctx, kid, now)
		if err != nil {
			keyErr = err
			return nil, err
		}
		// The parser checks the signature with k right after this returns.
		v.sigChecks.Add(1)
		signer = k
		return k, nil
	})
	if err != nil {
		if keyErr != nil {
			return Claims{}, nil, keyErr
		}
		return Claims{}, nil, classify(err)
	}
	rc := tc.RegisteredClaims
	if rc.Subject == "" {
		return Claims{}, nil, fmt.Errorf("%w: empty sub", ErrInvalidClaims)
	}
	if tc.Generation < 0 {
		return Claims{}, nil, fmt.Errorf("%w: negative gen", ErrInvalidClaims)
	}
	cl := Claims{Subject: rc.Subject, ID: rc.ID, ExpiresAt: rc.ExpiresAt.Time, KeyID: kid, Generation: tc.Generation}
	if rc.IssuedAt != nil {
		cl.IssuedAt = rc.IssuedAt.Time
	}
	return cl, signer, nil
}

// classify maps an error of the jwt parser to this package's sentinels,
// keeping the parser's error as the cause.
func classify(err error) error {
	var reason error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = ErrMalformedToken
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		reason = ErrInvalidSignature
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = ErrWrongAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		reason = ErrTokenNotYetValid
	default:
		reason = ErrInvalidClaims
	}
	return fmt.Errorf("%w: %w", reason, err)
}

// lookup returns the key kid, loading the keys if they were never loaded or
// do not hold kid, at most once per minimum interval.
func (v *Verifier) lookup(ctx context.Context, kid string, now time.Time) (ed25519.PublicKey, error) {
	if k, ok := v.keys.Load().get(kid); ok {
		return k, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ks := v.keys.Load()
	if k, ok := ks.get(kid); ok { // loaded while we waited
		return k, nil
	}
	if now.UnixNano() < v.nextLoad.Load() {
		if ks == nil {
			return nil, v.unavailableLocked()
		}
		return nil, fmt.Errorf("%w: kid %q (keys reloaded less than %v ago)", ErrUnknownKey, kid, v.minInterval)
	}
	if err := v.loadLocked(ctx, now); err != nil {
		return nil, err
	}
	if k, ok := v.keys.Load().get(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

// unavailableLocked reports the last failed load. v.mu must be held.
func (v *Verifier) unavailableLocked() error {
	if v.lastErr == nil {
		return fmt.Errorf("%w: not loaded yet", ErrKeysUnavailable)
	}
	return fmt.Errorf("%w: %w", ErrKeysUnavailable, v.lastErr)
}

// refreshIfOld reloads the keys when they are older than the refresh
// interval. Only one caller reloads; the others go on with the loaded keys,
// which also stay in use if the reload fails.
func (v *Verifier) refreshIfOld(ctx context.Context, now time.Time) {
	if v.refreshInterval <= 0 {
		return
	}
	ks := v.keys.Load()
	if ks == nil || now.Sub(ks.loadedAt) < v.refreshInterval || now.UnixNano() < v.nextLoad.Load() {
		return
	}
	if !v.mu.TryLock() {
		return
	}
	defer v.mu.Unlock()
	if ks := v.keys.Load(); now.Sub(ks.loadedAt) < v.refreshInterval || now.UnixNano() < v.nextLoad.Load() {
		return
	}
	_ = v.loadLocked(ctx, now) // a failure keeps the loaded keys; retried after the minimum interval
}

// Refresh reloads the keys from the KeySource now, regardless of the minimum
// interval. It returns an error wrapping ErrKeysUnavailable if that fails, in
// which case the keys loaded before, if any, stay in use.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.loadLocked(ctx, v.now())
}

// loadLocked loads the keys from the source, publishes them and purges the
// cached tokens of keys that disappeared or changed. v.mu must be held.
func (v *Verifier) loadLocked(ctx context.Context, now time.Time) error {
	v.nextLoad.Store(now.Add(v.minInterval).UnixNano())
	v.loads.Add(1)
	if v.src == nil {
		v.lastErr = errors.New("no key source configured")
		return v.unavailableLocked()
	}
	raw, err := v.src.JWKS(ctx)
	if err != nil {
		v.lastErr = fmt.Errorf("load JWKS: %w", err)
		return v.unavailableLocked()
	}
	old := v.keys.Load()
	var keys map[string]ed25519.PublicKey
	if old != nil && bytes.Equal(raw, old.raw) {
		keys = old.keys
	} else if keys, err = ParseJWKS(raw); err != nil {
		v.lastErr = fmt.Errorf("load JWKS: %w", err)
		return v.unavailableLocked()
	}
	v.lastErr = nil
	v.keys.Store(&keySet{keys: keys, raw: bytes.Clone(raw), loadedAt: now})
	if old == nil || v.cache == nil {
		return nil
	}
	removed := make(map[string]bool)
	for kid, oldKey := range old.keys {
		if k, ok := keys[kid]; !ok || !k.Equal(oldKey) {
			removed[kid] = true
		}
	}
	if len(removed) > 0 {
		v.cache.purge(removed)
	}
	return nil
}

// Stats are counters for monitoring a Verifier.
type Stats struct {
	// SignatureChecks counts Ed25519 signature verifications (cache misses
	// that got as far as a known key).
	SignatureChecks uint64
	// KeyLoads counts attempts to load the keys from the KeySource.
	KeyLoads uint64
	// CachedTokens is the number of verified tokens in the cache.
	CachedTokens int
	// KeysLoadedAt is when the keys in use were loaded; zero if never.
	KeysLoadedAt time.Time
}

// Stats returns the Verifier's counters.
func (v *Verifier) Stats() Stats {
	s := Stats{SignatureChecks: v.sigChecks.Load(), KeyLoads: v.loads.Load()}
	if v.cache != nil {
		s.CachedTokens = v.cache.len()
	}
	if ks := v.keys.Load(); ks != nil {
		s.KeysLoadedAt = ks.loadedAt
	}
	return s
}
