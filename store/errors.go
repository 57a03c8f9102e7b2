package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors of the store boundary. Check them with errors.Is.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record (or a unique key such as an access key id) exists already.
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: the caller's expected revision (If-Match) is stale.
	ErrPrecondition = errors.New("precondition failed")
	// ErrForbidden: the record belongs to another app instance.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: the operation does not apply to the record (e.g. a heartbeat
	// for a service registered without liveness).
	ErrInvalid = errors.New("invalid for this record")
	// ErrUnavailable: Redis could not be reached or failed; nothing was acknowledged.
	ErrUnavailable = errors.New("store unavailable")
	// ErrFull: a bounded resource is exhausted.
	ErrFull = errors.New("full")
)

// scriptError maps the status words our Lua scripts return with
// redis.error_reply to the sentinels.
func scriptError(err error) (error, bool) {
	msg := err.Error()
	for word, sentinel := range map[string]error{
		"KMEP_NOTFOUND":  ErrNotFound,
		"KMEP_CONFLICT":  ErrConflict,
		"KMEP_STALE":     ErrPrecondition,
		"KMEP_FORBIDDEN": ErrForbidden,
		"KMEP_INVALID":   ErrInvalid,
	} {
		if strings.HasPrefix(msg, word) {
			return sentinel, true
		}
	}
	return nil, false
}

// wrap classifies a go-redis error: redis.Nil becomes ErrNotFound, script
// status words become their sentinels, and everything else (network errors,
// timeouts, LOADING, READONLY, ...) becomes ErrUnavailable. Context
// cancellation is kept as it is.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if s, ok := scriptError(err); ok {
		return fmt.Errorf("%s: %w", op, s)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var ne net.Error
	_ = errors.As(err, &ne)
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}
