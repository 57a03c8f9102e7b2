// Package nameserver is the mesh agent's DNS server. It answers, over UDP
// and TCP, the domain names of the ACTIVE DNS rules of MEC 011 (A or AAAA
// with the rule's TTL) and the names of ACTIVE MEC services in its zone
// (`<serName>.<zone>`: the addresses of their transportInfo endpoints, and
// SRV records for host and port). It keeps both in memory, loaded from the
// store and then kept current by following the change stream. Rebuilds of
// the answers are coalesced (at most one per 100 ms, or per ten times the
// last rebuild's duration when the zone is large, never more than 800 ms
// apart), so an update is answered within 0.1–0.8 s. Any other
// name is forwarded to the upstream resolvers and the answer cached for its
// TTL.
//
// It always answers: NXDOMAIN for unknown names in its zone, SERVFAIL when
// every upstream fails, FORMERR for malformed queries, NOTIMP for other
// opcodes; EDNS0 sizes are honoured and oversized UDP answers truncated
// (TC set) so the client retries over TCP.
package nameserver
