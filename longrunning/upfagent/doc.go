// Package upfagent is the UPF agent (Mp2): it keeps a UPF's data plane in
// line with the MEC traffic rules in the store.
//
// Desired state is the store's traffic rules (ACTIVE ones belong in the
// data plane, INACTIVE and deleted ones do not). Applied state is the
// agent's per-rule status records in the store (store.RuleStatus: state,
// digest of the rule version applied, allocated index, driver handle). The
// agent reconciles one against the other, level-triggered: for every rule
// it looks at, it reads the current desired version and the applied
// record, never the content of the change that woke it, so a stale change
// cannot reapply an old version.
//
// When it becomes active, and again after any Redis error (a reconnect) or
// when the data plane signals that it lost its state (Deps.Reset), it
// resynchronises every rule; in between it follows the change stream
// through a consumer group (at least once: entries are acknowledged after
// their rules were reconciled, and an active agent first rereads what its
// predecessor left unacknowledged). Every apply is idempotent.
//
// Each rule gets a small index from the store's allocator (space
// "upf:<UPF>", key "<appInstanceId>:<trafficRuleId>"): the data plane's
// rule id. The index is released when the rule leaves the data plane, and
// a resync releases indexes that no rule holds (an agent that died between
// allocating and recording).
//
// A driver that keeps its own view of the data plane (Forgetter) is told
// to read it again at every resync; a driver that can tell what the data
// plane lacks (Auditor) is asked, at every resync, which rules recorded as
// applied are missing, and those are applied again; a driver that can find
// what it created (Sweeper) removes, at the end of every resync, what it
// holds for rules the agent's records do not say the data plane may hold.
// A driver that makes many changes in one transaction (Batcher) gets each
// reconcile batch in one call instead of a call per rule.
//
// Data-plane errors are retried per rule with capped exponential backoff;
// the status records FAILED with the reason meanwhile, and the desired
// state is never dropped. A rule the driver cannot express
// (dataplane.ErrUnsupported) is recorded FAILED with Permanent set and is
// not retried until it changes. Statuses are also logged (failures at
// warning level) and counted (Stats), once the store holds them.
//
// When the active period ends (shutdown or lease loss) in the middle of a
// batch, no new data-plane call is made, and the calls that completed are
// still recorded (fenced by the lease), so the records do not fall behind
// the data plane; a call cut short is left to the next resync, which redoes
// it.
//
// High availability: any number of agents may run for one UPF; the one
// holding the lease "upfagent:<UPF>" is active, the others wait. The
// active agent renews the lease every third of its TTL and stops touching
// the data plane once the lease could have expired (TTL minus a tenth,
// measured from before the renewal was sent), so the next holder, who can
// only acquire it after Redis expired it, never overlaps with it; status
// writes are fenced by the lease in Redis as well. A standby polls every
// third of the TTL, so it takes over within about 1⅓ × TTL of the active
// agent's death, and begins with a full resync.
package upfagent
