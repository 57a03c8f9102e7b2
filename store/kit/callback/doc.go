// Package callback decides whether a subscriber's callback URL may be used:
// once when the subscription is made (Policy.Validate) and again for every
// connection a notification opens (Policy.Client), because DNS may answer
// differently between the two.
//
// MEC applications register callbackReference URLs that the platform POSTs
// notifications to. An attacker must not be able to aim the platform at its
// own internal endpoints, so by default a callback is refused when its host
// is, or resolves to, any of:
//
//   - loopback (127.0.0.0/8, ::1) or unspecified (0.0.0.0/8, ::);
//   - link-local (169.254.0.0/16, fe80::/10), which covers the cloud metadata
//     address 169.254.169.254;
//   - the other cloud metadata endpoints: fd00:ec2::254 and 100.100.100.200,
//     and the names metadata.google.internal, metadata, instance-data and
//     instance-data.ec2.internal, refused by name whatever they resolve to;
//   - multicast or the IPv4 broadcast address 255.255.255.255;
//   - the platform's own addresses (Options.OwnAddrs and, optionally, the
//     addresses of this host's network interfaces).
//
// An IPv6 address that carries an IPv4 address is judged as itself and as
// every IPv4 address it may stand for, each of which must pass: IPv4-mapped
// (::ffff:127.0.0.1) and IPv4-compatible (::127.0.0.1) addresses, SIIT
// (::ffff:0:a.b.c.d), the NAT64 well-known prefix 64:ff9b::/96 and
// local-use prefix 64:ff9b:1::/48 (every RFC 6052 position), 6to4
// (2002:7f00:1::1 is 127.0.0.1) and Teredo (server and client). Private
// ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: MEC
// applications live on private networks.
//
// An AllowList (the KMEP_CALLBACK_ALLOW setting, see ParseAllowList) opens
// refused addresses or host names for local development and tests: an
// address in an allowed prefix, or a host name the list names, passes even
// though the rules above refuse it. A name refused by name is opened only by
// naming it, not by allowing the address it resolves to.
//
// A deny list (the KMEP_CALLBACK_DENY setting, see ParseDenyList) refuses
// prefixes the rules above permit, such as a cluster's own private ranges;
// it wins over the allow list, host names included.
package callback
