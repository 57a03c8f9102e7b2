// Package retry holds the waits kmep's agents and triggers share between
// attempts: capped exponential backoff with equal jitter (Backoff) and a
// sleep that ends early with its context (Sleep).
package retry

import (
	"context"
	mathrand "math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with equal jitter: the nominal wait
// doubles from Min with every consecutive failure up to Max, and each wait is
// drawn uniformly from the upper half of the nominal one, so that retries
// spread out but never busy-loop.
type Backoff struct {
	// Min is the nominal wait after the first failure. Zero value (or a
	// negative one): every nominal wait is Max.
	Min time.Duration
	// Max caps the nominal wait. Zero value: every wait is 0.
	Max time.Duration
}

// Delay is the wait after the attempt-th consecutive failure (0-based):
// uniformly in [d/2, d] with d = Min·2^attempt capped at Max (d itself when
// d is at most 1 ns). However large the attempt, d never overflows past the
// cap; a negative attempt counts as a large one.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Max
	// Min·2^attempt < Max, without computing a product that may overflow.
	if attempt >= 0 && b.Min > 0 && b.Min <= (b.Max-1)>>attempt {
		d = b.Min << attempt
	}
	if d <= 1 {
		return d
	}
	return d/2 + mathrand.N(d/2+1)
}

// Sleep waits d or until ctx ends, whichever comes first; it reports whether
// the full d passed. A d of zero or less returns at once: true unless ctx has
// ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
