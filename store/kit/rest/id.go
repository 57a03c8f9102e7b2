package rest

import (
	"crypto/rand"
	"fmt"
)

// NewID returns a random (version 4) UUID, the id of a created resource.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ValidID reports whether s can be an id in a path (appInstanceId,
// tenantId, packageId): ValidIDLen(s, 64).
func ValidID(s string) bool { return ValidIDLen(s, 64) }

// ValidIDLen reports whether s is 1..max letters, digits, '.', '_' or '-',
// starting with a letter or digit.
func ValidIDLen(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}
