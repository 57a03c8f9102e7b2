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
// IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) are judged as the IPv4
// address they carry. Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7)
// are allowed: MEC applications live on private networks.
//
// An AllowList (the KMEP_CALLBACK_ALLOW setting, see ParseAllowList) opens
// refused addresses or host names for local development and tests: an
// address in an allowed prefix, or a host name the list names, passes even
// though the rules above refuse it. A name refused by name is opened only by
// naming it, not by allowing the address it resolves to.
package callback
