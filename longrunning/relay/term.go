package relay

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/longrunning/lease"
	"github.com/kmep-io/kmep/longrunning/retry"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/events"
)

// term is one period of leadership: its partitions, its acknowledger and
// the set of entries it has in flight (read and not yet acknowledged).
type term struct {
	a     *Agent
	parts []chan item
	acks  chan string

	mu       sync.Mutex
	inflight map[string]struct{}
}

type item struct {
	id string
	e  cloudevents.Event
}

// lead relays while the lease taken at start holds, then tears the term
// down: the partitions' queues are dropped (their entries stay pending),
// and what was published is acknowledged.
func (a *Agent) lead(ctx context.Context, start time.Time) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &term{a: a, parts: make([]chan item, a.cfg.Workers),
		acks: make(chan string, a.cfg.Workers*a.cfg.QueueSize+int(a.cfg.Batch)), inflight: map[string]struct{}{}}

	// The acknowledger outlives the term's context by a short flush.
	actx, acancel := context.WithCancel(context.WithoutCancel(ctx))
	defer acancel()
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); t.ackLoop(actx) }()

	var wg sync.WaitGroup
	wg.Go(func() { a.keepLease(tctx, cancel, start) })
	for i := range t.parts {
		t.parts[i] = make(chan item, a.cfg.QueueSize)
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
// entries, then new ones, with a pending check every PendingCheck.
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
			// The pending list holds exactly what is in flight here plus what
			// a predecessor left; nothing is read concurrently with this.
			known := t.snapshot()
			chs, err := a.store.ReadGroup(ctx, Group, Consumer, 0, 0, true)
			if err != nil {
				needGroup = true
				fail("read pending entries", err)
				continue
			}
			lastCheck = time.Now()
			n := 0
			for _, c := range chs {
				if _, ok := known[c.StreamID]; ok {
					continue
				}
				if !t.dispatch(ctx, c) {
					return
				}
				n++
			}
			if n > 0 && first {
				a.log.Info("resuming pending entries", "count", n)
			} else if n > 0 {
				a.orphans.Add(uint64(n))
				a.log.Warn("pending entries no relay had in flight", "count", n)
			}
			first = false
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
		for _, c := range chs {
			if !t.dispatch(ctx, c) {
				return
			}
		}
	}
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

// dispatch queues c on its subject's partition, or for acknowledgement
// when it is not published. It reports false when ctx ended first.
func (t *term) dispatch(ctx context.Context, c store.Change) bool {
	t.mu.Lock()
	t.inflight[c.StreamID] = struct{}{}
	t.mu.Unlock()
	e, ok, err := events.FromChange(c)
	if err != nil || !ok {
		if err != nil {
			t.a.malformed.Add(1)
			t.a.log.Error("change cannot be published: acknowledging it", "id", c.StreamID, "kind", c.Kind, "change", c.Type, "err", err)
		}
		t.a.unpublished.Add(1)
		return t.ack(ctx, c.StreamID)
	}
	select {
	case t.parts[partition(e.Subject(), len(t.parts))] <- item{id: c.StreamID, e: e}:
		return true
	case <-ctx.Done():
		return false
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

// work publishes one partition's events in order. A failed send is
// retried until it succeeds or the term ends; nothing behind it moves.
func (t *term) work(ctx context.Context, in <-chan item) {
	a := t.a
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	for {
		var it item
		select {
		case <-ctx.Done():
			return
		case it = <-in:
		}
		for attempt := 0; ; attempt++ {
			sctx, cancel := context.WithTimeout(ctx, a.cfg.SendTimeout)
			res := a.sender.Send(sctx, it.e)
			cancel()
			if cloudevents.IsACK(res) {
				a.published.Add(1)
				break
			}
			if ctx.Err() != nil {
				return
			}
			a.sendFailures.Add(1)
			d := backoff.Delay(attempt)
			a.log.Warn("publish failed: retrying", "id", it.id, "type", it.e.Type(), "subject", it.e.Subject(),
				"attempt", attempt+1, "retry_in", d, "err", res)
			if !retry.Sleep(ctx, d) {
				return
			}
		}
		if !t.ack(ctx, it.id) {
			return
		}
	}
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
			err := a.store.Ack(ctx, Group, batch...)
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
