// Package mec defines the ETSI GS MEC 011 data types kmep serves on Mp1
// (ServiceInfo and its parts, ServiceLivenessInfo, TransportInfo) and the
// decoder that reads them: tolerant of what EdgeGallery's mep-agent sends
// (empty strings for absent members, an empty _links object, transportId ""
// beside transportInfo, the v3.1.1 wrapper object), strict on what the
// specification requires, with errors that name the offending field.
package mec
