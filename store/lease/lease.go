// Package lease keeps a store lease (store.AcquireLease) renewed while its
// holder works, and tells the holder when to stop: when another holder has
// the lease, or when the lease could not be renewed and may expire soon.
//
// The relay and the UPF agent hold one lease each so that only one replica
// works at a time; both take it themselves and hand the renewal to a
// Keeper for as long as they work.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kmep-io/kmep/store"
)

// Store is the part of the store a Keeper uses.
type Store interface {
	// AcquireLease takes or renews lease name for holder for ttl; false
	// when another holder has it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

var _ Store = (*store.Store)(nil)

var (
	// ErrLost: another holder has the lease.
	ErrLost = errors.New("lease held by another holder")
	// ErrExpiring: the lease was not renewed in time and may expire
	// within the Keeper's Margin.
	ErrExpiring = errors.New("lease not renewed in time")
	// ErrConfig: Keep was called without a Store, Name, Holder, positive
	// TTL or stop function.
	ErrConfig = errors.New("lease: Keeper needs a Store, a Name, a Holder, a positive TTL and a stop function")
)

// Keeper renews one lease.
type Keeper struct {
	// Store holds the lease. Required.
	Store Store
	// Name is the lease's name. Required.
	Name string
	// Holder is who holds it. Required.
	Holder string
	// TTL is the lease's time to live: it is renewed every third of it,
	// each renewal bounded by a third of it. Required (positive).
	TTL time.Duration
	// Margin is how long before the lease could expire Keep gives up: at
	// TTL - Margin after the start of the last call that took or renewed
	// it. Zero value: none (Keep gives up at TTL, when another holder may
	// already have taken the lease).
	Margin time.Duration
	// Log gets the failed renewals. Zero value: slog.Default().
	Log *slog.Logger
}

// Keep renews the lease, which the call that started at acquired took,
// every third of the TTL, each call bounded by a third of the TTL, until
// ctx ends (then it returns nil), another holder has the lease (ErrLost),
// or it was not renewed before TTL - Margin after the start of the last
// call that took or renewed it (ErrExpiring; decided on time even while a
// renewal call hangs). Failed renewals are logged and retried at the next
// tick. On ErrLost or ErrExpiring, Keep calls stop with it at once (the
// holder stops working), then waits for its renewal call in flight, if
// any, and returns it: once Keep has returned, no renewal lands, so the
// lease the holder releases stays released.
func (k Keeper) Keep(ctx context.Context, acquired time.Time, stop func(reason error)) error {
	if k.Store == nil || k.Name == "" || k.Holder == "" || k.TTL <= 0 || stop == nil {
		return ErrConfig
	}
	log := k.Log
	if log == nil {
		log = slog.Default()
	}
	rctx, cancel := context.WithCancel(ctx)
	results := make(chan renewal)
	var renewer sync.WaitGroup
	renewer.Go(func() { k.renew(rctx, results) })
	reason := k.watch(ctx, acquired, results, log)
	if reason != nil {
		stop(reason)
	}
	cancel()
	renewer.Wait()
	return reason
}

// renewal is the outcome of one renewal call that started at start.
type renewal struct {
	start time.Time
	held  bool
	err   error
}

// renew renews the lease every third of the TTL and sends each outcome on
// results until ctx ends.
func (k Keeper) renew(ctx context.Context, results chan<- renewal) {
	tick := time.NewTicker(k.TTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r := renewal{start: time.Now()}
		cctx, cancel := context.WithTimeout(ctx, k.TTL/3)
		r.held, r.err = k.Store.AcquireLease(cctx, k.Name, k.Holder, k.TTL)
		cancel()
		select {
		case results <- r:
		case <-ctx.Done():
			return
		}
	}
}

// watch follows the renewals until ctx ends (nil) or the lease is lost or
// may expire (the reason).
func (k Keeper) watch(ctx context.Context, acquired time.Time, results <-chan renewal, log *slog.Logger) error {
	safe := k.TTL - k.Margin
	expire := time.NewTimer(time.Until(acquired.Add(safe)))
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-expire.C:
			return fmt.Errorf("lease %s: %w", k.Name, ErrExpiring)
		case r := <-results:
			switch {
			case r.err != nil:
				if ctx.Err() == nil {
					log.Warn("lease renewal failed", "lease", k.Name, "err", r.err)
				}
			case !r.held:
				return fmt.Errorf("lease %s: %w", k.Name, ErrLost)
			default:
				expire.Reset(time.Until(r.start.Add(safe)))
			}
		}
	}
}
