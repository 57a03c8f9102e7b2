// Package nft is the UPF agent's driver for the Linux kernel's nftables
// (KMEP_UPF_DRIVER=nftables): MEC traffic rules become nftables rules, sent
// over netlink (NETLINK_NETFILTER, with github.com/google/nftables'
// expressions); no nft binary is needed.
//
// # Tables and chains
//
// The driver owns two tables, both named Config.Table ("kmep"), one per
// family (ip and ip6: nftables' dup statement exists only there, not in
// the inet family), marked with a comment; it refuses to start when a
// table of that name exists that it did not make (ErrForeignTable), and it
// never deletes a table, or a rule or chain it did not make. Each table has
// two base chains on the prerouting hook, policy accept, whose only rules
// are jumps (one per configured interface, or one for every interface):
// "prerouting" (type filter, priority mangle, -150) jumps to "rules", and
// "dstnat" (type nat, priority dstnat, -100) jumps to "nat". "rules" and
// "nat" hold one jump per priority in use, in MEC priority order (0
// first), to that priority's chain ("rules_007", "nat_007"), which holds
// the parts of the traffic rules of that priority; a priority chain and
// its jump go with its last rule (unless someone else's rules are in it:
// they are left where they are, and still reached).
//
// # Rules
//
// A traffic rule becomes one nftables rule ("part") per match of its
// traffic filters (dataplane.Expand: addresses, prefixes and ranges,
// protocols, ports and port ranges, dSCP for IPv4 packets, tC for IPv6
// ones), per protocol (ports without a protocol mean TCP, UDP and SCTP)
// and per pair of source and destination port ranges, in each chain it
// needs, up to MaxParts. Every part carries the comment
// "kmep:<priority>:<appInstanceId>:<trafficRuleId>#<i>/<n>" (Comment,
// Ident), by which the driver finds its rules again after a restart. A
// packet meets the rules in MEC priority order, and the first verdict ends
// its evaluation; rules of equal priority (MEC 011 orders them no further)
// are met in the order they were applied. New parts are appended to their
// priority's chain, so an insertion never walks a long chain.
//
// In the filter chains ("rules_NNN") and the NAT chains ("nat_NNN"):
//
//   - DROP: dropped by the filter chain.
//   - PASSTHROUGH: accepted in both: no lower-priority rule drops, copies
//     or redirects it; it goes where it was going.
//   - FORWARD_DECAPSULATED to dstInterface.dstIpAddress (local breakout):
//     accepted by the filter chain, destination-NATed to that address by
//     the NAT chain.
//     DNAT, not fwmark and policy routing: the MEC app receives the traffic
//     addressed to itself (no transparent socket, no route to the remote
//     address in the app), conntrack rewrites the replies so the UE still
//     talks to the address it dialled, and the whole decision stays in one
//     nftables transaction owned by kmep (policy routing would add ip rules
//     and routes, another netlink family, outside that transaction). NAT
//     decides on a connection's first packet: connections open before a
//     FORWARD rule came (or went) keep their path until they end; filterType
//     PACKET gets the same per-connection behaviour.
//   - DUPLICATE_DECAPSULATED: the filter chain sends a copy (nftables' dup,
//     the packet unchanged, dstInterface[0].dstIpAddress as next hop) and
//     accepts the packet, which goes on to its destination (dstInterface[1],
//     the network side, is where it goes anyway); the NAT chain accepts it.
//
// A FORWARD or DUPLICATE rule acts on the matches of its destination's
// family only. What nftables cannot express is refused with a
// *dataplane.UnsupportedError before anything is sent, so the agent marks
// the rule FAILED with the reason and the kernel holds none of it: tunnel
// addresses and ports and tokens/tags in a filter, qCI, the *_ENCAPSULATED
// actions and TUNNEL destinations (GTP-U or GRE encapsulation), a
// destination without dstIpAddress, ports for a protocol without ports,
// and rules of more than MaxParts parts.
//
// # Transactions
//
// Every Apply, Remove and Batch is one netlink batch: one nf_tables
// transaction, so a packet sees either the old or the new rule set, never
// half of it. A replaced rule's old parts are deleted and its new parts
// added in the same batch. The kernel numbers the new rules of a table in
// the order of the batch, and no other transaction runs during it, so it
// is asked to echo only the first and the last new rule of each table:
// their handles give the others', and the last checks the count (when it
// does not, the view is read again). Batch (the agent's Batcher) puts a
// whole reconcile batch in one transaction (several above 8192 messages,
// each rule whole in one); when the kernel refuses it, its rules are tried
// again in halves, and refused halves in halves again down to single rules,
// so a refused rule fails alone. The driver keeps a view of its
// rules, read from the kernel (a dump per chain, handles and comments
// only) at New, after any failure, and after Forget (every resync) unless
// the kernel's ruleset generation says nothing changed since it was read.
// Missing reports the rules the agent recorded as applied that the kernel
// lacks or holds broken (parts missing, repeated or out of place), and
// Sweep removes its rules the agent does not hold.
//
// New fails at start, saying so, on a kernel without nf_tables
// (ErrNoNFTables) and creates only what is missing: a restarted agent
// whose rules are all in place commits nothing, so traffic in flight sees
// no change (Generation, the kernel's ruleset generation, stays the same).
package nft
