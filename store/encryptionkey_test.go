package store_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store"
)

// A config's EncryptionKey decodes what ParseEncryptionKey accepts and
// refuses the rest, leaving the field unset.
func TestEncryptionKeyDecode(t *testing.T) {
	var k store.EncryptionKey
	if err := k.Decode(strings.Repeat("ab", 32)); err != nil || !bytes.Equal(k, bytes.Repeat([]byte{0xab}, 32)) {
		t.Fatalf("hex key: %x, %v", []byte(k), err)
	}
	var bad store.EncryptionKey
	if err := bad.Decode("too-short"); err == nil || bad != nil {
		t.Fatalf("a short key: %x, %v; want an error and no key", []byte(bad), err)
	}
}
