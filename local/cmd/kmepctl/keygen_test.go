package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

var (
	akPattern = regexp.MustCompile(`^[A-Z0-9]{20}$`)
	skPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{40}$`)
)

func TestGenerateKeys(t *testing.T) {
	// 0..19 map to A..T; bytes at or above 252 are rejected, 252 % 36 == 0.
	counting := make([]byte, 0, 64)
	for i := range 20 {
		counting = append(counting, byte(i))
	}
	counting = append(counting, make([]byte, 12)...) // rest of the first 32-byte block
	skRand := bytes.Repeat([]byte{0xff}, 30)

	withRejects := append(bytes.Repeat([]byte{0xff, 252, 253}, 10), bytes.Repeat([]byte{35}, 2)...)
	withRejects = append(withRejects, bytes.Repeat([]byte{36}, 32)...) // 36 % 36 == 0 -> 'A'

	tests := []struct {
		name   string
		rand   []byte
		wantAK string
		wantSK string
	}{
		{
			name:   "counting bytes",
			rand:   append(counting, skRand...),
			wantAK: "ABCDEFGHIJKLMNOPQRST",
			wantSK: strings.Repeat("_", 40),
		},
		{
			name:   "bytes at or above 252 are skipped",
			rand:   append(withRejects, skRand...),
			wantAK: "99AAAAAAAAAAAAAAAAAA",
			wantSK: strings.Repeat("_", 40),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ak, sk, err := generateKeys(bytes.NewReader(tc.rand))
			if err != nil {
				t.Fatal(err)
			}
			if ak != tc.wantAK || sk != tc.wantSK {
				t.Errorf("generateKeys = %q, %q; want %q, %q", ak, sk, tc.wantAK, tc.wantSK)
			}
		})
	}

	t.Run("crypto/rand keys have the documented shape and differ", func(t *testing.T) {
		seen := map[string]bool{}
		for range 50 {
			ak, sk, err := generateKeys(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if !akPattern.MatchString(ak) || !skPattern.MatchString(sk) {
				t.Fatalf("generateKeys = %q, %q; want 20 [A-Z0-9] and 40 base64url characters", ak, sk)
			}
			if seen[ak] || seen[sk] {
				t.Fatalf("generateKeys repeated a key: %q %q", ak, sk)
			}
			seen[ak], seen[sk] = true, true
		}
	})

	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("boom")
		if _, _, err := generateKeys(iotest.ErrReader(boom)); !errors.Is(err, boom) {
			t.Errorf("generateKeys = %v, want %v", err, boom)
		}
	})

	t.Run("short reader", func(t *testing.T) {
		if _, _, err := generateKeys(bytes.NewReader(counting)); err == nil {
			t.Error("generateKeys with too few random bytes succeeded")
		}
	})
}
