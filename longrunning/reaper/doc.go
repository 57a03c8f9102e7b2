// Package reaper is the heartbeat reaper: it suspends MEC services whose
// liveness deadline passed without a heartbeat (MEC 011 ServiceState
// SUSPENDED), so discovery and notifications see them as such.
//
// The store keeps every deadline (last heartbeat + interval + grace) in one
// sorted set. The Agent never scans services: it peeks at the earliest
// deadline (one O(log n) ZRANGE) and sleeps until it, but at most
// Config.MaxPoll, so that an earlier deadline set meanwhile is noticed within
// MaxPoll. Then it claims what is due with store.ClaimExpired, batch after
// batch while batches come back full. Claims are at least Config.Coalesce
// apart: when deadlines fall due every millisecond (a mass expiry), they are
// taken a few hundred at a time rather than in one round trip each.
//
// The claim is one Lua script that removes each deadline and suspends an
// ACTIVE service with a STATE_CHANGED entry in the change stream in the same
// atomic step, so several replicas may run at once without a lease: an
// expiry is acted on exactly once, by whichever replica claims it first. A
// heartbeat after the suspension (store.Heartbeat) makes the service ACTIVE
// again.
//
// Redis failures are logged and retried after a capped exponential backoff
// (Config.MinBackoff to Config.MaxBackoff): the agent recovers on its own
// when Redis comes back, and then acts on the expiries that fell due during
// the outage.
package reaper
