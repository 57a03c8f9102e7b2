package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/lease"
)

// term is one period of leadership: its partitions, its acknowledger and
// the set of entries it has in flight (read and not yet acknowledged).
type term struct {
	a     *Agent
	parts []*part
	acks  chan string

	mu       sync.Mutex
	inflight map[string]struct{}
}

type item struct {
	id string
	// c is the change; its event is built by the partition's worker, so
	// that the one reader does only what ordering needs.
	c       store.Change
	subject string
	// bulk: the change is a bulk change (store.Change.Bulk, and the lane is
	// on); lane: the item was queued in the bulk lane (bulk, or behind bulk
	// items of its subject).
	bulk, lane bool
}

// lead relays while the lease taken at start holds, then tears the term
// down: the partitions' queues are dropped (their entries stay pending),
// and what was published is acknowledged.
func (a *Agent) lead(ctx context.Context, start time.Time) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &term{a: a, parts: make([]*part, a.cfg.Workers),
		acks: make(chan string, a.cfg.Workers*a.cfg.QueueSize+int(a.cfg.Batch)), inflight: map[string]struct{}{}}

	// The acknowledger outlives the term's context by a short flush.
	actx, acancel := context.WithCancel(context.WithoutCancel(ctx))
	defer acancel()
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); t.ackLoop(actx) }()

	var wg sync.WaitGroup
	wg.Go(func() { a.keepLease(tctx, cancel, start) })
	for i := range t.parts {
		t.parts[i] = newPart(a.cfg.QueueSize, a.cfg.BulkQueueSize)
		wg.Go(func() { t.work(tctx, t.parts[i]) })
	}
	t.read(tctx)
	cancel()
	wg.Wait()
	a.leader.Store(false)
	close(t.acks)
	flush := time.AfterFunc(2*time.Second, acancel)
	defer flush.Stop()
	<-ackDone
}

// keepLease renews the lease every third of its TTL and cancels the term
// when the lease is lost, or when it could not be renewed and would expire
// within a fifth of its TTL (before any other relay can take it).
func (a *Agent) keepLease(ctx context.Context, cancel context.CancelFunc, start time.Time) {
	defer cancel()
	k := lease.Keeper{Store: a.store, Name: LeaseName, Holder: a.cfg.Holder, TTL: a.cfg.LeaseTTL,
		Margin: a.cfg.LeaseTTL / 5, Log: a.log}
	_ = k.Keep(ctx, start, func(reason error) {
		if errors.Is(reason, lease.ErrLost) {
			a.log.Warn("lease taken by another relay")
		} else {
			a.log.Warn("lease could not be renewed: stepping down before it expires")
		}
		cancel()
	})
}

// read feeds the partitions until ctx ends: first the group's pending
// entries and the overdue events, then new entries, with a check every
// PendingCheck.
func (t *term) read(ctx context.Context) {
	a := t.a
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	failures := 0
	fail := func(what string, err error) {
		if ctx.Err() != nil {
			return
		}
		a.log.Warn(what, "err", err)
		retry.Sleep(ctx, backoff.Delay(failures))
		failures++
	}
	needGroup, first := true, true
	var lastCheck time.Time
	for ctx.Err() == nil {
		if needGroup {
			// Creates the group on the first start, and again after a Redis
			// that lost its data came back.
			if err := a.store.EnsureGroup(ctx, Group, "$"); err != nil {
				fail("create consumer group", err)
				continue
			}
			needGroup = false
			a.leader.Store(true)
		}
		if time.Since(lastCheck) >= a.cfg.PendingCheck || first {
			if err := t.check(ctx, first); err != nil {
				needGroup = true
				fail("pending check", err)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			lastCheck, first, a.led = time.Now(), false, true
		}
		chs, err := a.store.ReadGroup(ctx, Group, Consumer, a.cfg.Batch, a.cfg.Block, false)
		if err != nil {
			needGroup = true
			fail("read changes", err)
			continue
		}
		failures = 0
		if ctx.Err() != nil {
			return // no longer the leader: what was just read stays pending
		}
		if !t.dispatch(ctx, chs, true) {
			return
		}
	}
}

// claimPage is how many overdue events one claim takes.
const claimPage = 1000

// check publishes what no relay has in flight: the group's pending entries
// (read by a predecessor, or by this relay before a step-down, and never
// accepted by the sink), then the events overdue for redelivery (all
// pending ones at the Agent's first check with RedeliverOnStart). It
// returns early, without an error, when ctx ends.
func (t *term) check(ctx context.Context, first bool) error {
	a := t.a
	// The group's pending list holds exactly what is in flight here plus
	// what a predecessor left; nothing is read concurrently with this.
	known := t.snapshot()
	chs, err := a.store.ReadGroup(ctx, Group, Consumer, 0, 0, true)
	if err != nil {
		return fmt.Errorf("read pending entries: %w", err)
	}
	var left []store.Change
	for _, c := range chs {
		if _, ok := known[c.StreamID]; !ok {
			left = append(left, c)
		}
	}
	if !t.dispatch(ctx, left, true) {
		return nil
	}
	if n := len(left); n > 0 && first {
		a.log.Info("resuming pending entries", "count", n)
	} else if n > 0 {
		a.orphans.Add(uint64(n))
		a.log.Warn("pending entries no relay had in flight", "count", n)
	}

	cutoff := time.Now().Add(-a.cfg.Redelivery)
	if first && !a.led && a.cfg.RedeliverOnStart {
		cutoff = time.Now().Add(-time.Millisecond)
	}
	total := 0
	for {
		// Taken before the claim: only this goroutine adds to the in-flight
		// set, so what the claim returns and the snapshot lacks is not in
		// flight. (Taken after it, the snapshot would lack an event that was
		// published and acknowledged during the claim, and it would be
		// published twice.)
		known = t.snapshot()
		due, gone, err := a.store.ClaimOverdue(ctx, cutoff, claimPage)
		if err != nil {
			return fmt.Errorf("claim overdue events: %w", err)
		}
		if len(gone) > 0 {
			a.gone.Add(uint64(len(gone)))
			a.log.Error("pending events no longer in the stream: they cannot be published again", "count", len(gone), "first", gone[0])
		}
		var redo []store.Change
		for _, c := range due {
			if _, ok := known[c.StreamID]; !ok {
				redo = append(redo, c)
			}
		}
		if !t.dispatch(ctx, redo, false) {
			return nil
		}
		a.redelivered.Add(uint64(len(redo)))
		total += len(redo)
		if len(due)+len(gone) < claimPage {
			break
		}
	}
	if total > 0 {
		a.log.Warn("publishing again events their consumer has not settled", "count", total,
			"redelivery_timeout", a.cfg.Redelivery, "at_start", first && a.cfg.RedeliverOnStart)
	}
	return nil
}

func (t *term) snapshot() map[string]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]struct{}, len(t.inflight))
	for id := range t.inflight {
		m[id] = struct{}{}
	}
	return m
}

// dispatch queues each change on its subject's partition, in its lane, or
// for acknowledgement when it is not published. With hold, the events are
// first recorded as pending (store.AddPending), so that no consumer can
// settle one before it is. It reports false when ctx ended first.
func (t *term) dispatch(ctx context.Context, chs []store.Change, hold bool) bool {
	if len(chs) == 0 {
		return true
	}
	t.mu.Lock()
	for _, c := range chs {
		t.inflight[c.StreamID] = struct{}{}
	}
	t.mu.Unlock()
	items := make([]item, 0, len(chs))
	for _, c := range chs {
		subject, ok := events.Subject(c)
		if !ok {
			t.a.unpublished.Add(1)
			if !t.ack(ctx, c.StreamID) {
				return false
			}
			continue
		}
		items = append(items, item{id: c.StreamID, c: c, subject: subject, bulk: c.Bulk && !t.a.cfg.FIFO})
	}
	if hold && !t.hold(ctx, items) {
		return false
	}
	for _, it := range items {
		if !t.parts[partition(it.subject, len(t.parts))].put(ctx, it) {
			return false
		}
	}
	return true
}

// hold records items as pending, retrying while Redis is away. It reports
// false when ctx ended first.
func (t *term) hold(ctx context.Context, items []item) bool {
	if len(items) == 0 {
		return true
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	backoff := retry.Backoff{Min: t.a.cfg.MinBackoff, Max: t.a.cfg.MaxBackoff}
	for attempt := 0; ; attempt++ {
		err := t.a.store.AddPending(ctx, ids...)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		t.a.log.Warn("record events as pending", "count", len(ids), "err", err)
		if !retry.Sleep(ctx, backoff.Delay(attempt)) {
			return false
		}
	}
}

func partition(subject string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject))
	return int(h.Sum32() % uint32(n))
}

func (t *term) ack(ctx context.Context, id string) bool {
	select {
	case t.acks <- id:
		return true
	case <-ctx.Done():
		return false
	}
}

// work publishes one partition's events, live ones first, in order per
// subject. A failed send is retried until it succeeds or the term ends;
// nothing behind it moves.
func (t *term) work(ctx context.Context, p *part) {
	a := t.a
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	for {
		it, ok := p.take(ctx)
		if !ok {
			return
		}
		e, ok, err := events.FromChange(it.c)
		if err != nil || !ok {
			if !t.unpublishable(ctx, p, it, err) {
				return
			}
			continue
		}
		if !t.publish(ctx, it, e, backoff) {
			return
		}
		p.done(it)
		if !t.ack(ctx, it.id) {
			return
		}
	}
}

// publish sends e until the sink accepts it, in one span "relay publish":
// a child of the change's trace context (the request that made it; a new
// trace when it has none), whose own context e carries on in its
// traceparent extension. It reports false when ctx ended first.
func (t *term) publish(ctx context.Context, it item, e cloudevents.Event, backoff retry.Backoff) bool {
	a := t.a
	pctx, _ := events.TraceContext(ctx, e)
	pctx, span := a.tracer.Start(pctx, "relay publish", oteltrace.WithSpanKind(oteltrace.SpanKindProducer),
		oteltrace.WithAttributes(attribute.String("cloudevents.event_id", e.ID()), attribute.String("cloudevents.event_type", e.Type()),
			attribute.String("cloudevents.event_subject", e.Subject()), attribute.Bool("kmep.bulk", it.bulk)))
	defer span.End()
	events.SetTraceContext(pctx, &e)
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithTimeout(pctx, a.cfg.SendTimeout)
		res := a.sender.Send(sctx, e)
		cancel()
		if cloudevents.IsACK(res) {
			a.published.Add(1)
			a.observeLag(it.id)
			return true
		}
		if ctx.Err() != nil {
			span.SetStatus(codes.Error, "relay stopped before the sink accepted the event")
			return false
		}
		a.sendFailures.Add(1)
		d := backoff.Delay(attempt)
		span.AddEvent("publish failed", oteltrace.WithAttributes(attribute.Int("attempt", attempt+1),
			attribute.String("error", fmt.Sprint(res))))
		a.log.Warn("publish failed: retrying", "id", it.id, "type", e.Type(), "subject", it.subject,
			"attempt", attempt+1, "retry_in", d, "err", res)
		if !retry.Sleep(ctx, d) {
			span.SetStatus(codes.Error, "relay stopped before the sink accepted the event")
			return false
		}
	}
}

// unpublishable acknowledges an entry whose event cannot be built (err;
// events.Subject and FromChange disagreeing is a bug, reported the same
// way) and settles it: it was held as pending, and publishing it again
// would fail again. It reports false when ctx ended first.
func (t *term) unpublishable(ctx context.Context, p *part, it item, err error) bool {
	a := t.a
	if err == nil {
		err = errors.New("not an event, although it has a subject")
	}
	a.malformed.Add(1)
	a.unpublished.Add(1)
	a.log.Error("change cannot be published: acknowledging it", "id", it.id, "kind", it.c.Kind, "change", it.c.Type, "err", err)
	if serr := a.store.Settle(ctx, it.id); serr != nil && ctx.Err() == nil {
		// It stays pending: a later claim finds it malformed again.
		a.log.Warn("settle unpublishable change", "id", it.id, "err", serr)
	}
	p.done(it)
	return t.ack(ctx, it.id)
}

// ackLoop acknowledges ids in batches, retrying while Redis is away, until
// t.acks is closed and drained or ctx ends. An id leaves the in-flight set
// only once its XACK succeeded.
func (t *term) ackLoop(ctx context.Context) {
	a := t.a
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	var batch []string
	for {
		if len(batch) == 0 {
			id, ok := <-t.acks
			if !ok {
				return
			}
			batch = append(batch, id)
		}
	drain:
		for len(batch) < 512 {
			select {
			case id, ok := <-t.acks:
				if !ok {
					break drain
				}
				batch = append(batch, id)
			default:
				break drain
			}
		}
		for attempt := 0; ; attempt++ {
			err := a.store.AckPublished(ctx, Group, batch...)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				a.log.Warn("entries published but not acknowledged: they will be published again", "count", len(batch), "err", err)
				return
			}
			a.log.Warn("acknowledge", "count", len(batch), "err", err)
			if !retry.Sleep(ctx, backoff.Delay(attempt)) {
				a.log.Warn("entries published but not acknowledged: they will be published again", "count", len(batch))
				return
			}
		}
		t.mu.Lock()
		for _, id := range batch {
			delete(t.inflight, id)
		}
		t.mu.Unlock()
		batch = batch[:0]
	}
}
