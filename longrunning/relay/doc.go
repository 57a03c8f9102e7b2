// Package relay is the outbox relay: it publishes the store's change stream
// as CloudEvents to a sink (the Knative Broker, K_SINK) with at-least-once
// delivery and per-subject order.
//
// The relay reads the stream through the consumer group "relay" with the
// fixed consumer name "relay", so whichever replica holds the lease inherits
// the entries its predecessor read but never acknowledged. An entry is
// acknowledged (XACK) only after the sink answered 2xx, or at once when
// events.FromChange does not turn it into an event. The group is created
// with "$" at the first start of any relay: changes made before that are
// not published.
//
// Order: events are partitioned by a hash of their subject (the service or
// app instance the change is about) over Config.Workers FIFO workers. A
// failed send blocks its partition and is retried with capped exponential
// backoff and jitter until it succeeds: an event is never skipped and never
// overtaken by a later event of the same subject, while the other partitions
// go on.
//
// Only one relay publishes at a time: the Redis lease "relay" is taken for
// Config.LeaseTTL and renewed every third of it. A relay that cannot renew
// it steps down before it can expire, drops what it had queued (those entries
// stay pending for the next holder) and waits to take the lease again. At
// every start of leadership, and then every Config.PendingCheck, the relay
// re-reads the group's pending entries and publishes those it does not have
// in flight, so an entry that a stepped-down relay read at the last moment is
// not stranded (it is published late, possibly after newer events of its
// subject: at-least-once wins over order in that corner).
package relay
