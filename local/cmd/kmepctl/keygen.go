package main

import (
	"encoding/base64"
	"fmt"
	"io"
)

// akAlphabet is the alphabet of generated access keys.
const akAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

const (
	akLen      = 20
	skRandLen  = 30 // bytes; 40 characters of unpadded base64url
	akRejectAt = 256 - 256%len(akAlphabet)
)

// generateKeys returns a random access key of akLen uppercase letters and
// digits and a random secret key of 40 unpadded base64url characters (180
// bits), both drawn from rnd.
func generateKeys(rnd io.Reader) (ak, sk string, err error) {
	akBytes := make([]byte, 0, akLen)
	buf := make([]byte, 32)
	for len(akBytes) < akLen {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return "", "", fmt.Errorf("generate access key: %w", err)
		}
		for _, b := range buf {
			// Rejection sampling keeps every character equally likely.
			if int(b) < akRejectAt && len(akBytes) < akLen {
				akBytes = append(akBytes, akAlphabet[int(b)%len(akAlphabet)])
			}
		}
	}
	skBytes := make([]byte, skRandLen)
	if _, err := io.ReadFull(rnd, skBytes); err != nil {
		return "", "", fmt.Errorf("generate secret key: %w", err)
	}
	return string(akBytes), base64.RawURLEncoding.EncodeToString(skBytes), nil
}
