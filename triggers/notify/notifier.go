package notify

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// Store is what the notifier reads and writes. *store.Store implements it.
type Store interface {
	// Audiences selects the subscriptions of many events at once, with
	// their done markers.
	Audiences(ctx context.Context, qs []store.AudienceQuery) ([]store.Audience, error)
	// Record writes done markers, and settles or touches events: the
	// end-to-end acknowledgment to the relay (an event settled is done;
	// one touched is being retried).
	Record(ctx context.Context, p store.Progress) error
	GetTermination(ctx context.Context, app string) (store.Termination, error)
}

var _ Store = (*store.Store)(nil)

// Doer sends one HTTP request. *http.Client implements it; the binary
// passes the callback policy's client, which dials only permitted addresses
// and follows no redirects.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

var _ Doer = (*http.Client)(nil)

// Retry configures the retries of one callback.
type Retry struct {
	// Attempts is the number of tries, the first included. Zero value: 3.
	Attempts int
	// Backoff is the wait before the second try; it doubles for each
	// further try, and each wait is drawn at random from [w/2, w] (jitter).
	// Zero value: 200 ms.
	Backoff time.Duration
	// MaxBackoff caps the exponential wait. Zero value: 5 s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps the wait a 429 or 503 asks for with Retry-After
	// (seconds or an HTTP date); a longer request waits this long. Zero
	// value: 10 s.
	MaxRetryAfter time.Duration
}

// Deps are a Notifier's dependencies and settings.
type Deps struct {
	// Store selects subscriptions and keeps the done markers. Required.
	Store Store
	// Client sends the notifications. Required.
	Client Doer
	// Log gets one debug line per event and a warning per callback that
	// failed or refused. Zero value: nothing is logged.
	Log *slog.Logger
	// Concurrency bounds the callback requests in flight, over all events
	// the Notifier handles at once. Zero value: 64.
	Concurrency int
	// LiveReserve is how many of the Concurrency slots the callbacks of
	// bulk events (events.Bulk: a mass expiry's) may not take, so that the
	// callbacks of other events find a slot while a burst's callbacks are
	// slow (a dead node's subscribers time out). Zero value: Concurrency/4.
	LiveReserve int
	// FIFO gives bulk events' callbacks every slot, as the others' (the
	// baseline the all-in-one's benchmarks compare with). Zero value:
	// false.
	FIFO bool
	// Timeout bounds each attempt of each callback (connect, send, response
	// headers and body). Zero value: 5 s.
	Timeout time.Duration
	// Retry configures retries. Zero value: see Retry's fields.
	Retry Retry
	// DoneTTL is how long a delivered (event, subscription) pair is
	// remembered, so a redelivery of the event skips it. Zero value: 1 h.
	DoneTTL time.Duration
	// ClaimTTL is how long a delivery holds the (event, subscription)
	// pairs it selected (store.AudienceQuery.Claimant), so that another
	// delivery of the same event at once (a copy the relay published
	// again, a broker's retry) does not call them too. No attempt starts
	// later than ClaimTTL - Timeout after the claim, so none outlives it
	// (a retry that could is left to the broker's next delivery); a
	// delivery that dies holding claims (a killed pod) delays the event's
	// next delivery that long. Zero value: 15 s or 3 Timeouts, whichever
	// is longer. It must exceed Timeout.
	ClaimTTL time.Duration
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
	// TracerProvider makes the span "notify" of each event Handle is
	// given and the client span of each callback attempt. Zero value: the
	// global one (server.Main installs it).
	TracerProvider oteltrace.TracerProvider
}

// Defaults of Deps.
const (
	DefaultConcurrency   = 64
	DefaultTimeout       = 5 * time.Second
	DefaultAttempts      = 3
	DefaultBackoff       = 200 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultMaxRetryAfter = 10 * time.Second
	DefaultDoneTTL       = time.Hour
	DefaultClaimTTL      = 15 * time.Second
)

// Bounds of one batched store call: the done markers and settlements are
// written even when the event's context has ended.
const (
	recordTimeout = 2 * time.Second
	selectTimeout = 5 * time.Second
)

// Sizes of the batched store calls (events per selection, writes per
// record).
const (
	maxSelectBatch = 256
	maxRecordBatch = 1024
)

// Notifier delivers the notifications of kmep's events. It is safe for
// concurrent use.
type Notifier struct {
	st      Store
	client  Doer
	log     *slog.Logger
	tracer  oteltrace.Tracer
	sem     chan struct{}
	bulkSem chan struct{} // the bulk share of sem; nil with FIFO
	timeout time.Duration
	retry   Retry
	doneTTL time.Duration
	// claimTTL bounds each delivery's claims; claimant names each (the
	// process's random prefix and a count).
	claimTTL time.Duration
	claimant string
	claims   atomic.Uint64
	stats    counters
	latency  prometheus.Histogram // of callback attempts

	audiences *batcher[store.AudienceQuery, store.Audience]
	progress  *batcher[store.Progress, struct{}]
}

// New returns a Notifier over d. It fails when a required dependency is
// missing or a setting is negative.
func New(d Deps) (*Notifier, error) {
	switch {
	case d.Store == nil:
		return nil, errors.New("notify: Deps.Store is required")
	case d.Client == nil:
		return nil, errors.New("notify: Deps.Client is required")
	case d.Concurrency < 0, d.LiveReserve < 0, d.Timeout < 0, d.DoneTTL < 0, d.ClaimTTL < 0, d.Retry.Attempts < 0, d.Retry.Backoff < 0,
		d.Retry.MaxBackoff < 0, d.Retry.MaxRetryAfter < 0:
		return nil, errors.New("notify: negative setting in Deps")
	}
	n := &Notifier{st: d.Store, client: d.Client, log: d.Log, timeout: d.Timeout, retry: d.Retry, doneTTL: d.DoneTTL}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.tracer = trace.Tracer(d.TracerProvider, "github.com/kmep-io/kmep/triggers/notify")
	if d.Concurrency == 0 {
		d.Concurrency = DefaultConcurrency
	}
	n.sem = make(chan struct{}, d.Concurrency)
	if d.LiveReserve == 0 {
		d.LiveReserve = d.Concurrency / 4
	}
	if d.LiveReserve >= d.Concurrency {
		return nil, errors.New("notify: Deps.LiveReserve must be less than Concurrency")
	}
	if !d.FIFO {
		n.bulkSem = make(chan struct{}, d.Concurrency-d.LiveReserve)
	}
	if n.timeout == 0 {
		n.timeout = DefaultTimeout
	}
	if n.doneTTL == 0 {
		n.doneTTL = DefaultDoneTTL
	}
	n.claimTTL = cmp.Or(d.ClaimTTL, max(DefaultClaimTTL, 3*n.timeout))
	if n.claimTTL <= n.timeout {
		return nil, fmt.Errorf("notify: Deps.ClaimTTL %v must exceed the callback Timeout %v", n.claimTTL, n.timeout)
	}
	n.claimant = rand.Text()[:12]
	if n.retry.Attempts == 0 {
		n.retry.Attempts = DefaultAttempts
	}
	if n.retry.Backoff == 0 {
		n.retry.Backoff = DefaultBackoff
	}
	if n.retry.MaxBackoff == 0 {
		n.retry.MaxBackoff = DefaultMaxBackoff
	}
	if n.retry.MaxRetryAfter == 0 {
		n.retry.MaxRetryAfter = DefaultMaxRetryAfter
	}
	n.latency = n.registerMetrics(d.Metrics)
	n.audiences = &batcher[store.AudienceQuery, store.Audience]{do: n.st.Audiences, max: maxSelectBatch, timeout: selectTimeout}
	n.progress = &batcher[store.Progress, struct{}]{do: n.record, max: maxRecordBatch, timeout: recordTimeout}
	return n, nil
}

// record writes the progress of several events in one store call.
func (n *Notifier) record(ctx context.Context, ps []store.Progress) ([]struct{}, error) {
	all := store.Progress{DoneTTL: n.doneTTL}
	for _, p := range ps {
		all.Notified = append(all.Notified, p.Notified...)
		all.Release = append(all.Release, p.Release...)
		all.Settle = append(all.Settle, p.Settle...)
		all.Touch = append(all.Touch, p.Touch...)
	}
	return make([]struct{}, len(ps)), n.st.Record(ctx, all)
}

// Stats counts what a Notifier did since New.
type Stats struct {
	// Events: events Handle was called with; of those, Invalid: answered
	// 400 (requests that are not CloudEvents at all are refused before
	// Handle and not counted).
	Events, Invalid int64
	// Delivered: callbacks that answered 2xx.
	Delivered int64
	// Retried: attempts after the first.
	Retried int64
	// Rejected: callbacks that refused the notification for good (a 4xx
	// other than 429, a 3xx, or a callback the policy or URL syntax refuses).
	Rejected int64
	// Failed: callbacks that still failed after the retries (or when the
	// event's context ended).
	Failed int64
	// Skipped: callbacks not called because an earlier delivery of the
	// same event reached them.
	Skipped int64
	// Busy: callbacks not called because another delivery of the same
	// event holds them (a copy handled at once); the event is answered
	// 502, so the broker tries it again.
	Busy int64
}

type counters struct {
	events, invalid, delivered, retried, rejected, failed, skipped, busy atomic.Int64

	// notified are the done markers of one event's deliveries, written
	// with its settlement; released are the claims of callbacks that
	// failed, given back with its touch.
	mu       sync.Mutex
	notified []store.Notified
	released []store.Claim
}

func (c *counters) markDone(d store.Notified) {
	c.mu.Lock()
	c.notified = append(c.notified, d)
	c.mu.Unlock()
}

func (c *counters) release(d store.Claim) {
	c.mu.Lock()
	c.released = append(c.released, d)
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	return Stats{Events: c.events.Load(), Invalid: c.invalid.Load(), Delivered: c.delivered.Load(),
		Retried: c.retried.Load(), Rejected: c.rejected.Load(), Failed: c.failed.Load(), Skipped: c.skipped.Load(),
		Busy: c.busy.Load()}
}

func (c *counters) add(o *counters) {
	c.delivered.Add(o.delivered.Load())
	c.retried.Add(o.retried.Load())
	c.rejected.Add(o.rejected.Load())
	c.failed.Add(o.failed.Load())
	c.skipped.Add(o.skipped.Load())
	c.busy.Add(o.busy.Load())
}

// Stats returns a snapshot of the counters.
func (n *Notifier) Stats() Stats { return n.stats.snapshot() }

// Handle is the CloudEvents receiver: it delivers the event's notifications
// and returns an ACK (200) when every matching callback took or
// refused them, a 502 NACK when some still failed after the retries (the
// broker redelivers; callbacks already reached are skipped), a 503 NACK
// when the store failed, and a 400 for an event it cannot handle (nothing
// is sent). It does so in a span "notify", a child of the event's trace
// context (see the package documentation), whose status is the result's.
func (n *Notifier) Handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	return events.Handle(ctx, n.tracer, "notify", e, n.handle)
}

func (n *Notifier) handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	n.stats.events.Add(1)
	start := time.Now()
	var (
		q    = store.AudienceQuery{EventID: e.ID()}
		body func(store.Subscription) ([]byte, error)
	)
	switch e.Type() {
	case events.TypeServiceChanged:
		var d events.ServiceChanged
		if err := decode(e, &d); err != nil {
			return n.invalid(ctx, e, err)
		}
		if err := checkService(e, d); err != nil {
			return n.invalid(ctx, e, err)
		}
		r := d.Record()
		q.Service = &r
		body = func(sub store.Subscription) ([]byte, error) { return serviceNotification(d, sub) }
	case events.TypeAppTerminating:
		var d events.AppTerminating
		if err := decode(e, &d); err != nil {
			return n.invalid(ctx, e, err)
		}
		if err := checkTermination(e, d); err != nil {
			return n.invalid(ctx, e, err)
		}
		if d.MaxGracefulTimeout == 0 {
			t, terr := n.st.GetTermination(ctx, d.AppInstanceID)
			switch {
			case terr == nil:
				d.MaxGracefulTimeout = t.MaxGracefulTimeout
			case !errors.Is(terr, store.ErrNotFound):
				return n.unavailable(e, terr)
			}
		}
		q.App = d.AppInstanceID
		body = func(sub store.Subscription) ([]byte, error) {
			return terminationNotification(d.AppInstanceID, d.MaxGracefulTimeout, sub)
		}
	default:
		return n.invalid(ctx, e, fmt.Errorf("unknown event type %q", e.Type()))
	}
	cl := claim{claimant: fmt.Sprintf("%s.%d", n.claimant, n.claims.Add(1)), at: time.Now()}
	q.Claimant, q.ClaimTTL = cl.claimant, n.claimTTL
	aud, err := n.audiences.Do(ctx, q)
	if err != nil {
		return n.unavailable(e, err)
	}

	var c counters
	n.fanOut(ctx, e.ID(), events.Bulk(e), cl, aud, body, &c)
	n.stats.add(&c)
	oteltrace.SpanFromContext(ctx).SetAttributes(attribute.Int("kmep.subscriptions", len(aud.Subs)),
		attribute.Int64("kmep.delivered", c.delivered.Load()), attribute.Int64("kmep.failed", c.failed.Load()))
	n.log.Debug("event notified", "event", e.ID(), "type", e.Type(), "subject", e.Subject(),
		"subscriptions", len(aud.Subs), "delivered", c.delivered.Load(), "retried", c.retried.Load(),
		"rejected", c.rejected.Load(), "failed", c.failed.Load(), "skipped", c.skipped.Load(),
		"busy", c.busy.Load(), "duration", time.Since(start))
	if f, b := c.failed.Load(), c.busy.Load(); f > 0 || b > 0 {
		// The broker retries it: the relay must not publish it again
		// meanwhile. The failed callbacks' claims are given back, so the
		// retry may take them.
		if _, err := n.progress.Do(ctx, store.Progress{Notified: c.notified, Release: c.released, Touch: []string{e.ID()}}); err != nil {
			n.log.Warn("event to be retried not marked as in progress", "event", e.ID(), "err", err)
		}
		if f == 0 {
			return cehttp.NewResult(http.StatusBadGateway, "%d of %d callbacks are being notified by another delivery of the event", b, len(aud.Subs))
		}
		return cehttp.NewResult(http.StatusBadGateway, "%d of %d callbacks failed", f, len(aud.Subs))
	}
	// Every callback was served (or refused for good): the event is done.
	// Its done markers go in the same write (one batched round trip per
	// event), so a publication of it again (a relay that died before
	// acknowledging it) skips the callbacks.
	if _, err := n.progress.Do(ctx, store.Progress{Notified: c.notified, Settle: []string{e.ID()}}); err != nil {
		return n.unavailable(e, err)
	}
	return protocol.ResultACK
}

// invalid refuses an event that can never be notified, and settles it:
// publishing it again would not change that. (The broker hands a 400 to
// the dead-letter sink.)
func (n *Notifier) invalid(ctx context.Context, e cloudevents.Event, err error) protocol.Result {
	n.stats.invalid.Add(1)
	n.log.Warn("event refused", "event", e.ID(), "type", e.Type(), "err", err)
	if e.ID() != "" {
		if _, err := n.progress.Do(ctx, store.Progress{Settle: []string{e.ID()}}); err != nil {
			n.log.Warn("refused event not settled", "event", e.ID(), "err", err)
		}
	}
	return cehttp.NewResult(http.StatusBadRequest, "%s", err.Error())
}

func (n *Notifier) unavailable(e cloudevents.Event, err error) protocol.Result {
	n.log.Error("event not notified", "event", e.ID(), "type", e.Type(), "err", err)
	return cehttp.NewResult(http.StatusServiceUnavailable, "store unavailable")
}

func decode(e cloudevents.Event, v any) error {
	if len(e.Data()) == 0 {
		return errors.New("event has no data")
	}
	if err := e.DataAs(v); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}

var changeTypes = []string{store.ChangeAdded, store.ChangeRemoved, store.ChangeStateChanged, store.ChangeAttributesChanged}

func checkService(e cloudevents.Event, d events.ServiceChanged) error {
	switch {
	case d.SerInstanceID == "" || d.SerName == "" || d.State == "" || d.AppInstanceID == "":
		return errors.New("data lacks serInstanceId, serName, state or appInstanceId")
	case !slices.Contains(changeTypes, d.ChangeType):
		return fmt.Errorf("data has unknown changeType %q", d.ChangeType)
	case e.Subject() != d.SerInstanceID:
		return fmt.Errorf("subject %q is not the data's serInstanceId %q", e.Subject(), d.SerInstanceID)
	}
	return checkApp(e, d.AppInstanceID)
}

func checkTermination(e cloudevents.Event, d events.AppTerminating) error {
	switch {
	case d.AppInstanceID == "":
		return errors.New("data lacks appInstanceId")
	case d.MaxGracefulTimeout < 0:
		return fmt.Errorf("data has negative maxGracefulTimeout %d", d.MaxGracefulTimeout)
	case e.Subject() != d.AppInstanceID:
		return fmt.Errorf("subject %q is not the data's appInstanceId %q", e.Subject(), d.AppInstanceID)
	}
	return checkApp(e, d.AppInstanceID)
}

// checkApp compares the kmepapp extension, when the event has one, with
// the data's app instance.
func checkApp(e cloudevents.Event, app string) error {
	v, ok := e.Extensions()[events.ExtApp]
	if !ok {
		return nil
	}
	if s, _ := v.(string); s != app {
		return fmt.Errorf("extension %s %v is not the data's appInstanceId %q", events.ExtApp, v, app)
	}
	return nil
}
