// Package relay is the outbox relay: it publishes the store's change stream
// as CloudEvents to a sink (the Knative Broker, K_SINK) with at-least-once
// delivery, end to end, and per-subject order.
//
// The relay reads the stream through the consumer group "relay" with the
// fixed consumer name "relay", so whichever replica holds the lease inherits
// the entries its predecessor read but never published. An entry is
// acknowledged in the group (XACK) once the sink answered 2xx; at once when
// it is not an event (events.Subject); and by its partition's worker, which
// builds the events (events.FromChange), when its event cannot be built
// (then it is settled too). The group is created with "$" at the first
// start of any relay: changes made before that are not published.
//
// End-to-end acknowledgment: a 2xx of the Broker is not the end of an
// event's way (Knative's InMemoryChannel, like the all-in-one's broker,
// keeps its queue and retries in memory). Before publishing events the
// relay records them in the store's pending set (store.AddPending); the
// consumer settles each one once it is done with it (notify: every callback
// served or refused for good; the dead-letter sink: recorded), and touches
// it whenever it hands it back for a retry. An event that stays pending
// with no activity for Config.Redelivery is published again, with the same
// id, until it is settled; notify's done markers keep the callbacks that
// already got it from getting it twice. With Config.RedeliverOnStart (the
// all-in-one, whose broker cannot outlive the process) every pending event
// is published again at the Agent's first leadership.
//
// Order: events are partitioned by a hash of their subject (the service or
// app instance the change is about) over Config.Workers workers. A failed
// send blocks its partition and is retried with capped exponential backoff
// and jitter until it succeeds: an event is never skipped and never
// overtaken by a later event of the same subject, while the other partitions
// go on. Events published again (redelivered, or found pending at a start)
// come late, after newer events of their subject: at-least-once wins over
// order there, and the broker does not keep order anyway.
//
// Lanes: a partition has two queues. Bulk changes (store.Change.Bulk: the
// reaper's expiries, an app's purge; the event carries kmeplane=bulk)
// queue in the bulk lane, up to Config.BulkQueueSize per partition; the
// others in the live lane, up to Config.QueueSize. The worker publishes
// live events first (after seven of them in a row, one bulk event, so
// that neither lane starves), so a change a client makes while thousands of
// services lapse is published next, not after them, and the reader reads
// past a burst, as far as the bulk lane's bound, instead of leaving what
// follows it in Redis. A live event whose subject still has bulk events
// queued or being published goes into the bulk lane behind them: order per
// subject holds across the lanes. The reader blocks only when the lane an
// entry needs is full. Config.FIFO puts every event in the live lane (one
// FIFO queue per partition, the baseline the benchmarks compare with).
//
// Only one relay publishes at a time: the Redis lease "relay" is taken for
// Config.LeaseTTL and renewed every third of it. A relay that cannot renew
// it steps down before it can expire, drops what it had queued (those entries
// stay pending for the next holder) and waits to take the lease again. At
// every start of leadership, and then every Config.PendingCheck, the relay
// re-reads the group's pending entries and publishes those it does not have
// in flight, so an entry that a stepped-down relay read at the last moment is
// not stranded, and claims the events overdue for redelivery. Entries that
// wait in a lane count as in flight (from their read until their
// acknowledgment), however long they wait: a claim does not publish them
// a second time.
//
// Traces: each publication of an event is one span "relay publish" (of
// Deps.TracerProvider), a child of the trace context of the request that
// made the change (store.Change.TraceParent and TraceState, through the
// event's traceparent and tracestate extensions; a malformed traceparent
// is ignored), else the root of a trace of its own. The event carries the
// span's context on in those extensions (the CloudEvents distributed-tracing extension),
// and the default sender makes each POST to the sink a client span with a
// traceparent header. A failed attempt is an event of the span.
package relay
