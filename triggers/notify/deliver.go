package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// maxDrain is how much of a callback's answer is read (and discarded) so
// its connection can be reused.
const maxDrain = 64 << 10

// claim is one delivery's hold on the pairs it selected: the claimant
// (store.AudienceQuery.Claimant) and when the claim was asked for.
type claim struct {
	claimant string
	at       time.Time
}

// fanOut delivers the notification body(sub) of event eventID to every
// subscription of aud not yet marked done for it nor held by another
// delivery, counting into c. bulk reports that the event is a bulk
// change's (its callbacks take the bulk share of the slots).
func (n *Notifier) fanOut(ctx context.Context, eventID string, bulk bool, cl claim, aud store.Audience,
	body func(store.Subscription) ([]byte, error), c *counters) {
	var wg sync.WaitGroup
	stopped := false
	for i, sub := range aud.Subs {
		switch {
		case aud.Done[i]:
			c.skipped.Add(1)
			continue
		case i < len(aud.Busy) && aud.Busy[i]:
			c.busy.Add(1)
			continue
		}
		mine := store.Claim{Notified: store.Notified{EventID: eventID, SubscriptionID: sub.ID}, Claimant: cl.claimant}
		if stopped {
			c.failed.Add(1)
			c.release(mine)
			continue
		}
		b, err := body(sub)
		if err != nil {
			c.failed.Add(1)
			c.release(mine)
			n.log.Error("notification not rendered", "event", eventID, "subscription", sub.ID, "err", err)
			continue
		}
		if !n.acquire(ctx, bulk) {
			stopped = true
			c.failed.Add(1)
			c.release(mine)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.deliver(ctx, eventID, cl, bulk, sub, b, c)
		}()
	}
	wg.Wait()
	if stopped {
		n.log.Warn("event's context ended before every callback was tried", "event", eventID, "err", ctx.Err())
	}
}

// acquire takes a callback slot: one of Concurrency, and for a bulk
// event's callback one of the bulk share as well (taken first, so a bulk
// callback waiting for a slot holds no slot a live one could use). It
// reports false when ctx ended first.
func (n *Notifier) acquire(ctx context.Context, bulk bool) bool {
	bulk = bulk && n.bulkSem != nil
	if bulk {
		select {
		case n.bulkSem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	select {
	case n.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		if bulk {
			<-n.bulkSem
		}
		return false
	}
}

// release gives back what acquire took.
func (n *Notifier) release(bulk bool) {
	<-n.sem
	if bulk && n.bulkSem != nil {
		<-n.bulkSem
	}
}

// result is how one attempt ended.
type result int

const (
	resultDelivered result = iota // 2xx
	resultRetry                   // 5xx, 429, transport error, timeout
	resultRejected                // any other status; a URL or address refused for good
)

type outcome struct {
	result result
	status int // 0: no answer
	// retryAfter is the wait asked for by Retry-After; hasRetryAfter
	// reports whether there was one.
	retryAfter    time.Duration
	hasRetryAfter bool
	err           error
}

// deliver sends one notification, retrying as configured, while its
// claim cl holds: an attempt starts only if it ends (Timeout) before the
// claim's ClaimTTL runs out, so no other delivery can take the callback
// meanwhile. It is called holding a concurrency slot, which it holds only
// while an attempt is in flight (not while it backs off).
func (n *Notifier) deliver(ctx context.Context, eventID string, cl claim, bulk bool, sub store.Subscription, body []byte, c *counters) {
	pair := store.Notified{EventID: eventID, SubscriptionID: sub.ID}
	for attempt := 1; ; attempt++ {
		if time.Since(cl.at)+n.timeout >= n.claimTTL {
			n.release(bulk)
			c.failed.Add(1)
			// Given back only if still this delivery's (see store.Claim).
			c.release(store.Claim{Notified: pair, Claimant: cl.claimant})
			n.log.Warn("notification not tried: its claim would run out first", "event", eventID, "subscription", sub.ID,
				"callback", redact(sub.CallbackReference), "attempts", attempt-1, "claimed", time.Since(cl.at).Round(time.Millisecond))
			return
		}
		o := n.attempt(ctx, sub.CallbackReference, body)
		n.release(bulk)
		switch o.result {
		case resultDelivered:
			c.delivered.Add(1)
			// The marker is written with the event's settlement (or touch),
			// in one batched write that does not inherit its cancellation;
			// it replaces the claim.
			c.markDone(pair)
			return
		case resultRejected:
			c.rejected.Add(1)
			// A refusal is final: a redelivery does not ask again.
			c.markDone(pair)
			n.log.Warn("notification refused", "event", eventID, "subscription", sub.ID,
				"callback", redact(sub.CallbackReference), "status", o.status, "err", o.err)
			return
		}
		if attempt >= n.retry.Attempts || ctx.Err() != nil ||
			!retry.Sleep(ctx, n.backoff(attempt, o)) || !n.acquire(ctx, bulk) {
			c.failed.Add(1)
			c.release(store.Claim{Notified: pair, Claimant: cl.claimant})
			n.log.Warn("notification failed", "event", eventID, "subscription", sub.ID,
				"callback", redact(sub.CallbackReference), "attempts", attempt, "status", o.status, "err", o.err)
			return
		}
		c.retried.Add(1)
	}
}

// attempt POSTs body to callback once, within the per-attempt timeout, as
// a client span whose traceparent the request's header carries.
func (n *Notifier) attempt(ctx context.Context, cb string, body []byte) outcome {
	actx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, cb, bytes.NewReader(body))
	if err != nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		// The error text would repeat the URL: say only what is wrong.
		return outcome{result: resultRejected, err: callback.ErrInvalidURL}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kmep-notify")
	req, end := trace.StartClient(n.tracer, req)
	start := time.Now()
	resp, err := n.client.Do(req)
	n.latency.Observe(time.Since(start).Seconds())
	end(resp, err)
	if err != nil {
		err = withoutURL(err)
		if errors.Is(err, callback.ErrForbiddenAddress) || errors.Is(err, callback.ErrInvalidURL) {
			return outcome{result: resultRejected, err: err}
		}
		return outcome{result: resultRetry, err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		o.result = resultDelivered
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		o.result = resultRetry
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			o.retryAfter, o.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	default:
		o.result = resultRejected
	}
	return o
}

// backoff is the wait after the attempt-th try (1-based) ended with o: the
// Retry-After asked for (capped), else retry's capped exponential backoff
// with equal jitter.
func (n *Notifier) backoff(attempt int, o outcome) time.Duration {
	if o.hasRetryAfter {
		return min(o.retryAfter, n.retry.MaxRetryAfter)
	}
	return retry.Backoff{Min: n.retry.Backoff, Max: n.retry.MaxBackoff}.Delay(attempt - 1)
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// withoutURL drops the request URL (and its query string) that the
// http.Client puts in its errors.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// redact returns the callback URL without user information, query and
// fragment, for the log.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
