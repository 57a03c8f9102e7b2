package rest

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"

	"github.com/kmep-io/kmep/store/kit/problem"
)

// IdempotencyHeader names the request header that makes a create
// retryable (draft-ietf-httpapi-idempotency-key-header): a POST that
// carries it creates the resource KeyedID names, so sending it again (after
// a 503 or a lost answer) finds what the first one created instead of
// creating another.
const IdempotencyHeader = "Idempotency-Key"

// MaxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const MaxIdempotencyKey = 255

// IdempotencyKey returns r's Idempotency-Key ("" when there is none): a
// structured-field string ("...", as the draft writes it) or the same
// characters bare, 1 to MaxIdempotencyKey printable ASCII characters. Any
// other value is a 400 naming the header.
func IdempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values(IdempotencyHeader)
	if len(vs) == 0 {
		return "", nil
	}
	bad := problem.BadRequest(IdempotencyHeader,
		fmt.Sprintf("Idempotency-Key must be one value of 1 to %d printable ASCII characters", MaxIdempotencyKey))
	if len(vs) > 1 {
		return "", bad
	}
	k := strings.TrimSpace(vs[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(k[1 : len(k)-1])
	}
	if k == "" || len(k) > MaxIdempotencyKey {
		return "", bad
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", bad
		}
	}
	return k, nil
}

// KeyedID returns the id of the resource that a create with Idempotency-Key
// key makes in scope (which names the kind of resource and its owner, so
// two owners' keys never meet): a UUID (version 8) made of the SHA-256 of
// both. Every instance of a function derives the same id, so the store's
// "already exists" is how a retry finds the first request's resource,
// atomically, with nothing more to store.
func KeyedID(scope, key string) string {
	h := sha256.Sum256([]byte(scope + "\x00" + key))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// IdempotencyMismatch is the answer to a create whose Idempotency-Key
// names a resource that another request created (422).
func IdempotencyMismatch() error {
	return &problem.Error{Status: http.StatusUnprocessableEntity, Field: IdempotencyHeader,
		Detail: "this Idempotency-Key was used before for another request; use a new key for a new request"}
}

// MarkReplayed tells the client that an answer repeats an earlier request's
// (the Idempotent-Replayed header, as Stripe and others send it).
func MarkReplayed(w http.ResponseWriter) { w.Header().Set("Idempotent-Replayed", "true") }
