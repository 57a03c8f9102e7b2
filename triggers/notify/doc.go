// Package notify is the trigger that turns kmep's change events into MEC 011
// notifications: a TypeServiceChanged event becomes a
// ServiceAvailabilityNotification POSTed to every matching
// SerAvailabilityNotificationSubscription, and a TypeAppTerminating event an
// AppTerminationNotification POSTed to the app instance's
// AppTerminationNotificationSubscriptions.
//
// A Notifier's Handle is the CloudEvents receiver function; HTTPHandler
// wraps it in store/kit/receiver (which answers 400 to requests that are
// not CloudEvents) for the binary, which a Knative Eventing Trigger
// delivers to.
//
// Deliveries run with bounded concurrency, a timeout per attempt, and
// retries with exponential backoff (honouring Retry-After) on 5xx, 429 and
// transport errors. The callbacks of bulk events (events.Bulk: a mass
// expiry's, whose subscribers may have died with the node and time out)
// take at most Concurrency - LiveReserve of the slots, so the callbacks of
// other events always find one (Deps.FIFO: one pool). The batched store
// calls below serve events in arrival order whatever their lane: one call
// takes up to 256 (selections) or 1,024 (writes) queued events, so a live
// event waits for the call in flight and seldom more (the all-in-one's
// broker hands notify live events first; Knative's does not know the
// lanes).
//
// Every (event id, subscription id) pair delivered or refused is marked
// done in the store, so when the broker (or the relay) redelivers an event
// because some callbacks failed, only those are called again. And each
// delivery claims the pairs it selected, in the same store call
// (store.AudienceQuery.Claimant), until it marks them done or gives back
// those that failed: two deliveries of one event at once (a copy the relay
// published again while the broker still held the first) call each
// callback once between them, the other one answering 502 for the pairs it
// found busy so the broker tries it again. No attempt starts unless it
// ends before its claim runs out (Deps.ClaimTTL). The result is an ACK
// when every callback took the notification (or refused it with a 4xx), a
// 502 NACK when some still failed or were busy, a 503 NACK when the store
// could not be read or written, and a 400 for an event that is not one of
// kmep's.
//
// Before its ACK the event is settled in the store (store.Progress.Settle):
// that is the end-to-end acknowledgment the relay waits for before it
// stops publishing the event again. A 502 touches the event instead
// (Progress.Touch: it is being retried, the relay's redelivery timeout
// starts again), and a 400 settles it (it can never be notified).
//
// The store calls of the events handled at once are batched (a group
// commit: whoever finds no call in flight makes one for everything queued
// meanwhile): one selection of the subscriptions and their done markers
// for many events (store.Audiences, two round trips), and one write of
// many done markers and settlements (store.Record). The Notifier keeps no
// state between events beyond its counters: any replica can handle any
// event or its redelivery.
//
// Traces: Handle makes a span "notify" of each event, a child of the span
// that handed it on (the event's traceparent extension: the relay's or
// the broker's span, in the trace of the request that made the change),
// and each callback attempt is a client span below it whose traceparent
// the POST carries in its header, so the subscriber sees the request's
// trace id. A malformed traceparent is ignored.
package notify
