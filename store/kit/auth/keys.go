package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// pemTypePrivateKey is the PEM block type of a PKCS#8 private key.
const pemTypePrivateKey = "PRIVATE KEY"

var (
	// ErrInvalidKey reports signing-key PEM that is not a PKCS#8 Ed25519 key.
	ErrInvalidKey = errors.New("invalid signing key")
	// ErrNoSigningKeys reports a key configuration that holds no key.
	ErrNoSigningKeys = errors.New("no signing keys")
	// ErrInvalidJWKS reports a JWKS document that cannot be used.
	ErrInvalidJWKS = errors.New("invalid JWKS")
)

// SigningKey is an Ed25519 private key with its key ID. Build it with
// ParseSigningKeys or NewSigningKey; the zero value is not usable.
type SigningKey struct {
	kid  string
	priv ed25519.PrivateKey
}

// NewSigningKey wraps priv, deriving its key ID from the public key.
func NewSigningKey(priv ed25519.PrivateKey) (SigningKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return SigningKey{}, fmt.Errorf("%w: Ed25519 private key has %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return SigningKey{kid: Thumbprint(pub), priv: priv}, nil
}

// KeyID returns the key's kid: the RFC 7638 thumbprint of its public key.
func (k SigningKey) KeyID() string { return k.kid }

// Public returns the public half of the key, with the same key ID.
func (k SigningKey) Public() PublicKey {
	return PublicKey{KeyID: k.kid, Key: k.priv.Public().(ed25519.PublicKey)}
}

// PublicKey is an Ed25519 public key as published in a JWKS.
type PublicKey struct {
	// KeyID is the JWK "kid". When empty, MarshalJWKS uses the key's
	// RFC 7638 thumbprint.
	KeyID string
	// Key is the 32-byte Ed25519 public key.
	Key ed25519.PublicKey
}

// ParseSigningKeys parses one or more concatenated PKCS#8 "PRIVATE KEY" PEM
// blocks holding Ed25519 keys. The order is kept: the first key is the active
// signer, the others are only published so that the tokens they signed keep
// verifying during a rotation.
func ParseSigningKeys(pemBytes []byte) ([]SigningKey, error) {
	var keys []SigningKey
	seen := make(map[string]bool)
	rest := pemBytes
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemTypePrivateKey {
			return nil, fmt.Errorf("%w: PEM block %d is %q, want %q", ErrInvalidKey, n, block.Type, pemTypePrivateKey)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PEM block %d: %w", ErrInvalidKey, n, err)
		}
		priv, ok := parsed.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PEM block %d holds a %T, want an Ed25519 key", ErrInvalidKey, n, parsed)
		}
		key, err := NewSigningKey(priv)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if seen[key.kid] {
			return nil, fmt.Errorf("%w: PEM block %d repeats key %s", ErrInvalidKey, n, key.kid)
		}
		seen[key.kid] = true
		keys = append(keys, key)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: unexpected data after PEM block %d", ErrInvalidKey, len(keys))
	}
	if len(keys) == 0 {
		return nil, ErrNoSigningKeys
	}
	return keys, nil
}

// GenerateSigningKeyPEM returns a fresh Ed25519 key as one PKCS#8 PEM block,
// in the form ParseSigningKeys reads.
func GenerateSigningKeyPEM() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url without
// padding) of an Ed25519 public key, as defined for OKP keys by RFC 8037.
func Thumbprint(pub ed25519.PublicKey) string {
	// RFC 7638 §3.2: the required members, in lexicographic order, no spaces.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwk is one Ed25519 key of a JWKS (RFC 7517, RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	// D is only read, to refuse a JWKS that leaks private key material.
	D   string `json:"d,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// MarshalJWKS returns the JWKS document publishing pub.
func MarshalJWKS(pub ...PublicKey) ([]byte, error) {
	set := jwkSet{Keys: make([]jwk, 0, len(pub))}
	seen := make(map[string]bool, len(pub))
	for i, p := range pub {
		if len(p.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %d has %d bytes, want %d", ErrInvalidJWKS, i, len(p.Key), ed25519.PublicKeySize)
		}
		kid := p.KeyID
		if kid == "" {
			kid = Thumbprint(p.Key)
		}
		if seen[kid] {
			return nil, fmt.Errorf("%w: duplicate kid %q", ErrInvalidJWKS, kid)
		}
		seen[kid] = true
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(p.Key),
			Kid: kid,
			Alg: "EdDSA",
			Use: "sig",
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	return b, nil
}

// ParseJWKS returns the Ed25519 public keys of a JWKS document by kid. It
// refuses keys that are not OKP/Ed25519, are meant for another algorithm or
// use, have a malformed x, carry private material, or repeat a kid. An empty
// set is valid.
func ParseJWKS(b []byte) (map[string]ed25519.PublicKey, error) {
	var set jwkSet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidJWKS, err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for i, k := range set.Keys {
		switch {
		case k.Kty != "OKP":
			return nil, fmt.Errorf("%w: key %d has kty %q, want OKP", ErrInvalidJWKS, i, k.Kty)
		case k.Crv != "Ed25519":
			return nil, fmt.Errorf("%w: key %d has crv %q, want Ed25519", ErrInvalidJWKS, i, k.Crv)
		case k.Alg != "" && k.Alg != "EdDSA":
			return nil, fmt.Errorf("%w: key %d has alg %q, want EdDSA", ErrInvalidJWKS, i, k.Alg)
		case k.Use != "" && k.Use != "sig":
			return nil, fmt.Errorf("%w: key %d has use %q, want sig", ErrInvalidJWKS, i, k.Use)
		case k.D != "":
			return nil, fmt.Errorf("%w: key %d contains private key material", ErrInvalidJWKS, i)
		case k.Kid == "":
			return nil, fmt.Errorf("%w: key %d has no kid", ErrInvalidJWKS, i)
		}
		x, err := base64.RawURLEncoding.Strict().DecodeString(k.X)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: x: %w", ErrInvalidJWKS, k.Kid, err)
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %q: x has %d bytes, want %d", ErrInvalidJWKS, k.Kid, len(x), ed25519.PublicKeySize)
		}
		if _, dup := keys[k.Kid]; dup {
			return nil, fmt.Errorf("%w: duplicate kid %q", ErrInvalidJWKS, k.Kid)
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	return keys, nil
}
