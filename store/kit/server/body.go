package server

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults of the request body bound (Options.BodyTimeout, BodyMinRate).
const (
	// DefaultBodyTimeout is how long a request body may take beyond what
	// DefaultBodyMinRate allows for its size.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultBodyMinRate is the slowest average rate, in bytes per second,
	// at which a body may arrive once DefaultBodyTimeout has passed: a
	// 64 KiB JSON body gets 14 s, a 1 GiB package upload about 18 h.
	DefaultBodyMinRate = 16 << 10
)

// boundBodies bounds the time the client may take to send a request's
// body, with read deadlines on the connection (http.ResponseController):
// from the handler's first read of the body, the body must have arrived
// by timeout + its size / minRate, i.e. at an average of at least minRate
// bytes per second after the first timeout. A body sent slowly (1 byte/s)
// or stalled below its Content-Length fails the handler's read with a
// timeout error (rest.ReadBody answers 408) and the connection is closed.
// The deadline is lifted once the body is read to its end, so a handler
// that works long after reading (a termination's graceful wait) is not cut
// short; a body the handler left unread gets timeout from the handler's
// return for the server to discard it, after which the connection is
// closed. Requests without a body are passed through untouched.
func boundBodies(next http.Handler, timeout time.Duration, minRate int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		b := &boundedBody{body: r.Body, rc: http.NewResponseController(w), timeout: timeout, minRate: minRate}
		r.Body = b
		next.ServeHTTP(w, r)
		b.handlerDone()
	})
}

// boundedBody is a request body whose reads extend the connection's read
// deadline as the body arrives.
type boundedBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	minRate int64

	mu      sync.Mutex
	started time.Time // the first read
	n       int64     // bytes read so far
	done    bool      // read to the end (or failed): no deadline from us any more
}

func (b *boundedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		if b.started.IsZero() {
			b.started = time.Now()
		}
		// Unsupported (a connection without deadlines): the body is
		// read without a bound, as before.
		_ = b.rc.SetReadDeadline(b.deadline())
	}
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	if err != nil && !b.done {
		b.done = true
		if err == io.EOF {
			// Read to the end: what the handler does next is not the
			// client's time.
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// deadline is when the body read so far must be complete by: the first
// read + timeout + n / minRate.
func (b *boundedBody) deadline() time.Time {
	rate := max(b.minRate, 1)
	allowance := time.Duration(b.n/rate)*time.Second + time.Duration(b.n%rate)*time.Second/time.Duration(rate)
	return b.started.Add(b.timeout + allowance)
}

// handlerDone bounds the server's discard of what the handler left unread.
func (b *boundedBody) handlerDone() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
}

func (b *boundedBody) Close() error { return b.body.Close() }
