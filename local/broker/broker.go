package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/rickb777/date/period"
	oteltrace "go.opentelemetry.io/otel/trace"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/eventfilter"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/trace"
)

// Target is where a resolved Destination is delivered.
type Target struct {
	// Receive, when set, is handed the event in process, without any
	// encoding: a trigger's CloudEvents receiver function (its Handle).
	// Its result counts as the status an HTTP receiver would answer: an
	// ACK (or nil) 200, a cehttp.Result its status, an invalid event 400,
	// any other NACK 500.
	Receive Receiver
	// Handler, when set (and Receive is not), receives the event in
	// process (binary or structured content mode as over HTTP).
	Handler http.Handler
	// URL is where the event is POSTed when Receive and Handler are nil.
	// Otherwise it is the request's URL and names the destination in
	// knativeerrordest. Zero value then: http://in-process/.
	URL string
}

// Receiver is a CloudEvents receiver function, such as a trigger's Handle.
type Receiver func(ctx context.Context, e cloudevents.Event) protocol.Result

// Resolver maps a Trigger's subscriber or dead-letter sink to a Target.
type Resolver func(dest duckv1.Destination) (Target, error)

// Options configure a Broker.
type Options struct {
	// Broker is the Broker whose Triggers are used (spec.broker or
	// spec.brokerRef.name). Zero value: "default".
	Broker string
	// Namespace, when set, uses only the Triggers of that namespace.
	// Zero value: any namespace.
	Namespace string
	// Triggers are the Trigger objects, e.g. from LoadTriggers; those of
	// other brokers are ignored. They are copied, defaulted and validated.
	Triggers []*eventingv1.Trigger
	// Resolve resolves subscribers and dead-letter sinks, once, in New.
	// Zero value: only absolute URIs resolve (POSTed to).
	Resolve Resolver
	// QueueSize bounds the deliveries in the broker (queued, running or
	// waiting to be retried); an event matching n Triggers takes n.
	// Zero value: 1000.
	QueueSize int
	// Workers is the number of deliveries made at once. Zero value: 4.
	Workers int
	// Bulk, when set, sorts events into two lanes: those it reports true
	// for (kmep's: events.Bulk) are bulk, the others live. Workers take
	// live deliveries first (a waiting bulk one after seven live ones in a
	// row, so neither starves), and bulk events are admitted only while
	// LiveReserve places stay free. Zero value: one lane, every event
	// live (the baseline the benchmarks compare with).
	Bulk func(cloudevents.Event) bool
	// LiveReserve is how many places of QueueSize bulk events may not
	// take: live events find room while bulk ones fill the queue. Only
	// with Bulk. Zero value: QueueSize/4.
	LiveReserve int
	// RetryAfter is the Retry-After of a 503 for a full queue (rounded up
	// to whole seconds). Zero value: 1 s.
	RetryAfter time.Duration
	// RequestTimeout bounds one delivery attempt unless the Trigger's
	// spec.delivery.timeout says otherwise. Zero value: 30 s.
	RequestTimeout time.Duration
	// Client posts to URL targets. Zero value: a client without a
	// timeout of its own (RequestTimeout applies).
	Client *http.Client
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// TracerProvider makes a span "broker deliver" of each delivery
	// attempt. Zero value: the global one.
	TracerProvider oteltrace.TracerProvider
}

// Stats are a Broker's counters since New.
type Stats struct {
	// Accepted counts events the ingress queued (202), Rejected those it
	// refused because the queue was full (503), Invalid the malformed ones
	// (400).
	Accepted, Rejected, Invalid uint64
	// Delivered counts deliveries a subscriber accepted (2xx).
	Delivered uint64
	// Retries counts delivery attempts repeated after a failure.
	Retries uint64
	// DeadLettered counts deliveries the dead-letter sink accepted.
	DeadLettered uint64
	// Dropped counts deliveries that failed for good: without a
	// dead-letter sink, or the dead-letter sink failed too.
	Dropped uint64
}

// route is one Trigger, compiled.
type route struct {
	name       string // namespace/name
	filter     eventfilter.Filter
	subscriber Target
	dls        *Target
	retries    int
	backoff    func(n int) time.Duration
	timeout    time.Duration
	structured bool
}

// Broker is the embedded broker. Its ServeHTTP is the ingress; Run makes
// the deliveries.
type Broker struct {
	opts   Options
	log    *slog.Logger
	tracer oteltrace.Tracer
	routes []*route
	// jobs and bulk are the lanes' queues (bulk only with Options.Bulk).
	jobs, bulk chan *job

	mu       sync.RWMutex // RLock: filtering and admission; Lock: closing
	inflight atomic.Int64
	freed    chan struct{} // signalled when places are released
	closed   bool
	running  atomic.Bool

	accepted, rejected, invalid, delivered, retries, deadLettered, dropped atomic.Uint64
}

// New compiles the Triggers of opts.Broker and resolves their destinations.
func New(opts Options) (*Broker, error) {
	if opts.Broker == "" {
		opts.Broker = "default"
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 1000
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.LiveReserve == 0 {
		opts.LiveReserve = opts.QueueSize / 4
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Resolve == nil {
		opts.Resolve = resolveURI
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.QueueSize < 0 || opts.Workers < 0 || opts.RetryAfter < 0 || opts.RequestTimeout < 0 {
		return nil, errors.New("broker: QueueSize, Workers, RetryAfter and RequestTimeout must be positive")
	}
	if opts.LiveReserve < 0 || opts.LiveReserve >= opts.QueueSize {
		return nil, errors.New("broker: LiveReserve must be positive and less than QueueSize")
	}
	b := &Broker{opts: opts, log: opts.Log, jobs: make(chan *job, opts.QueueSize), freed: make(chan struct{}, 1),
		tracer: trace.Tracer(opts.TracerProvider, "github.com/kmep-io/kmep/local/broker")}
	if opts.Bulk != nil {
		b.bulk = make(chan *job, opts.QueueSize-opts.LiveReserve)
	}
	for _, t := range opts.Triggers {
		if !b.ours(t) {
			continue
		}
		r, err := b.compile(t.DeepCopy())
		if err != nil {
			b.cleanup()
			return nil, err
		}
		b.routes = append(b.routes, r)
	}
	return b, nil
}

func (b *Broker) ours(t *eventingv1.Trigger) bool {
	name := t.Spec.Broker
	if t.Spec.BrokerRef != nil {
		name = t.Spec.BrokerRef.Name
	}
	return name == b.opts.Broker && (b.opts.Namespace == "" || t.Namespace == b.opts.Namespace)
}

func (b *Broker) compile(t *eventingv1.Trigger) (*route, error) {
	if err := validate(t); err != nil {
		return nil, err
	}
	r := &route{name: t.Namespace + "/" + t.Name, timeout: b.opts.RequestTimeout, backoff: func(int) time.Duration { return 0 }}
	var err error
	if r.subscriber, err = b.opts.Resolve(t.Spec.Subscriber); err != nil {
		return nil, fmt.Errorf("Trigger %s: subscriber: %w", r.name, err)
	}
	if d := t.Spec.Delivery; d != nil {
		if err := r.delivery(d); err != nil {
			return nil, fmt.Errorf("Trigger %s: delivery: %w", r.name, err)
		}
		if d.DeadLetterSink != nil {
			dls, err := b.opts.Resolve(*d.DeadLetterSink)
			if err != nil {
				return nil, fmt.Errorf("Trigger %s: deadLetterSink: %w", r.name, err)
			}
			r.dls = &dls
		}
	}
	r.filter = newFilter(t)
	return r, nil
}

// delivery reads a DeliverySpec as kncloudevents.RetryConfigFromDeliverySpec does.
func (r *route) delivery(d *eventingduckv1.DeliverySpec) error {
	if d.Retry != nil {
		r.retries = int(*d.Retry)
	}
	if d.BackoffPolicy != nil && d.BackoffDelay != nil {
		delay, err := isoDuration(*d.BackoffDelay)
		if err != nil {
			return fmt.Errorf("backoffDelay: %w", err)
		}
		switch *d.BackoffPolicy {
		case eventingduckv1.BackoffPolicyExponential:
			r.backoff = func(n int) time.Duration { return delay * time.Duration(math.Exp2(float64(n))) }
		case eventingduckv1.BackoffPolicyLinear:
			r.backoff = func(n int) time.Duration { return delay * time.Duration(n) }
		}
	}
	if d.Timeout != nil {
		t, err := isoDuration(*d.Timeout)
		if err != nil {
			return fmt.Errorf("timeout: %w", err)
		}
		if t > 0 {
			r.timeout = t
		}
	}
	r.structured = d.Format != nil && *d.Format == eventingduckv1.DeliveryFormatJson
	return nil
}

func isoDuration(s string) (time.Duration, error) {
	p, err := period.Parse(s)
	if err != nil {
		return 0, err
	}
	d, _ := p.Duration()
	return d, nil
}

func resolveURI(dest duckv1.Destination) (Target, error) {
	if dest.Ref == nil && dest.URI != nil && dest.URI.URL().IsAbs() && dest.URI.Host != "" {
		return Target{URL: dest.URI.String()}, nil
	}
	if dest.Ref != nil {
		return Target{}, fmt.Errorf("no resolver for %s %s/%s", dest.Ref.Kind, dest.Ref.Namespace, dest.Ref.Name)
	}
	return Target{}, errors.New("no absolute URI")
}

// Triggers lists the names (namespace/name) of the Triggers in use.
func (b *Broker) Triggers() []string {
	out := make([]string, len(b.routes))
	for i, r := range b.routes {
		out[i] = r.name
	}
	return out
}

// Stats returns the counters.
func (b *Broker) Stats() Stats {
	return Stats{Accepted: b.accepted.Load(), Rejected: b.rejected.Load(), Invalid: b.invalid.Load(),
		Delivered: b.delivered.Load(), Retries: b.retries.Load(), DeadLettered: b.deadLettered.Load(), Dropped: b.dropped.Load()}
}

// maxEventBytes bounds an event at the ingress.
const maxEventBytes = 4 << 20

// ServeHTTP is the ingress: POST a CloudEvent (binary or structured
// content mode). 202: queued for every matching Trigger (also when none
// matches); 400: not a valid CloudEvent; 503 with Retry-After: the queue is
// full, or the broker has stopped.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a CloudEvent", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxEventBytes)
	e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		b.invalid.Add(1)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "not a valid CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch err := b.enqueue(*e); {
	case errors.Is(err, errFull), errors.Is(err, errClosed):
		b.rejected.Add(1)
		secs := int(math.Ceil(b.opts.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		b.accepted.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}
}

// Send queues e as the ingress does, without HTTP: the all-in-one's relay
// can use the Broker as its Sender. The result is an ACK once queued; while
// the queue is full Send waits for room (in-process backpressure, where the
// ingress answers 503), and it is a NACK when ctx ends first or the broker
// has stopped; it is e's validation error when e is not a valid event.
func (b *Broker) Send(ctx context.Context, e cloudevents.Event) protocol.Result {
	if err := e.Validate(); err != nil {
		b.invalid.Add(1)
		return err
	}
	for {
		err := b.enqueue(e)
		if err == nil {
			break
		}
		if errors.Is(err, errFull) {
			// Woken by a delivery that ends, or after a while in case the
			// place went to another sender.
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-b.freed:
				t.Stop()
				continue
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				err = fmt.Errorf("%w: %w", err, ctx.Err())
			}
		}
		b.rejected.Add(1)
		return protocol.NewReceipt(false, "%w", err)
	}
	b.accepted.Add(1)
	return protocol.ResultACK
}

// release gives back one place of the queue.
func (b *Broker) release() {
	b.inflight.Add(-1)
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

var (
	errFull   = errors.New("broker queue full: retry later")
	errClosed = errors.New("broker stopped")
)

// enqueue queues one delivery of e per matching route, all or none, in
// e's lane.
func (b *Broker) enqueue(e cloudevents.Event) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed
	}
	var match []*route
	for _, r := range b.routes {
		if passes(r.filter, e) {
			match = append(match, r)
		}
	}
	if len(match) == 0 {
		return nil
	}
	bulk := b.bulk != nil && b.opts.Bulk(e)
	if !b.admit(len(match), bulk) {
		return errFull
	}
	pctx, _ := events.TraceContext(context.Background(), e)
	parent := oteltrace.SpanContextFromContext(pctx)
	for _, r := range match {
		// Never blocks: the lane's channel holds as many jobs as it admits.
		j := &job{r: r, e: e.Clone(), bulk: bulk, parent: parent}
		b.lane(j) <- j
	}
	return nil
}

// lane is j's queue.
func (b *Broker) lane(j *job) chan *job {
	if j.bulk {
		return b.bulk
	}
	return b.jobs
}

// admit reserves n places: of QueueSize for live events, of QueueSize -
// LiveReserve for bulk ones.
func (b *Broker) admit(n int, bulk bool) bool {
	limit := int64(b.opts.QueueSize)
	if bulk {
		limit -= int64(b.opts.LiveReserve)
	}
	for {
		cur := b.inflight.Load()
		if cur+int64(n) > limit {
			return false
		}
		if b.inflight.CompareAndSwap(cur, cur+int64(n)) {
			return true
		}
	}
}

// Run makes the deliveries until ctx ends; then the ingress answers 503
// and what is queued is dropped. Call it once.
func (b *Broker) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("broker: Run called twice")
	}
	var wg sync.WaitGroup
	for range b.opts.Workers {
		wg.Go(func() {
			for liveRun := 0; ctx.Err() == nil; {
				j := b.next(ctx, liveRun >= liveBurst)
				if j == nil {
					return
				}
				if j.bulk {
					liveRun = 0
				} else {
					liveRun++
				}
				b.deliver(ctx, j)
			}
		})
	}
	<-ctx.Done()
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	wg.Wait()
	b.cleanup()
	if n := b.inflight.Load(); n > 0 {
		b.log.Warn("broker stopped with deliveries pending: dropped", "count", n)
	}
	return nil
}

// liveBurst is how many live deliveries a worker makes in a row before it
// takes a bulk one that waits.
const liveBurst = 7

// next waits for the next job: a live one when there is one (a bulk one
// first when bulkTurn), else whichever comes first. It is nil when ctx
// ended first. (b.bulk is nil without lanes: its cases never fire.)
func (b *Broker) next(ctx context.Context, bulkTurn bool) *job {
	first, second := b.jobs, b.bulk
	if bulkTurn {
		first, second = second, first
	}
	select {
	case j := <-first:
		return j
	default:
	}
	select {
	case j := <-second:
		return j
	default:
	}
	select {
	case <-ctx.Done():
		return nil
	case j := <-b.jobs:
		return j
	case j := <-b.bulk:
		return j
	}
}

func (b *Broker) cleanup() {
	for _, r := range b.routes {
		r.filter.Cleanup()
	}
}
