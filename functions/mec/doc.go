// Package mec defines the ETSI GS MEC 011 data types kmep serves on Mp1
// (ServiceInfo and its parts, ServiceLivenessInfo, TransportInfo, and the
// TrafficRule and DnsRule of app support and Mm5 appd_configuration) and
// the decoders and validators that read them: tolerant of what
// EdgeGallery's mep-agent sends (empty strings for absent members, an empty
// _links object, transportId "" beside transportInfo, dstInterface as an
// object or an array, the v3.1.1 wrapper object), strict on what the
// specification requires, with errors that name the offending field.
package mec
