// Package vpp is the UPF agent's driver for a stock VPP (no custom plugin):
// MEC traffic rules become ACLs of VPP's acl plugin and policies of its abf
// plugin, sent with govpp's generated binapi (go.fd.io/govpp/binapi/acl,
// abf, acl_types, fib_types, ip_types).
//
// Each rule is one ACL. Every traffic filter is expanded by
// dataplane.Matches (protocol names, address ranges → prefixes); each
// match becomes one ACL entry per address family (a match without
// addresses gets 0.0.0.0/0 and ::/0), per protocol (ports without a
// protocol mean TCP, UDP and SCTP), and per pair of source and destination
// port ranges. DROP gives deny entries; PASSTHROUGH and FORWARD_* permit
// entries. Ports given for a protocol without ports, unknown protocols,
// tunnel fields, tokens/tags, QCI/DSCP/TC, the DUPLICATE_* actions, a
// FORWARD_* rule whose destination is a TUNNEL interface (it needs an
// encapsulation), or a MAC interface without dstIpAddress when no default
// next hop is configured, and a rule
// of more than MaxEntries entries, cannot be expressed: Apply returns a
// *dataplane.UnsupportedError and sends nothing, and the agent marks the
// rule FAILED with that reason.
//
// The ACLs are attached to the configured interfaces, input direction,
// with acl_interface_set_acl_list, in priority order. MEC 011 (NOTE 1 of
// TrafficRule in MecAppSupportApi.yaml): "priority in descending order,
// i.e. with 0 as the highest priority and 255 as the lowest", so the rule
// with the lowest priority number comes first; VPP's first matching entry
// on an interface decides. Equal priorities are ordered by the rule key
// (MEC defines no order for them). The agent's ACLs come first; ACLs it
// did not create ("foreign") stay on the interface after them in their
// order, and output ACLs are kept as they were. Because VPP denies what no
// ACL on an interface matches, the driver puts its own permit-everything
// ACL (tag "<prefix>:permit-rest") last while the interface has no foreign
// input ACL, and takes it away with the last rule. VPP's message counts
// the ACLs of an interface in a u8: at most 255 fit (ErrInterfaceFull, a
// transient error: the rule is retried).
//
// FORWARD_DECAPSULATED and FORWARD_ENCAPSULATED rules also get an ABF
// policy (id Config.PolicyBase + the rule's index) that matches with the
// rule's ACL and whose one path is the next hop: the rule's
// dstInterface.dstIpAddress, else (a MAC interface; its dstMacAddress is
// not used, VPP resolves the next hop's) Config.NextHop, through
// Config.NextHopInterface (or a FIB lookup) in Config.TableID. The policy
// is attached to every configured interface for the next hop's family,
// with the rule's priority as ABF priority (lower first, as in MEC). The
// entries of a FORWARD rule are restricted to the next hop's family. The
// ACL of a FORWARD rule stays in the interface ACL list as well, as a
// permit, so a DROP rule of lower priority does not drop what it forwards.
// Known limit: VPP runs ABF after the ACL check, so a PASSTHROUGH rule does
// not keep traffic away from an overlapping FORWARD rule of lower
// priority.
//
// The ACL tag carries the rule: "<prefix>:<priority>:<appInstanceId>:<trafficRuleId>",
// the key cut and followed by "~" and 16 hex digits of its SHA-256 when the
// tag would exceed VPP's 63 bytes. The driver keeps a view of what it
// created, read from VPP with acl_dump, acl_interface_list_dump,
// abf_policy_dump and abf_itf_attach_dump on first use, after Forget (the
// agent calls it at every resync) and after any failed call; it finds its
// ACLs by tag and so replaces them in place with acl_add_replace and their
// known acl_index (Apply is idempotent, also after a restart of the
// agent), and never touches ACLs or ABF policies whose tag is not its own.
// Sweep removes its ACLs of rules the agent does not hold (and duplicates).
// Remove takes the ABF attachments, the policy, the ACL's place on the
// interfaces and the ACL out, in that order (VPP refuses to delete an ACL
// in use). The handle returned is {acl_index} or {acl_index, policy_id};
// the driver relies on its view, not on the handle it is given back.
package vpp
