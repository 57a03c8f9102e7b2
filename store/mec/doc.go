// Package mec defines the ETSI GS MEC 011 data types kmep serves on Mp1
// (ServiceInfo and its parts, ServiceLivenessInfo, TransportInfo, and the
// TrafficRule and DnsRule of app support and Mm5 appd_configuration) and
// the decoders and validators that read them: tolerant of what
// EdgeGallery's mep-agent sends (empty strings for absent members, an empty
// _links object, transportId "" beside transportInfo, dstInterface as an
// object or an array, the v3.1.1 wrapper object), strict on what the
// specification requires and on what encoding/json would silently alter
// (invalid UTF-8, control characters, null array items, a null body), with
// errors that name the offending field. Every integer member has a
// documented bound (MaxLivenessInterval, MaxTTL, priority 0..255, ports
// 1..65535 or 0..65535 in filters, qCI and tC 0..255, dSCP 0..63).
package mec
