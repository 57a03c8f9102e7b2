package auth

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults shared by SignerOptions and VerifierOptions.
const (
	// DefaultIssuer is the iss claim of kmep tokens.
	DefaultIssuer = "kmep"
	// DefaultAudience is the aud claim of kmep Mp1 tokens.
	DefaultAudience = "kmep-mp1"
	// DefaultTTL is the lifetime of an issued token.
	DefaultTTL = time.Hour
)

// ErrEmptySubject reports an attempt to issue a token without a subject.
var ErrEmptySubject = errors.New("empty subject")

// SignerOptions configures a Signer.
type SignerOptions struct {
	// Issuer is the iss claim. Zero value: DefaultIssuer ("kmep").
	Issuer string
	// Audience is the aud claim. Zero value: DefaultAudience ("kmep-mp1").
	Audience string
	// TTL is the token lifetime, a whole number of seconds of at least one
	// second. Zero value: DefaultTTL (one hour).
	TTL time.Duration
}

// Signer issues tokens with the first of its keys and publishes all of them.
// It is safe for concurrent use.
type Signer struct {
	active   SigningKey
	issuer   string
	audience string
	ttl      time.Duration
	jwks     []byte
}

// NewSigner returns a Signer that signs with keys[0] and publishes every key
// in keys.
func NewSigner(keys []SigningKey, opts SignerOptions) (*Signer, error) {
	if len(keys) == 0 {
		return nil, ErrNoSigningKeys
	}
	pub := make([]PublicKey, 0, len(keys))
	for i, k := range keys {
		if k.kid == "" || len(k.priv) == 0 {
			return nil, fmt.Errorf("%w: key %d is a zero SigningKey", ErrInvalidKey, i)
		}
		pub = append(pub, k.Public())
	}
	jwks, err := MarshalJWKS(pub...)
	if err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	s := &Signer{
		active:   keys[0],
		issuer:   opts.Issuer,
		audience: opts.Audience,
		ttl:      opts.TTL,
		jwks:     jwks,
	}
	if s.issuer == "" {
		s.issuer = DefaultIssuer
	}
	if s.audience == "" {
		s.audience = DefaultAudience
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.ttl < time.Second || s.ttl%time.Second != 0 {
		return nil, fmt.Errorf("new signer: TTL %v is not a positive whole number of seconds", s.ttl)
	}
	return s, nil
}

// KeyID returns the kid of the active signing key.
func (s *Signer) KeyID() string { return s.active.kid }

// JWKS returns the JWKS document publishing every configured key, the
// active one first. The caller may modify the returned slice.
func (s *Signer) JWKS() []byte { return bytes.Clone(s.jwks) }

// tokenClaims are the claims of a kmep token: the registered ones and the
// revocation generation.
type tokenClaims struct {
	jwt.RegisteredClaims
	// Generation is the store's token generation when the token was issued
	// (see store.RevocationRetention); absent in a token issued with 0.
	Generation int64 `json:"gen,omitempty"`
}

// Issue signs a token for sub (an appInstanceId) valid from now for the
// configured TTL, with generation 0. expiresIn is the TTL in seconds, as an
// OAuth 2.0 token response reports it.
func (s *Signer) Issue(sub string, now time.Time) (token string, expiresIn int, err error) {
	return s.IssueGeneration(sub, 0, now)
}

// IssueGeneration is Issue for a token of generation gen (the "gen" claim):
// the store's token generation read with the credential that authenticated
// sub, so that a later revocation of sub's tokens refuses it.
func (s *Signer) IssueGeneration(sub string, gen int64, now time.Time) (token string, expiresIn int, err error) {
	if sub == "" {
		return "", 0, fmt.Errorf("issue token: %w", ErrEmptySubject)
	}
	if gen < 0 {
		return "", 0, fmt.Errorf("issue token for %s: negative generation %d", sub, gen)
	}
	now = now.Truncate(time.Second)
	claims := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    s.issuer,
		Subject:   sub,
		Audience:  jwt.ClaimStrings{s.audience},
		ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        rand.Text(),
	}, Generation: gen}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.active.kid
	token, err = t.SignedString(s.active.priv)
	if err != nil {
		return "", 0, fmt.Errorf("issue token for %s: %w", sub, err)
	}
	return token, int(s.ttl / time.Second), nil
}
