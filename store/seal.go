package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ParseEncryptionKey decodes KMEP_ENCRYPTION_KEY: 32 bytes as base64 (std or
// URL alphabet, padded or not) or as 64 hex digits.
func ParseEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("KMEP_ENCRYPTION_KEY must be 32 bytes, base64 or hex encoded")
}

// EncryptionKey is KMEP_ENCRYPTION_KEY as a binary's config field: it
// decodes through ParseEncryptionKey (envconfig.Decoder), so a bad key
// fails at start naming the variable.
type EncryptionKey []byte

// Decode implements envconfig.Decoder.
func (k *EncryptionKey) Decode(s string) error {
	b, err := ParseEncryptionKey(s)
	if err != nil {
		return err
	}
	*k = b
	return nil
}

// sealer encrypts secrets at rest with AES-256-GCM. The associated data binds
// a ciphertext to the record it belongs to, so a sealed secret copied to
// another record does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key: want 32 bytes, got %d", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: a}, nil
}

// seal returns "v1:" + base64(nonce || ciphertext).
func (s *sealer) seal(plain, ad []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, plain, ad)
	return "v1:" + base64.RawStdEncoding.EncodeToString(out), nil
}

var errSealed = errors.New("sealed secret does not open (wrong KMEP_ENCRYPTION_KEY or tampered record)")

func (s *sealer) open(sealed string, ad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, "v1:")
	if !ok {
		return nil, errSealed
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return nil, errSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], ad)
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}
