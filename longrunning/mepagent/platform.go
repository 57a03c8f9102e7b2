package mepagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// maxAnswer bounds what the agent reads of one platform answer.
const maxAnswer = 4 << 20

// maxRetryAfter bounds how long a Retry-After can hold a step (the
// platform's token lockout announces 15 minutes).
const maxRetryAfter = 15 * time.Minute

// StatusError is a platform answer outside 2xx.
type StatusError struct {
	// Method and URL are the request's.
	Method, URL string
	// Status is the HTTP status code.
	Status int
	// RetryAfter is the answer's Retry-After in seconds (0: none).
	RetryAfter time.Duration
	// Detail is the ProblemDetails detail, or the start of the body.
	Detail string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// transient reports whether a later attempt of the same request may
// succeed: 5xx, 408, 429, and 401 (after a new token).
func (e *StatusError) transient() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout ||
		e.Status == http.StatusTooManyRequests || e.Status == http.StatusUnauthorized
}

// permanentError marks a failure that a retry of the same request cannot
// mend (a 4xx, an answer the agent cannot read).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// isPermanent reports whether err cannot be mended by trying again.
func isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var se *StatusError
	return errors.As(err, &se) && !se.transient()
}

// call sends one request to the platform with the bearer token (none when
// empty) and returns the answer of a 2xx, or a *StatusError.
func (a *Agent) call(ctx context.Context, method, url, bearer string, body []byte) (*http.Response, []byte, error) {
	return a.callWithKey(ctx, method, url, bearer, "", body)
}

// callWithKey is call with an Idempotency-Key (none when empty): every attempt
// of one create sends the same key, so a retry after a 503 or a lost
// answer finds what an earlier attempt created instead of creating it
// twice.
func (a *Agent) callWithKey(ctx context.Context, method, url, bearer, key string, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, nil, &permanentError{fmt.Errorf("%s %s: %w", method, url, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return a.do(req)
}

// newKey returns a fresh Idempotency-Key: 128 random bits in hex.
func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// do sends req, in a client span, and reads the answer.
func (a *Agent) do(req *http.Request) (*http.Response, []byte, error) {
	req, end := trace.StartClient(a.tracer, req)
	res, err := a.client.Do(req)
	end(res, err)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res, b, &StatusError{Method: req.Method, URL: req.URL.String(), Status: res.StatusCode,
			RetryAfter: retryAfter(res.Header.Get("Retry-After")), Detail: detail(b)}
	}
	return res, b, nil
}

func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// detail is what a failed answer says, short enough for a log line.
func detail(b []byte) string {
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(b, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// backoff counts one step's consecutive failures and yields their waits:
// doubling from MinBackoff to MaxBackoff with equal jitter (retry.Backoff),
// each at least half the nominal one, so retries never busy-loop.
type backoff struct {
	retry.Backoff
	failures int
}

func (a *Agent) newBackoff() *backoff {
	return &backoff{Backoff: retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}}
}

// next is the wait after one more failure.
func (b *backoff) next() time.Duration {
	d := b.Delay(b.failures)
	b.failures++
	return d
}

func (b *backoff) reset() { b.failures = 0 }

// retry runs op with the current token until it succeeds, fails for good
// (a permanent error, returned), or ctx ends (ctx.Err() returned). A 401
// makes the token be renewed before the next attempt; a Retry-After is
// honoured.
func (a *Agent) retry(ctx context.Context, what string, op func(ctx context.Context, token string) error) error {
	b := a.newBackoff()
	for attempt := 1; ; attempt++ {
		tok, err := a.tokens.wait(ctx)
		if err != nil {
			return err
		}
		err = op(ctx, tok)
		switch {
		case err == nil:
			if attempt > 1 {
				a.log.Info(what+": succeeded after retries", "attempts", attempt)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case isPermanent(err):
			return err
		}
		wait := b.next()
		var se *StatusError
		if errors.As(err, &se) {
			if se.Status == http.StatusUnauthorized {
				a.tokens.reject(tok)
			}
			wait = max(wait, se.RetryAfter)
		}
		a.log.Warn(what+": failed; will retry", "attempt", attempt, "in", wait.Round(time.Millisecond), "err", err)
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}
