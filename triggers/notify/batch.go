package notify

import (
	"context"
	"sync"
	"time"
)

// batcher runs the store calls of the events handled at once as one call
// (group commit): a caller that finds no call in flight makes one with
// every request queued so far (up to max); those that come meanwhile wait,
// and when it returns the first of them makes the next call with all of
// them. An idle notifier thus pays no delay, and a busy one pays one round
// trip per batch instead of one per request.
type batcher[Q, R any] struct {
	// do answers qs, one R per Q, or fails them all.
	do func(ctx context.Context, qs []Q) ([]R, error)
	// max bounds the requests of one call.
	max int
	// timeout bounds one call, which serves other callers too, so it runs
	// without the leading caller's cancellation.
	timeout time.Duration

	mu      sync.Mutex
	queue   []*call[Q, R]
	running bool
}

type call[Q, R any] struct {
	q    Q
	r    R
	err  error
	lead bool // woken to make the next call, not with a result
	done chan struct{}
}

// Do queues q and returns its answer once a call made it.
func (b *batcher[Q, R]) Do(ctx context.Context, q Q) (R, error) {
	c := &call[Q, R]{q: q, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running {
		b.mu.Unlock()
		<-c.done
		if !c.lead {
			return c.r, c.err
		}
		b.mu.Lock() // c is first in the queue and running still true
	}
	b.running = true
	n := min(len(b.queue), b.max)
	batch := make([]*call[Q, R], n)
	copy(batch, b.queue)
	b.queue = append(b.queue[:0], b.queue[n:]...)
	b.mu.Unlock()

	qs := make([]Q, n)
	for i, bc := range batch {
		qs[i] = bc.q
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	rs, err := b.do(cctx, qs)
	cancel()
	for i, bc := range batch {
		if err != nil {
			bc.err = err
		} else {
			bc.r = rs[i]
		}
		if bc != c {
			close(bc.done)
		}
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		next.lead = true
		close(next.done)
	} else {
		b.running = false
	}
	b.mu.Unlock()
	return c.r, c.err
}
