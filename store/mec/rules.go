package mec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Rule enumerations of MEC 011 2.1.1 application support.
var (
	FilterTypes    = []string{"FLOW", "PACKET"}
	RuleActions    = []string{"DROP", "FORWARD_DECAPSULATED", "FORWARD_ENCAPSULATED", "PASSTHROUGH", "DUPLICATE_DECAPSULATED", "DUPLICATE_ENCAPSULATED"}
	RuleStates     = []string{"ACTIVE", "INACTIVE"}
	InterfaceTypes = []string{"TUNNEL", "MAC", "IP"}
	TunnelTypes    = []string{"GTP_U", "GRE"}
	IPAddressTypes = []string{"IP_V4", "IP_V6"}
)

// MaxTTL is the largest DNS TTL (RFC 2181: 2^31 - 1 seconds).
const MaxTTL = 1<<31 - 1

// maxRuleList bounds trafficFilter and every list of a TrafficFilter.
const maxRuleList = 64

// TrafficRule is a traffic rule of an app instance (MEC 011 clause 7.1.2.2).
type TrafficRule struct {
	TrafficRuleID string `json:"trafficRuleId"`
	// SerName is not in the 2.1.1 schema but in its examples; it is kept.
	SerName       string          `json:"serName,omitempty"`
	FilterType    string          `json:"filterType"`
	Priority      *int            `json:"priority"`
	TrafficFilter []TrafficFilter `json:"trafficFilter"`
	Action        string          `json:"action"`
	DstInterface  *DstInterfaces  `json:"dstInterface,omitempty"`
	State         string          `json:"state"`
}

// TrafficFilter selects the packets a traffic rule applies to.
type TrafficFilter struct {
	SrcAddress []string `json:"srcAddress,omitempty"`
	DstAddress []string `json:"dstAddress,omitempty"`
	SrcPort    []string `json:"srcPort,omitempty"`
	DstPort    []string `json:"dstPort,omitempty"`
	Protocol   []string `json:"protocol,omitempty"`
	// Token is 2.1.1's name; Tag is 3.1.1's. Both are kept.
	Token            []string `json:"token,omitempty"`
	Tag              []string `json:"tag,omitempty"`
	SrcTunnelAddress []string `json:"srcTunnelAddress,omitempty"`
	TgtTunnelAddress []string `json:"tgtTunnelAddress,omitempty"`
	SrcTunnelPort    []string `json:"srcTunnelPort,omitempty"`
	DstTunnelPort    []string `json:"dstTunnelPort,omitempty"`
	QCI              *int     `json:"qCI,omitempty"`
	DSCP             *int     `json:"dSCP,omitempty"`
	TC               *int     `json:"tC,omitempty"`
}

// DestinationInterface is where matching packets go.
type DestinationInterface struct {
	InterfaceType string      `json:"interfaceType"`
	TunnelInfo    *TunnelInfo `json:"tunnelInfo,omitempty"`
	SrcMACAddress string      `json:"srcMacAddress,omitempty"`
	DstMACAddress string      `json:"dstMacAddress,omitempty"`
	DstIPAddress  string      `json:"dstIpAddress,omitempty"`
}

// TunnelInfo describes a tunnel destination.
type TunnelInfo struct {
	TunnelType       string `json:"tunnelType"`
	TunnelDstAddress string `json:"tunnelDstAddress,omitempty"`
	TunnelSrcAddress string `json:"tunnelSrcAddress,omitempty"`
}

// DstInterfaces is a traffic rule's dstInterface. The 2.1.1 schema writes
// one DestinationInterface object; its prose (two values for the
// DUPLICATE actions) and EdgeGallery write an array of up to two. Both are
// read, and the value is written back in the form it was read.
type DstInterfaces struct {
	List []DestinationInterface
	// Array is true when dstInterface was (and is written as) an array.
	Array bool
}

// UnmarshalJSON reads an object or an array of objects.
func (d *DstInterfaces) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		d.Array = true
		return json.Unmarshal(b, &d.List)
	}
	var one DestinationInterface
	if err := json.Unmarshal(b, &one); err != nil {
		return err
	}
	d.Array = false
	d.List = nil
	if one != (DestinationInterface{}) {
		// {} is how EdgeGallery says "none".
		d.List = []DestinationInterface{one}
	}
	return nil
}

// MarshalJSON writes the form that was read: an array, or the one object.
func (d DstInterfaces) MarshalJSON() ([]byte, error) {
	if d.Array || len(d.List) != 1 {
		if d.List == nil {
			return []byte("[]"), nil
		}
		return json.Marshal(d.List)
	}
	return json.Marshal(d.List[0])
}

// DNSRule is a DNS rule of an app instance (MEC 011 clause 7.1.2.3).
type DNSRule struct {
	DNSRuleID     string `json:"dnsRuleId"`
	DomainName    string `json:"domainName"`
	IPAddressType string `json:"ipAddressType"`
	IPAddress     string `json:"ipAddress"`
	// TTL in seconds; absent: the rule does not expire.
	TTL   *int64 `json:"ttl,omitempty"`
	State string `json:"state"`
}

// DecodeTrafficRule reads and validates a top-level TrafficRule body
// (MEC 011 2.1.1; the v3.1.1 wrapper object is tolerated; state is
// required). It returns the rule and its canonical JSON: the validated
// value re-marshalled. Errors are *FieldError naming the member.
func DecodeTrafficRule(raw []byte) (TrafficRule, []byte, error) {
	var tr TrafficRule
	if err := DecodeBytes(raw, "TrafficRule", &tr); err != nil {
		return tr, nil, err
	}
	if err := ValidateTrafficRule(&tr, "", false); err != nil {
		return tr, nil, err
	}
	b, err := json.Marshal(tr)
	return tr, b, err
}

// DecodeDNSRule reads and validates a top-level DnsRule body (MEC 011
// 2.1.1; the v3.1.1 wrapper object is tolerated; state is required). It
// returns the rule and its canonical JSON. Errors are *FieldError.
func DecodeDNSRule(raw []byte) (DNSRule, []byte, error) {
	var r DNSRule
	if err := DecodeBytes(raw, "DnsRule", &r); err != nil {
		return r, nil, err
	}
	if err := ValidateDNSRule(&r, "", false); err != nil {
		return r, nil, err
	}
	b, err := json.Marshal(r)
	return r, b, err
}

// ValidateRuleID checks a trafficRuleId or dnsRuleId: required, at most
// MaxNameLen bytes, and free of '/', '?', '#' and NUL (it is a path
// segment of the rule's resource) and of ':' (the store joins app and rule
// ids with ':' in its keys).
func ValidateRuleID(field, id string) error {
	if err := bounded(field, id, true); err != nil {
		return err
	}
	if strings.ContainsAny(id, "/?#:\x00") {
		return fieldErr(field, "must not contain '/', '?', '#', ':' or NUL")
	}
	return nil
}

// ValidateTrafficRule checks a traffic rule. field is the JSON path of the
// rule in its request ("" for a top-level body, "appTrafficRule[0]" in an
// Mm5 configuration); errors are *FieldError naming the member under it.
// A missing state becomes ACTIVE when defaultState is set (Mm5), and is
// refused otherwise. An empty dstInterface becomes absent.
//
// Beyond the schema's types and enumerations: trafficRuleId passes
// ValidateRuleID; priority is required, 0..255; trafficFilter has 1 to 64
// entries and each list in a filter at most 64 non-empty strings;
// addresses are an IP address, a prefix or a range "a-b" of one family;
// ports a port or a range "p-q" of 0..65535 (decimal digits only);
// protocol names are at most 32 bytes; qCI and tC are 0..255, dSCP 0..63.
// dstInterface (an object, or an array of up to two) holds no entry for
// DROP, one for FORWARD_*, at most one for PASSTHROUGH and two for
// DUPLICATE_*; an IP interface needs dstIpAddress, a MAC interface
// dstMacAddress, a TUNNEL interface tunnelInfo, and the addresses given
// must parse.
func ValidateTrafficRule(r *TrafficRule, field string, defaultState bool) error {
	f := func(name string) string { return join(field, name) }
	if err := ValidateRuleID(f("trafficRuleId"), r.TrafficRuleID); err != nil {
		return err
	}
	if err := bounded(f("serName"), r.SerName, false); err != nil {
		return err
	}
	if err := enum(f("filterType"), r.FilterType, FilterTypes); err != nil {
		return err
	}
	if r.Priority == nil {
		return fieldErr(f("priority"), "is required")
	}
	if err := inRange(f("priority"), r.Priority, 0, 255); err != nil {
		return err
	}
	if len(r.TrafficFilter) == 0 {
		return fieldErr(f("trafficFilter"), "needs at least one TrafficFilter")
	}
	if len(r.TrafficFilter) > maxRuleList {
		return fieldErr(f("trafficFilter"), "takes at most %d filters", maxRuleList)
	}
	for i := range r.TrafficFilter {
		if err := validateFilter(f(fmt.Sprintf("trafficFilter[%d]", i)), &r.TrafficFilter[i]); err != nil {
			return err
		}
	}
	if err := enum(f("action"), r.Action, RuleActions); err != nil {
		return err
	}
	var dsts []DestinationInterface
	if r.DstInterface != nil {
		dsts = r.DstInterface.List
	}
	if len(dsts) == 0 {
		r.DstInterface = nil
	}
	lo, hi := 0, 0
	switch r.Action {
	case "FORWARD_DECAPSULATED", "FORWARD_ENCAPSULATED":
		lo, hi = 1, 1
	case "PASSTHROUGH":
		hi = 1
	case "DUPLICATE_DECAPSULATED", "DUPLICATE_ENCAPSULATED":
		lo, hi = 2, 2
	}
	if n := len(dsts); n < lo || n > hi {
		want := map[[2]int]string{{0, 0}: "no destination interface", {1, 1}: "one destination interface",
			{0, 1}: "at most one destination interface", {2, 2}: "two destination interfaces (an array)"}[[2]int{lo, hi}]
		return fieldErr(f("dstInterface"), "action %s takes %s, not %d", r.Action, want, n)
	}
	for i, d := range dsts {
		name := "dstInterface"
		if r.DstInterface.Array {
			name = fmt.Sprintf("dstInterface[%d]", i)
		}
		if err := validateInterface(f(name), d); err != nil {
			return err
		}
	}
	return validateState(f("state"), &r.State, defaultState)
}

// ValidateDNSRule checks a DNS rule; field and defaultState are as for
// ValidateTrafficRule.
//
// Beyond the schema: dnsRuleId passes ValidateRuleID; domainName is a DNS
// name (labels of letters, digits, '-' and '_', 1..63 bytes each, not
// starting or ending with '-', 253 in all, a leading "*." allowed, a
// trailing dot allowed); ipAddress parses as the family ipAddressType
// names (an IPv4-mapped IPv6 address is IP_V6); ttl is 0..MaxTTL when
// present.
func ValidateDNSRule(r *DNSRule, field string, defaultState bool) error {
	f := func(name string) string { return join(field, name) }
	if err := ValidateRuleID(f("dnsRuleId"), r.DNSRuleID); err != nil {
		return err
	}
	if r.DomainName == "" {
		return fieldErr(f("domainName"), "is required")
	}
	if !isDomainName(r.DomainName) {
		return fieldErr(f("domainName"), "must be a DNS name, not %q", r.DomainName)
	}
	if err := enum(f("ipAddressType"), r.IPAddressType, IPAddressTypes); err != nil {
		return err
	}
	if r.IPAddress == "" {
		return fieldErr(f("ipAddress"), "is required")
	}
	a, err := netip.ParseAddr(r.IPAddress)
	switch {
	case err != nil || a.Zone() != "":
		return fieldErr(f("ipAddress"), "must be an IP address, not %q", r.IPAddress)
	case r.IPAddressType == "IP_V4" && !a.Is4():
		return fieldErr(f("ipAddress"), "must be an IPv4 address (ipAddressType IP_V4), not %q", r.IPAddress)
	case r.IPAddressType == "IP_V6" && !a.Is6():
		return fieldErr(f("ipAddress"), "must be an IPv6 address (ipAddressType IP_V6), not %q", r.IPAddress)
	}
	if r.TTL != nil && (*r.TTL < 0 || *r.TTL > MaxTTL) {
		return fieldErr(f("ttl"), "must be 0..%d seconds, not %d", MaxTTL, *r.TTL)
	}
	return validateState(f("state"), &r.State, defaultState)
}

func validateState(field string, state *string, defaultState bool) error {
	if *state == "" && defaultState {
		*state = "ACTIVE"
	}
	return enum(field, *state, RuleStates)
}

// enum checks a required member with enumerated values.
func enum(field, v string, allowed []string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	return oneOf(field, v, allowed)
}

func inRange(field string, v *int, lo, hi int) error {
	if v != nil && (*v < lo || *v > hi) {
		return fieldErr(field, "must be %d..%d, not %d", lo, hi, *v)
	}
	return nil
}

func validateFilter(field string, f *TrafficFilter) error {
	for _, l := range []struct {
		name  string
		vs    []string
		check func(string) bool
	}{
		{"srcAddress", f.SrcAddress, isAddressRange}, {"dstAddress", f.DstAddress, isAddressRange},
		{"srcPort", f.SrcPort, isPortRange}, {"dstPort", f.DstPort, isPortRange},
		{"protocol", f.Protocol, isProtocol}, {"token", f.Token, nil}, {"tag", f.Tag, nil},
		{"srcTunnelAddress", f.SrcTunnelAddress, isAddressRange}, {"tgtTunnelAddress", f.TgtTunnelAddress, isAddressRange},
		{"srcTunnelPort", f.SrcTunnelPort, isPortRange}, {"dstTunnelPort", f.DstTunnelPort, isPortRange},
	} {
		if len(l.vs) > maxRuleList {
			return fieldErr(field+"."+l.name, "takes at most %d entries", maxRuleList)
		}
		for i, v := range l.vs {
			name := fmt.Sprintf("%s.%s[%d]", field, l.name, i)
			if err := bounded(name, v, true); err != nil {
				return err
			}
			if l.check != nil && !l.check(v) {
				kind := "an IP address, a prefix or a range a-b"
				switch {
				case strings.HasSuffix(l.name, "Port"):
					kind = "a port or a range p-q of 0..65535"
				case l.name == "protocol":
					kind = "a protocol name or number (at most 32 bytes)"
				}
				return fieldErr(name, "must be %s, not %q", kind, v)
			}
		}
	}
	if err := inRange(field+".qCI", f.QCI, 0, 255); err != nil {
		return err
	}
	if err := inRange(field+".dSCP", f.DSCP, 0, 63); err != nil {
		return err
	}
	return inRange(field+".tC", f.TC, 0, 255)
}

func isProtocol(s string) bool { return len(s) <= 32 }

// isAddressRange accepts an IP address, a prefix (192.168.2.0/24,
// 2001:db8::/32) or a range of addresses of one family (a-b, a <= b).
func isAddressRange(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
		hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
		return err1 == nil && err2 == nil && lo.Zone() == "" && hi.Zone() == "" && lo.Is4() == hi.Is4() && lo.Compare(hi) <= 0
	}
	return isAddr(s)
}

// isPortRange accepts a port or a range p-q (p <= q) of 0..65535, in
// decimal digits.
func isPortRange(s string) bool {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	lo, ok1 := port(a)
	hi, ok2 := port(b)
	return ok1 && ok2 && lo <= hi
}

func port(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 65535
}

func validateInterface(field string, d DestinationInterface) error {
	if err := enum(field+".interfaceType", d.InterfaceType, InterfaceTypes); err != nil {
		return err
	}
	switch d.InterfaceType {
	case "IP":
		if d.DstIPAddress == "" {
			return fieldErr(field+".dstIpAddress", "is required for interfaceType IP")
		}
	case "MAC":
		if d.DstMACAddress == "" {
			return fieldErr(field+".dstMacAddress", "is required for interfaceType MAC")
		}
	case "TUNNEL":
		if d.TunnelInfo == nil {
			return fieldErr(field+".tunnelInfo", "is required for interfaceType TUNNEL")
		}
	}
	if d.DstIPAddress != "" && !isAddr(d.DstIPAddress) {
		return fieldErr(field+".dstIpAddress", "must be an IP address, not %q", d.DstIPAddress)
	}
	for _, m := range [][2]string{{"srcMacAddress", d.SrcMACAddress}, {"dstMacAddress", d.DstMACAddress}} {
		if m[1] == "" {
			continue
		}
		if hw, err := net.ParseMAC(m[1]); err != nil || len(hw) != 6 {
			return fieldErr(field+"."+m[0], "must be a MAC address, not %q", m[1])
		}
	}
	if t := d.TunnelInfo; t != nil {
		if err := enum(field+".tunnelInfo.tunnelType", t.TunnelType, TunnelTypes); err != nil {
			return err
		}
		for _, a := range [][2]string{{"tunnelDstAddress", t.TunnelDstAddress}, {"tunnelSrcAddress", t.TunnelSrcAddress}} {
			if a[1] != "" && !isAddr(a[1]) {
				return fieldErr(field+".tunnelInfo."+a[0], "must be an IP address, not %q", a[1])
			}
		}
	}
	return nil
}

func isAddr(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func isDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for i, l := range strings.Split(s, ".") {
		if l == "*" && i == 0 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// join prefixes name with the path of the object holding it.
func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
