package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors of the store boundary. Check them with errors.Is. Each
// names the HTTP answer it stands for (HTTPStatus, ClientDetail,
// RetryAfterSeconds), which the one error path (store/kit/problem) reads
// through a small interface, so it need not import the store.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound error = &kindError{"not found", http.StatusNotFound, "resource not found", 0}
	// ErrConflict: the record (or a unique key such as an access key id) exists already.
	ErrConflict error = &kindError{"conflict", http.StatusConflict, "resource already exists or conflicts with another", 0}
	// ErrPrecondition: the caller's expected revision (If-Match) is stale.
	ErrPrecondition error = &kindError{"precondition failed", http.StatusPreconditionFailed, "If-Match does not match the current ETag", 0}
	// ErrForbidden: the record belongs to another app instance.
	ErrForbidden error = &kindError{"forbidden", http.StatusForbidden, "the resource belongs to another app instance", 0}
	// ErrInvalid: the operation does not apply to the record (e.g. a heartbeat
	// for a service registered without liveness).
	ErrInvalid error = &kindError{"invalid for this record", http.StatusBadRequest, "the operation does not apply to this resource", 0}
	// ErrUnavailable: Redis could not be reached or failed; nothing was acknowledged.
	ErrUnavailable error = &kindError{"store unavailable", http.StatusServiceUnavailable, "the platform store is unavailable; retry later", 1}
	// ErrFull: a bounded resource is exhausted. It names no answer: a
	// caller that lets it through answers 500.
	ErrFull error = &kindError{"full", 0, "", 0}
)

// kindError is a sentinel of the store boundary with the answer it stands
// for; Status 0 names none.
type kindError struct {
	msg        string
	status     int
	detail     string
	retryAfter int
}

func (e *kindError) Error() string { return e.msg }

// HTTPStatus is the status a client is answered for this kind of error (0: none).
func (e *kindError) HTTPStatus() int { return e.status }

// ClientDetail is the detail the client is shown.
func (e *kindError) ClientDetail() string { return e.detail }

// RetryAfterSeconds is the Retry-After the answer carries (0: none).
func (e *kindError) RetryAfterSeconds() int { return e.retryAfter }

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
