package upfagent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/lease"
)

// Driver applies traffic rules to one data plane. Apply creates or
// replaces a rule (prev is the handle recorded for the version it
// replaces, nil when there is none) and must be idempotent; Remove takes a
// rule out. A rule the driver cannot express is a *dataplane.UnsupportedError.
type Driver interface {
	Apply(ctx context.Context, r dataplane.Rule, prev dataplane.Handle) (dataplane.Handle, error)
	Remove(ctx context.Context, a dataplane.Applied) error
}

var _ Driver = dataplane.None{}

// Forgetter is a Driver that keeps its own view of the data plane: the
// agent calls Forget at the start of every resync, so that the driver
// reads the data plane again (after a restart of VPP, or after another
// agent held the lease).
type Forgetter interface{ Forget() }

// Sweeper is a Driver that can find what it created in the data plane:
// at the end of every resync the agent calls Sweep with the rules it
// holds as (possibly) in the data plane, and the driver removes the rest
// of its own (left by an agent that lost its records).
type Sweeper interface {
	Sweep(ctx context.Context, held []dataplane.Applied) (removed int, err error)
}

// Batcher is a Driver that makes many changes in one data-plane
// transaction: the agent hands it each reconcile batch in one call (Workers
// does not apply) instead of calling Apply and Remove per rule. Batch
// returns one Result per Op, in order; an Op that fails fails alone (the
// others of the batch still take effect or not on their own).
type Batcher interface {
	Batch(ctx context.Context, ops []dataplane.Op) []dataplane.Result
}

// Auditor is a Driver that can read which rules the data plane holds: at
// every resync, after Forget, the agent asks it which of the rules recorded
// as applied the data plane lacks (or holds damaged, e.g. out of order),
// and applies those again although their records say they are in place.
type Auditor interface {
	Missing(ctx context.Context, held []dataplane.Applied) ([]dataplane.Applied, error)
}

// Store is what the agent needs of the store.
type Store interface {
	AllTrafficRules(ctx context.Context) ([]store.Rule, error)
	GetTrafficRules(ctx context.Context, keys []store.RuleKey) ([]*store.Rule, error)
	RuleStatuses(ctx context.Context, upf string, keys []store.RuleKey) ([]*store.RuleStatus, error)
	AllRuleStatuses(ctx context.Context, upf string) ([]store.RuleStatus, error)
	PutRuleStatuses(ctx context.Context, upf, lease, holder string, put []store.RuleStatus, del []store.RuleKey) error
	AllocateMany(ctx context.Context, space string, size uint32, keys ...string) ([]store.Allocation, error)
	ReleaseMany(ctx context.Context, space string, keys ...string) ([]uint32, error)
	Allocations(ctx context.Context, space string) (map[string]uint32, error)
	EnsureGroup(ctx context.Context, group, from string) error
	ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]store.Change, error)
	Ack(ctx context.Context, group string, ids ...string) error
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

var _ Store = (*store.Store)(nil)

// Config configures an Agent.
type Config struct {
	// UPF names the data plane this agent drives; agents with the same UPF
	// share the lease, the consumer group, the index space and the status
	// records. No ':'. Zero value: "upf".
	UPF string
	// AgentID identifies this agent as the lease holder. Zero value: the
	// host name, the process id and a random suffix.
	AgentID string
	// IndexSpace is the number of data-plane rule indexes (1..IndexSpace).
	// Zero value: 65535.
	IndexSpace uint32
	// LeaseTTL is the HA lease's time to live. Zero value: 5 s.
	LeaseTTL time.Duration
	// Batch is how many changes one read takes and how many rules one
	// reconcile step of the change stream handles. Zero value: 256.
	Batch int
	// ResyncBatch is how many rules one reconcile step of a resync
	// handles: one index allocation, one status write and, for a Batcher,
	// one data-plane transaction. Fewer, bigger transactions cost less
	// (the kernel rebuilds every nftables chain a commit touches). Zero
	// value: 2048.
	ResyncBatch int
	// Workers is how many data-plane calls run at once. Zero value: 4.
	Workers int
	// Block is the longest wait for new changes. Zero value: 1 s.
	Block time.Duration
	// ApplyTimeout bounds one data-plane call. Zero value: 5 s.
	ApplyTimeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay of a rule after a
	// data-plane error and of the agent after a Redis error (doubling,
	// with jitter). Zero values: 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
}

// Deps are the Agent's dependencies.
type Deps struct {
	// Store holds rules, statuses, indexes, the stream and the lease. Required.
	Store Store
	// Driver is the data plane. Required.
	Driver Driver
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Reset, when set, receives a value whenever the data plane lost its
	// state (VPP restarted and the connection came back): the agent then
	// reapplies every rule, ignoring what it recorded. Zero value: never.
	Reset <-chan struct{}
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
}

// Stats are the Agent's counters since New.
type Stats struct {
	// Applied counts successful applies, Removed successful removals.
	Applied, Removed uint64
	// Failed counts failed data-plane attempts (Unsupported included),
	// Unsupported the rules the driver could not express.
	Failed, Unsupported uint64
	// Resyncs counts full resynchronisations, Changes the stream entries
	// handled, StoreErrors the Redis failures that ended an active period.
	Resyncs, Changes, StoreErrors uint64
	// Active reports whether this agent holds the lease.
	Active bool
}

// Agent is the UPF agent. Run it once.
type Agent struct {
	cfg    Config
	st     Store
	driver Driver
	log    *slog.Logger
	reset  <-chan struct{}

	lease, group, space string

	applied, removed, failed, unsupported atomic.Uint64
	resyncs, changes, storeErrs           atomic.Uint64
	active                                atomic.Bool

	// Owned by Run's goroutine.
	retry map[store.RuleKey]retryState
	// records are the status records during a resync (nil otherwise): the
	// ones it read, kept up to date by every status write it makes, so that
	// its sweep need not read them all again.
	records map[store.RuleKey]*store.RuleStatus
}

type retryState struct {
	at       time.Time
	attempts int
}

// errLeaseLost ends an active period.
var errLeaseLost = errors.New("upfagent: lease lost")

// New checks cfg, fills its zero values and returns an Agent.
func New(cfg Config, deps Deps) (*Agent, error) {
	if deps.Store == nil || deps.Driver == nil {
		return nil, errors.New("upfagent: Deps.Store and Deps.Driver are required")
	}
	if cfg.UPF == "" {
		cfg.UPF = "upf"
	}
	if cfg.AgentID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.AgentID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.LeaseTTL, 5*time.Second)
	def(&cfg.Block, time.Second)
	def(&cfg.ApplyTimeout, 5*time.Second)
	def(&cfg.MinBackoff, 100*time.Millisecond)
	def(&cfg.MaxBackoff, 10*time.Second)
	if cfg.IndexSpace == 0 {
		cfg.IndexSpace = 65535
	}
	if cfg.Batch == 0 {
		cfg.Batch = 256
	}
	if cfg.ResyncBatch == 0 {
		cfg.ResyncBatch = 2048
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	switch {
	case !validName(cfg.UPF):
		return nil, fmt.Errorf("upfagent: UPF %q must be non-empty without ':'", cfg.UPF)
	case cfg.LeaseTTL < 30*time.Millisecond:
		return nil, fmt.Errorf("upfagent: LeaseTTL %s is under 30ms", cfg.LeaseTTL)
	case cfg.Batch < 0, cfg.ResyncBatch < 0, cfg.Workers < 0, cfg.Block < 0, cfg.ApplyTimeout < 0:
		return nil, errors.New("upfagent: Batch, ResyncBatch, Workers, Block and ApplyTimeout must be positive")
	case cfg.MinBackoff < 0, cfg.MaxBackoff < cfg.MinBackoff:
		return nil, errors.New("upfagent: backoffs must be positive and MaxBackoff >= MinBackoff")
	case cfg.IndexSpace > store.MaxIndexSpace:
		return nil, fmt.Errorf("upfagent: IndexSpace exceeds %d", uint32(store.MaxIndexSpace))
	}
	a := &Agent{cfg: cfg, st: deps.Store, driver: deps.Driver, log: deps.Log, reset: deps.Reset,
		lease: "upfagent:" + cfg.UPF, group: "upfagent:" + cfg.UPF, space: "upf:" + cfg.UPF}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("upf", cfg.UPF, "agent", cfg.AgentID)
	a.registerMetrics(deps.Metrics)
	return a, nil
}

func validName(s string) bool {
	for _, c := range s {
		if c == ':' {
			return false
		}
	}
	return s != ""
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	return Stats{Applied: a.applied.Load(), Removed: a.removed.Load(), Failed: a.failed.Load(),
		Unsupported: a.unsupported.Load(), Resyncs: a.resyncs.Load(), Changes: a.changes.Load(),
		StoreErrors: a.storeErrs.Load(), Active: a.active.Load()}
}

// Run drives the data plane until ctx ends, then releases the lease if it
// holds it and returns nil. Redis and data-plane failures are retried.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("upf agent starting", "lease_ttl", a.cfg.LeaseTTL.String(), "index_space", a.cfg.IndexSpace)
	poll := a.cfg.LeaseTTL / 3
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	failures := 0
	for ctx.Err() == nil {
		ok, err := a.st.AcquireLease(ctx, a.lease, a.cfg.AgentID, a.cfg.LeaseTTL)
		if err != nil {
			if ctx.Err() == nil {
				d := backoff.Delay(failures)
				failures++
				a.log.Warn("upf agent cannot reach the store", "err", err, "retry_in", d.String())
				retry.Sleep(ctx, d)
			}
			continue
		}
		failures = 0
		if !ok {
			retry.Sleep(ctx, poll)
			continue
		}
		err = a.activePeriod(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errLeaseLost):
			a.log.Warn("upf agent lost its lease: standing by")
		default:
			a.storeErrs.Add(1)
			d := backoff.Delay(failures)
			failures++
			a.log.Warn("upf agent store failure: will resync", "err", err, "retry_in", d.String())
			retry.Sleep(ctx, d)
		}
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.st.ReleaseLease(rctx, a.lease, a.cfg.AgentID); err != nil {
		a.log.Warn("upf agent could not release its lease (it expires on its own)", "err", err)
	}
	s := a.Stats()
	a.log.Info("upf agent stopped", "applied", s.Applied, "removed", s.Removed, "failed", s.Failed, "resyncs", s.Resyncs)
	return nil
}

// activePeriod runs while the lease is held (acquired at the time
// acquired): resync, then the change stream. It returns errLeaseLost, a
// store error, or nil when ctx ends.
func (a *Agent) activePeriod(ctx context.Context, acquired time.Time) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.active.Store(true)
	defer a.active.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() { a.keepLease(actx, cancel, acquired) })
	a.log.Info("upf agent active")
	a.retry = map[store.RuleKey]retryState{}

	err := a.follow(actx)
	if c := context.Cause(actx); errors.Is(c, errLeaseLost) {
		return errLeaseLost
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// keepLease renews the lease every third of its TTL and cancels the
// active period once it is lost or could have expired (a tenth of its TTL
// before it would).
func (a *Agent) keepLease(ctx context.Context, cancel context.CancelCauseFunc, acquired time.Time) {
	k := lease.Keeper{Store: a.st, Name: a.lease, Holder: a.cfg.AgentID, TTL: a.cfg.LeaseTTL,
		Margin: a.cfg.LeaseTTL / 10, Log: a.log}
	stop := func(reason error) {
		if errors.Is(reason, lease.ErrExpiring) {
			a.log.Warn("upf agent could not renew its lease in time: stopping data-plane work")
		}
		cancel(errLeaseLost)
	}
	if err := k.Keep(ctx, acquired, stop); err != nil {
		cancel(errLeaseLost) // already done by stop, unless the Keeper was misconfigured
	}
}

// follow resyncs, then reconciles the rules of each batch of changes.
func (a *Agent) follow(ctx context.Context) error {
	if err := a.st.EnsureGroup(ctx, a.group, "$"); err != nil {
		return err
	}
	if err := a.resync(ctx, false); err != nil {
		return err
	}
	pending := true // first what a predecessor left unacknowledged
	for ctx.Err() == nil {
		select {
		case <-a.reset:
			a.log.Info("data plane reset: reapplying every rule")
			if err := a.resync(ctx, true); err != nil {
				return err
			}
		default:
		}
		if err := a.retryDue(ctx); err != nil {
			return err
		}
		block := a.cfg.Block
		if next, ok := a.nextRetry(); ok {
			block = min(block, max(time.Until(next), time.Millisecond))
		}
		chs, err := a.st.ReadGroup(ctx, a.group, "active", int64(a.cfg.Batch), block, pending)
		if err != nil {
			return err
		}
		if pending && len(chs) < a.cfg.Batch {
			pending = false
		}
		if len(chs) == 0 {
			continue
		}
		var keys []store.RuleKey
		seen := map[store.RuleKey]bool{}
		ids := make([]string, len(chs))
		for i, c := range chs {
			ids[i] = c.StreamID
			if c.Kind != store.KindTrafficRule {
				continue
			}
			k := store.RuleKey{AppInstanceID: c.AppInstanceID, ID: c.ID}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if err := a.reconcileKeys(ctx, keys, false); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil // not acknowledged: the next active agent rereads them
		}
		if err := a.st.Ack(ctx, a.group, ids...); err != nil {
			return err
		}
		a.changes.Add(uint64(len(chs)))
	}
	return nil
}

// resync reconciles every rule the store or the status records know, and
// releases indexes no rule holds. With force it reapplies every active
// rule, ignoring what was recorded (the data plane lost its state).
func (a *Agent) resync(ctx context.Context, force bool) error {
	began := time.Now()
	if f, ok := a.driver.(Forgetter); ok {
		f.Forget()
	}
	rs, err := a.st.AllTrafficRules(ctx)
	if err != nil {
		return err
	}
	desired := make(map[store.RuleKey]*store.Rule, len(rs))
	for i := range rs {
		desired[store.RuleKey{AppInstanceID: rs[i].AppInstanceID, ID: rs[i].ID}] = &rs[i]
	}
	sts, err := a.st.AllRuleStatuses(ctx, a.cfg.UPF)
	if err != nil {
		return err
	}
	allocs, err := a.st.Allocations(ctx, a.space)
	if err != nil {
		return err
	}
	applied := make(map[store.RuleKey]*store.RuleStatus, len(sts))
	for i := range sts {
		applied[sts[i].Key()] = &sts[i]
	}
	if err := a.audit(ctx, sts); err != nil {
		return err
	}
	a.records = maps.Clone(applied)
	defer func() { a.records = nil }()
	items := make([]item, 0, len(desired)+len(applied))
	for k, r := range desired {
		items = append(items, item{key: k, desired: r, applied: applied[k]})
	}
	for k, st := range applied {
		if desired[k] == nil {
			items = append(items, item{key: k, applied: st})
		}
	}
	// An index without a rule or a status: an agent died between allocating
	// and recording. The data plane may hold the rule: take it out, then
	// free the index.
	for key, idx := range allocs {
		k, ok := store.ParseRuleKey(key)
		if !ok || desired[k] != nil || applied[k] != nil {
			continue
		}
		items = append(items, item{key: k, applied: &store.RuleStatus{AppInstanceID: k.AppInstanceID, RuleID: k.ID,
			State: store.RuleFailed, Reason: "index without a status", Index: idx}, orphan: true})
	}
	for lo := 0; lo < len(items); lo += a.cfg.ResyncBatch {
		if err := a.reconcile(ctx, items[lo:min(lo+a.cfg.ResyncBatch, len(items))], force); err != nil {
			return err
		}
	}
	a.sweep(ctx)
	a.resyncs.Add(1)
	a.log.Info("upf agent resynchronised", "rules", len(desired), "records", len(applied), "force", force,
		"took", time.Since(began).Round(time.Millisecond).String())
	return nil
}

// audit asks an Auditor driver which of the rules recorded as applied the
// data plane lacks, and turns their records (in sts, not in the store)
// into transient failures, so that the resync applies them again. A
// data-plane failure is logged (the rules are audited again at the next
// resync); the context's end is returned.
func (a *Agent) audit(ctx context.Context, sts []store.RuleStatus) error {
	au, ok := a.driver.(Auditor)
	if !ok {
		return nil
	}
	var held []dataplane.Applied
	at := map[store.RuleKey]int{}
	for i := range sts {
		if sts[i].State == store.RuleApplied {
			at[sts[i].Key()] = i
			held = append(held, applied(sts[i].Key(), &sts[i]))
		}
	}
	if len(held) == 0 {
		return nil
	}
	missing, err := au.Missing(ctx, held)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Warn("data-plane audit failed: the records are trusted until the next resync", "err", err)
		return nil
	}
	for _, m := range missing {
		i, ok := at[store.RuleKey{AppInstanceID: m.AppInstanceID, ID: m.ID}]
		if !ok {
			continue
		}
		sts[i].State, sts[i].Reason, sts[i].Permanent = store.RuleFailed, "missing from the data plane", false
	}
	if len(missing) > 0 {
		a.log.Warn("rules recorded as applied are missing from the data plane: applying them again", "rules", len(missing))
	}
	return nil
}

// sweep lets a Sweeper driver remove what it holds for rules without a
// record that says the data plane may hold them (the resync's records: what
// it read and then wrote; only the lease holder writes them). A data-plane
// failure is logged (the next resync sweeps again).
func (a *Agent) sweep(ctx context.Context) {
	sw, ok := a.driver.(Sweeper)
	if !ok {
		return
	}
	var held []dataplane.Applied
	for k, st := range a.records {
		if mayHold(st) {
			held = append(held, applied(k, st))
		}
	}
	n, err := sw.Sweep(ctx, held)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.Warn("data-plane sweep failed: the next resync retries", "err", err)
	case n > 0:
		a.log.Info("removed data-plane state of rules without a record", "removed", n)
	}
}

// retryDue reconciles the rules whose retry time has come.
func (a *Agent) retryDue(ctx context.Context) error {
	now := time.Now()
	var keys []store.RuleKey
	for k, r := range a.retry {
		if !r.at.After(now) {
			keys = append(keys, k)
			if len(keys) == a.cfg.Batch {
				break
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return a.reconcileKeys(ctx, keys, false)
}

func (a *Agent) nextRetry() (time.Time, bool) {
	var next time.Time
	for _, r := range a.retry {
		if next.IsZero() || r.at.Before(next) {
			next = r.at
		}
	}
	return next, !next.IsZero()
}

// reconcileKeys reads the desired and applied state of keys and reconciles them.
func (a *Agent) reconcileKeys(ctx context.Context, keys []store.RuleKey, force bool) error {
	for lo := 0; lo < len(keys); lo += a.cfg.Batch {
		ks := keys[lo:min(lo+a.cfg.Batch, len(keys))]
		desired, err := a.st.GetTrafficRules(ctx, ks)
		if err != nil {
			return err
		}
		applied, err := a.st.RuleStatuses(ctx, a.cfg.UPF, ks)
		if err != nil {
			return err
		}
		items := make([]item, len(ks))
		for i, k := range ks {
			items[i] = item{key: k, desired: desired[i], applied: applied[i]}
		}
		if err := a.reconcile(ctx, items, force); err != nil {
			return err
		}
	}
	return nil
}

// Digest identifies a rule version: its state and body.
func Digest(r *store.Rule) string {
	h := sha256.New()
	h.Write([]byte(r.State))
	h.Write([]byte{0})
	h.Write(r.Body)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
