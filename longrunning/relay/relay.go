package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/retry"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// traceScope is the instrumentation scope of the relay's spans.
const traceScope = "github.com/kmep-io/kmep/longrunning/relay"

// Names the relay uses in Redis. The consumer name is fixed so that a
// successor inherits its predecessor's pending entries.
const (
	// Group is the consumer group on the change stream.
	Group = "relay"
	// Consumer is the consumer name of every relay replica.
	Consumer = "relay"
	// LeaseName is the lease that elects the one active relay.
	LeaseName = "relay"
)

// Zero values of Config's settings that the binary also reads from its
// environment.
const (
	// DefaultRedelivery is Config.Redelivery's zero value.
	DefaultRedelivery = 5 * time.Minute
	// DefaultQueueSize is Config.QueueSize's zero value.
	DefaultQueueSize = 128
	// DefaultBulkQueueSize is Config.BulkQueueSize's zero value.
	DefaultBulkQueueSize = 4096
)

// Stream is what the relay needs of the store.
type Stream interface {
	EnsureGroup(ctx context.Context, group, from string) error
	ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]store.Change, error)
	AckPublished(ctx context.Context, group string, ids ...string) error
	AddPending(ctx context.Context, ids ...string) error
	Settle(ctx context.Context, ids ...string) error
	ClaimOverdue(ctx context.Context, cutoff time.Time, limit int) (due []store.Change, gone []string, err error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

var _ Stream = (*store.Store)(nil)

// Sender delivers one event; the result is ACK (protocol.IsACK) when the
// sink accepted it. cloudevents.Client implements it.
type Sender interface {
	Send(ctx context.Context, e cloudevents.Event) cloudevents.Result
}

var _ Sender = cloudevents.Client(nil)

// Config configures an Agent.
type Config struct {
	// Sink is the absolute URL events are POSTed to (the binary reads
	// K_SINK). Required unless Deps.Sender is set.
	Sink string
	// Workers is the number of FIFO partitions. Zero value: 8.
	Workers int
	// LeaseTTL is the lifetime of the lease; it is renewed every third of
	// it. Zero value: 5 s.
	LeaseTTL time.Duration
	// Holder names this replica in the lease. Zero value: a random id.
	Holder string
	// Batch is how many new entries one read takes. A burst is read past in
	// reads this large (one round trip, and one wake-up of the reader on a
	// busy machine, per read). Zero value: 1000.
	Batch int64
	// Block is how long a read waits for new entries; it also bounds how
	// long stepping down and shutting down take. Zero value: 1 s.
	Block time.Duration
	// QueueSize bounds each partition's backlog of live entries (those that
	// are not bulk changes) read but not yet published. Zero value: 128.
	QueueSize int
	// BulkQueueSize bounds each partition's backlog of bulk entries
	// (store.Change.Bulk, and the live ones queued behind bulk entries of
	// their subject) read but not yet published. The reader reads ahead
	// past a burst of bulk changes as far as this lets it, so that the
	// live changes behind the burst are not left in Redis; an entry held
	// costs about a kilobyte. Zero value: 4096 (32,768 with 8 Workers).
	BulkQueueSize int
	// FIFO turns the bulk lane off: every entry is queued in the live
	// lane, as it was read (the baseline the fair lane is measured
	// against). Zero value: false (bulk changes yield to live ones).
	FIFO bool
	// MinBackoff and MaxBackoff bound the delay between attempts to send
	// one event (doubling, with jitter), and between attempts to reach
	// Redis. Zero values: 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds one delivery attempt of the default sender.
	// Zero value: 10 s.
	SendTimeout time.Duration
	// PendingCheck is how often the leader re-reads the group's pending
	// entries for ones it does not have in flight, and claims the events
	// overdue for redelivery. Zero value: a fifth of Redelivery, at most
	// 30 s.
	PendingCheck time.Duration
	// Redelivery is the redelivery timeout: an event that its consumer has
	// not settled (store.Settle) this long after its last activity (its
	// publication, or the consumer's last attempt at it: store.Progress.Touch)
	// is published again. It must exceed the longest wait between two of
	// the Triggers' retries plus one attempt of the consumer (manifests/
	// eventing.yaml: 256 s + notify's ~16 s), or events still being
	// retried are published twice. Zero value: 5 min.
	Redelivery time.Duration
	// RedeliverOnStart publishes every pending event again at the first
	// leadership of this Agent, without waiting for the timeout. Set it
	// only when the sink cannot have kept anything across this process's
	// start (the all-in-one's in-process broker). Zero value: false.
	RedeliverOnStart bool
}

// Deps are the Agent's dependencies.
type Deps struct {
	// Store is the change stream. Required.
	Store Stream
	// Sender delivers events. Zero value: a CloudEvents HTTP client that
	// POSTs in binary content mode to Config.Sink.
	Sender Sender
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
	// TracerProvider makes the span of each publication ("relay publish")
	// and, with the default Sender, of each POST to the sink. Zero value:
	// the global one (server.Main installs it).
	TracerProvider oteltrace.TracerProvider
}

// Stats are the Agent's counters since New.
type Stats struct {
	// Published counts events the sink accepted with a 2xx answer.
	Published uint64
	// Unpublished counts entries acknowledged without publishing them:
	// changes that are not events (events.Subject false) and the
	// Malformed ones.
	Unpublished uint64
	// Malformed counts entries events.FromChange could not convert.
	Malformed uint64
	// SendFailures counts failed delivery attempts (each one is retried).
	SendFailures uint64
	// Orphans counts pending entries found by a later pending check (read
	// by a relay that stepped down right then).
	Orphans uint64
	// Redelivered counts events published again because they stayed
	// pending past the redelivery timeout (or at start, with
	// RedeliverOnStart).
	Redelivered uint64
	// Gone counts pending events that could not be published again
	// because their entry had been trimmed from the stream (lost).
	Gone uint64
	// Leader reports whether this agent holds the lease and reads.
	Leader bool
}

// Agent is the relay. Run it once.
type Agent struct {
	cfg    Config
	store  Stream
	sender Sender
	log    *slog.Logger
	tracer oteltrace.Tracer

	published, unpublished, malformed, sendFailures, orphans, redelivered, gone atomic.Uint64
	leader                                                                      atomic.Bool
	// led reports whether a term has started (Run's goroutine only).
	led bool
	lag prometheus.Histogram
}

// New checks cfg, fills its zero values and returns an Agent.
func New(cfg Config, deps Deps) (*Agent, error) {
	if deps.Store == nil {
		return nil, errors.New("relay: Deps.Store is required")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = 1000
	}
	if cfg.Block == 0 {
		cfg.Block = time.Second
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BulkQueueSize == 0 {
		cfg.BulkQueueSize = DefaultBulkQueueSize
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 10 * time.Second
	}
	if cfg.Redelivery == 0 {
		cfg.Redelivery = DefaultRedelivery
	}
	if cfg.PendingCheck == 0 {
		cfg.PendingCheck = min(30*time.Second, cfg.Redelivery/5)
	}
	switch {
	case cfg.Workers < 0, cfg.QueueSize < 0, cfg.BulkQueueSize < 0, cfg.Batch < 0:
		return nil, fmt.Errorf("relay: Workers, QueueSize, BulkQueueSize and Batch must be positive")
	case cfg.LeaseTTL < 30*time.Millisecond:
		return nil, fmt.Errorf("relay: LeaseTTL %s is too short", cfg.LeaseTTL)
	case cfg.Block < 0, cfg.MinBackoff < 0, cfg.MaxBackoff < cfg.MinBackoff, cfg.SendTimeout < 0, cfg.PendingCheck < 0, cfg.Redelivery < 0:
		return nil, fmt.Errorf("relay: durations must be positive and MaxBackoff >= MinBackoff")
	}
	if cfg.Holder == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		cfg.Holder = hex.EncodeToString(b)
	}
	a := &Agent{cfg: cfg, store: deps.Store, sender: deps.Sender, log: deps.Log}
	if a.log == nil {
		a.log = slog.Default()
	}
	tp := deps.TracerProvider
	a.tracer = trace.Tracer(tp, traceScope)
	a.lag = a.registerMetrics(deps.Metrics)
	if a.sender == nil {
		u, err := url.Parse(cfg.Sink)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return nil, fmt.Errorf("relay: Sink %q is not an absolute URL", cfg.Sink)
		}
		p, err := cehttp.New(cehttp.WithTarget(cfg.Sink),
			cehttp.WithClient(http.Client{Timeout: cfg.SendTimeout, Transport: trace.Transport(tp, nil)}))
		if err != nil {
			return nil, fmt.Errorf("relay: http protocol: %w", err)
		}
		// No defaulters (id, time): a redelivery must carry the very same event.
		if a.sender, err = cloudevents.NewClient(p); err != nil {
			return nil, fmt.Errorf("relay: client: %w", err)
		}
	}
	return a, nil
}

// Stats returns the counters.
func (a *Agent) Stats() Stats {
	return Stats{
		Published:    a.published.Load(),
		Unpublished:  a.unpublished.Load(),
		Malformed:    a.malformed.Load(),
		SendFailures: a.sendFailures.Load(),
		Orphans:      a.orphans.Load(),
		Redelivered:  a.redelivered.Load(),
		Gone:         a.gone.Load(),
		Leader:       a.leader.Load(),
	}
}

// Run takes the lease whenever it is free and relays while it holds it. It
// blocks until ctx ends, then stops its workers, acknowledges what was
// published, releases the lease and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	held := false
	defer func() {
		if !held {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := a.store.ReleaseLease(rctx, LeaseName, a.cfg.Holder); err != nil {
			a.log.Warn("release lease", "err", err)
		}
	}()
	a.log.Info("relay starting", "holder", a.cfg.Holder, "workers", a.cfg.Workers, "lease_ttl", a.cfg.LeaseTTL, "fifo", a.cfg.FIFO)
	backoff := retry.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	for attempt := 0; ctx.Err() == nil; {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, a.cfg.LeaseTTL/3)
		ok, err := a.store.AcquireLease(actx, LeaseName, a.cfg.Holder, a.cfg.LeaseTTL)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			a.log.Warn("acquire lease", "err", err)
			retry.Sleep(ctx, backoff.Delay(attempt))
			attempt++
			continue
		case !ok:
			attempt = 0
			retry.Sleep(ctx, a.cfg.LeaseTTL/3)
			continue
		}
		attempt, held = 0, true
		a.log.Info("lease acquired: relaying", "holder", a.cfg.Holder)
		a.lead(ctx, start)
		if ctx.Err() == nil {
			a.log.Warn("lease lost: stopped relaying", "holder", a.cfg.Holder)
		}
	}
	return nil
}
