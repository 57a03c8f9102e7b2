package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/retry"
)

// Store is what the reaper needs of the store.
type Store interface {
	NextDeadline(ctx context.Context) (time.Time, bool, error)
	ClaimExpired(ctx context.Context, now time.Time, limit int) ([]store.Expiry, error)
}

var _ Store = (*store.Store)(nil)

// Config configures an Agent.
type Config struct {
	// MaxPoll is the longest the agent sleeps between two peeks at the
	// earliest deadline: it bounds how late an expiry whose deadline was set
	// during the sleep is noticed. Zero value: 200 ms.
	MaxPoll time.Duration
	// Coalesce is the shortest time between two rounds of claims: when
	// deadlines fall due one after the other (a mass expiry), those within
	// Coalesce of each other are claimed together instead of one round trip
	// per millisecond. It adds at most Coalesce to an expiry's latency and
	// must not exceed MaxPoll. Zero value: 20 ms; negative: no coalescing.
	Coalesce time.Duration
	// Batch is how many deadlines one claim takes at most. Zero value: 500.
	Batch int
	// MinBackoff and MaxBackoff bound the delay after a failed peek or
	// claim (doubling with jitter for consecutive failures). Zero values:
	// 50 ms and 2 s.
	MinBackoff, MaxBackoff time.Duration
}

// Deps are the Agent's dependencies.
type Deps struct {
	// Store holds the deadlines. Required.
	Store Store
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Now is the clock the claims use; it must agree with the clock of the
	// store that records heartbeats. Zero value: time.Now.
	Now func() time.Time
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
}

// Stats are the Agent's counters since New.
type Stats struct {
	// Claimed counts the expired deadlines this agent took off the liveness
	// set (suspended or not). Across replicas each expiry is claimed once.
	Claimed uint64
	// Suspended counts the services this agent turned from ACTIVE to
	// SUSPENDED.
	Suspended uint64
	// Errors counts failed peeks and claims (each followed by a backoff).
	Errors uint64
	// LastTick is when the agent last talked to Redis successfully; zero
	// before the first time.
	LastTick time.Time
}

// Agent is the reaper. Run it once.
type Agent struct {
	cfg   Config
	store Store
	log   *slog.Logger
	now   func() time.Time

	claimed, suspended, errs atomic.Uint64
	lastTick                 atomic.Int64 // unix nanos; 0 = never
	lastClaim                time.Time    // Run's goroutine only
	lateness                 prometheus.Histogram
}

// New checks cfg, fills its zero values and returns an Agent.
func New(cfg Config, deps Deps) (*Agent, error) {
	if deps.Store == nil {
		return nil, errors.New("reaper: Deps.Store is required")
	}
	if cfg.MaxPoll == 0 {
		cfg.MaxPoll = 200 * time.Millisecond
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = min(20*time.Millisecond, cfg.MaxPoll)
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	switch {
	case cfg.MaxPoll < 0, cfg.Batch < 0:
		return nil, fmt.Errorf("reaper: MaxPoll and Batch must be positive")
	case cfg.Coalesce > cfg.MaxPoll:
		return nil, fmt.Errorf("reaper: Coalesce %s exceeds MaxPoll %s", cfg.Coalesce, cfg.MaxPoll)
	case cfg.MinBackoff < 0, cfg.MaxBackoff < cfg.MinBackoff:
		return nil, fmt.Errorf("reaper: backoffs must be positive and MaxBackoff >= MinBackoff")
	}
	a := &Agent{cfg: cfg, store: deps.Store, log: deps.Log, now: deps.Now}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.lateness = a.registerMetrics(deps.Metrics)
	return a, nil
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	s := Stats{Claimed: a.claimed.Load(), Suspended: a.suspended.Load(), Errors: a.errs.Load()}
	if n := a.lastTick.Load(); n != 0 {
		s.LastTick = time.Unix(0, n)
	}
	return s
}

// Run reaps until ctx ends, then returns nil. It holds nothing that needs
// releasing: a claim cut off by the end of ctx either ran in full in Redis
// or not at all.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("reaper starting", "max_poll", a.cfg.MaxPoll.String(), "coalesce", a.cfg.Coalesce.String(), "batch", a.cfg.Batch)
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	for failures := 0; ctx.Err() == nil; {
		err := a.tick(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			a.errs.Add(1)
			d := backoff.Delay(failures)
			failures++
			a.log.Warn("reaper tick failed", "err", err, "failures", failures, "retry_in", d.String())
			retry.Sleep(ctx, d)
		default:
			if failures > 0 {
				a.log.Info("reaper recovered", "failures", failures)
			}
			failures = 0
		}
	}
	s := a.Stats()
	a.log.Info("reaper stopped", "claimed", s.Claimed, "suspended", s.Suspended, "errors", s.Errors)
	return nil
}

// tick peeks at the earliest deadline, sleeps until it (at most MaxPoll)
// and, if it is due by then, claims batches until one comes back short.
func (a *Agent) tick(ctx context.Context) error {
	next, ok, err := a.store.NextDeadline(ctx)
	if err != nil {
		return err
	}
	a.touch()
	now := a.now()
	wait, due := a.cfg.MaxPoll, false
	if ok {
		if d := next.Sub(now); d <= wait {
			wait, due = d, true
			if c := a.lastClaim.Add(a.cfg.Coalesce).Sub(now); c > wait {
				wait = c
			}
		}
	}
	if wait > 0 && !retry.Sleep(ctx, wait) {
		return nil
	}
	if !due {
		return nil // peek again: an earlier deadline may have been set meanwhile
	}
	a.lastClaim = a.now()
	for {
		at := a.now()
		got, err := a.store.ClaimExpired(ctx, at, a.cfg.Batch)
		if err != nil {
			return err
		}
		a.touch()
		n := 0
		for _, e := range got {
			a.lateness.Observe(at.Sub(e.Deadline).Seconds())
			if e.Suspended() {
				n++
				a.log.Debug("service suspended", "id", e.ID, "deadline", e.Deadline, "rev", e.Rev)
			}
		}
		a.claimed.Add(uint64(len(got)))
		a.suspended.Add(uint64(n))
		if n > 0 {
			a.log.Info("suspended services that missed their heartbeat", "count", n, "claimed", len(got))
		}
		if len(got) < a.cfg.Batch || ctx.Err() != nil {
			return nil
		}
	}
}

func (a *Agent) touch() { a.lastTick.Store(a.now().UnixNano()) }
