// Package store is the one package that knows kmep's Redis keys, Lua scripts
// and streams.
//
// It keeps MEC service records with an index set per discovery filter (app
// instance, service name, category id, and all services), so no request path
// ever scans the keyspace; app-instance credentials with the secret key sealed
// by AES-256-GCM; token revocations (by generation, announced on the change
// stream), the token requests' failure counters per access key and source,
// and the signatures already used; liveness deadlines in a sorted set;
// subscriptions, traffic and DNS rules, app lifecycle state; app packages,
// their distribution, MEC hosts (kubeconfigs sealed like secret keys) and app
// instances; the UPF agent's rule-index allocator (one Lua
// script per operation) and per-rule status; the mesh agent's peer records
// (with a TTL); consumer groups, leases and done markers for the agents.
// Every mutation of a service, subscription or rule runs as one Lua script
// that changes the state and appends the change event to the change stream
// in the same atomic step: the outbox that the read cache (ServiceCache), notifications, the
// reaper, the UPF agent and the mesh DNS consume. A change made on behalf
// of a request carries the W3C traceparent and tracestate of the request's
// context (Change.TraceParent, Change.TraceState), so its event continues
// the request's trace.
//
// Errors at the boundary are typed: ErrNotFound, ErrConflict,
// ErrPrecondition, ErrForbidden, ErrInvalid, ErrFull (a bounded index space
// is exhausted) and ErrUnavailable (Redis could not be reached, or its
// answer was lost: the write happened once or not at all; ErrReplicas is
// one, a write the required replicas did not acknowledge). redis.Nil never
// leaks out.
//
// Dial opens the client every binary uses: one Redis primary or a primary
// found through Redis Sentinel (redis+sentinel://), never retrying a
// command (a retried write could apply twice), and with min_replicas making
// each write wait (WAIT) until that many replicas have it.
//
// The scripts touch keys they compute from the prefix, so the store needs a
// single Redis primary (or Sentinel), not Redis Cluster.
package store
