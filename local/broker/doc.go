// Package broker is an in-process stand-in for a Knative Broker, for the
// all-in-one: it routes the CloudEvents posted to its ingress to the
// subscribers of the Trigger objects that match them, with the very
// Trigger objects a cluster applies (LoadTriggers reads manifests/
// eventing.yaml) and Knative Eventing's own filter packages
// (eventfilter/subscriptionsapi for spec.filters, eventfilter/attributes
// for the legacy spec.filter.attributes).
//
// Delivery follows each Trigger's spec.delivery as Knative's dispatcher
// does: a delivery that fails with a transport error or a retryable status
// (5xx, 404, 408, 409, 429) is retried up to retry times, the n-th retry
// (n = 0, 1, ...) after backoffDelay·2^n (exponential) or backoffDelay·n
// (linear); other failures, and the last retry's, go to the
// deadLetterSink with the extensions knativeerrordest, knativeerrorcode
// and knativeerrordata (the subscriber's answer, base64). ISO-8601
// durations are parsed by the same library Knative uses, which keeps only
// tenths of seconds (PT0.01S is no delay at all).
//
// The ingress answers 202 once the event is queued; deliveries run on
// Options.Workers goroutines and a retry waits on a timer, not on a worker.
// Deliveries are concurrent: like Knative's channel-based broker, this one
// does not keep the order of events (receivers order them by the data's
// revision or the event id, which is the change-stream id).
// The queue is bounded: an event whose deliveries do not fit gets 503 with
// Retry-After at the ingress, so the relay sends it again later; Send, the
// in-process path, waits for room instead (until its context ends).
//
// With Options.Bulk (the all-in-one passes events.Bulk: kmeplane=bulk) the
// queue has two lanes, which Knative's broker does not have: bulk events
// (a mass expiry's) are admitted only while Options.LiveReserve places of
// the queue stay free, and workers take live deliveries first (a bulk one
// after seven live ones in a row), so an event that is not part of a burst
// neither waits for room nor behind the burst. Without it the queue is one
// FIFO lane. The
// queue lives in memory: what is queued when the process stops is lost, as
// with Knative's InMemoryChannel. kmep does not rely on it: the relay keeps
// every event pending until notify settles it and publishes again what
// was lost (see package relay). Replies (events in a subscriber's answer)
// are ignored.
//
// Traces: each delivery attempt is a span "broker deliver"
// (Options.TracerProvider), a child of the trace context the event came
// with (its traceparent extension, the CloudEvents distributed-tracing
// extension); the subscriber gets the event with that extension set to
// the attempt's span, in its context too when it is a Receiver, and over
// HTTP in a traceparent header as well. The other extensions pass through
// untouched.
package broker
