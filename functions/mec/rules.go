package mec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Rule enumerations of MEC 011.
var (
	FilterTypes    = []string{"FLOW", "PACKET"}
	RuleActions    = []string{"DROP", "FORWARD_DECAPSULATED", "FORWARD_ENCAPSULATED", "PASSTHROUGH", "DUPLICATE_DECAPSULATED", "DUPLICATE_ENCAPSULATED"}
	RuleStates     = []string{"ACTIVE", "INACTIVE"}
	InterfaceTypes = []string{"TUNNEL", "MAC", "IP"}
	TunnelTypes    = []string{"GTP_U", "GRE"}
	IPAddressTypes = []string{"IP_V4", "IP_V6"}
)

// TrafficRule is a MEC 011 traffic rule.
type TrafficRule struct {
	TrafficRuleID string          `json:"trafficRuleId"`
	FilterType    string          `json:"filterType"`
	Priority      int             `json:"priority"`
	TrafficFilter []TrafficFilter `json:"trafficFilter"`
	Action        string          `json:"action"`
	DstInterface  DstInterfaces   `json:"dstInterface,omitempty"`
	State         string          `json:"state"`
}

// TrafficFilter selects traffic.
type TrafficFilter struct {
	SrcAddress       []string `json:"srcAddress,omitempty"`
	DstAddress       []string `json:"dstAddress,omitempty"`
	SrcPort          []string `json:"srcPort,omitempty"`
	DstPort          []string `json:"dstPort,omitempty"`
	Protocol         []string `json:"protocol,omitempty"`
	Token            []string `json:"token,omitempty"`
	SrcTunnelAddress []string `json:"srcTunnelAddress,omitempty"`
	TgtTunnelAddress []string `json:"tgtTunnelAddress,omitempty"`
	SrcTunnelPort    []string `json:"srcTunnelPort,omitempty"`
	DstTunnelPort    []string `json:"dstTunnelPort,omitempty"`
	QCI              *int     `json:"qCI,omitempty"`
	DSCP             *int     `json:"dSCP,omitempty"`
	TC               *int     `json:"tC,omitempty"`
}

// DestinationInterface is where forwarded traffic goes.
type DestinationInterface struct {
	InterfaceType string      `json:"interfaceType"`
	TunnelInfo    *TunnelInfo `json:"tunnelInfo,omitempty"`
	SrcMacAddress string      `json:"srcMacAddress,omitempty"`
	DstMacAddress string      `json:"dstMacAddress,omitempty"`
	DstIPAddress  string      `json:"dstIpAddress,omitempty"`
}

// TunnelInfo describes a tunnel.
type TunnelInfo struct {
	TunnelType       string `json:"tunnelType"`
	TunnelDstAddress string `json:"tunnelDstAddress,omitempty"`
	TunnelSrcAddress string `json:"tunnelSrcAddress,omitempty"`
}

// DstInterfaces is dstInterface: MEC 011 2.1.1 writes one object, the
// prose (and EdgeGallery) up to two in an array. Both are read; one is
// written as an object, two as an array.
type DstInterfaces []DestinationInterface

// UnmarshalJSON accepts an object or an array.
func (d *DstInterfaces) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var one DestinationInterface
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*d = DstInterfaces{one}
		return nil
	}
	var many []DestinationInterface
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*d = many
	return nil
}

// MarshalJSON writes one interface as an object.
func (d DstInterfaces) MarshalJSON() ([]byte, error) {
	if len(d) == 1 {
		return json.Marshal(d[0])
	}
	return json.Marshal([]DestinationInterface(d))
}

// DNSRule is a MEC 011 DNS rule.
type DNSRule struct {
	DNSRuleID     string `json:"dnsRuleId"`
	DomainName    string `json:"domainName"`
	IPAddressType string `json:"ipAddressType"`
	IPAddress     string `json:"ipAddress"`
	TTL           *int   `json:"ttl,omitempty"`
	State         string `json:"state"`
}

// ValidateTrafficRule checks a traffic rule; field is the JSON path prefix
// of the rule in its request ("" for a top-level body). A missing state
// defaults to ACTIVE when defaultState is set (Mm5 configuration).
func ValidateTrafficRule(r *TrafficRule, field string, defaultState bool) error {
	f := func(name string) string { return join(field, name) }
	if err := bounded(f("trafficRuleId"), r.TrafficRuleID, true); err != nil {
		return err
	}
	if strings.ContainsAny(r.TrafficRuleID, "/?#:\x00") {
		return fieldErr(f("trafficRuleId"), "must not contain '/', '?', '#', ':' or NUL")
	}
	if r.FilterType == "" {
		return fieldErr(f("filterType"), "is required")
	}
	if err := oneOf(f("filterType"), r.FilterType, FilterTypes); err != nil {
		return err
	}
	if r.Priority < 0 || r.Priority > 255 {
		return fieldErr(f("priority"), "must be 0..255")
	}
	if len(r.TrafficFilter) == 0 {
		return fieldErr(f("trafficFilter"), "needs at least one filter")
	}
	if len(r.TrafficFilter) > 64 {
		return fieldErr(f("trafficFilter"), "takes at most 64 filters")
	}
	for i, tf := range r.TrafficFilter {
		if err := validateFilter(tf, fmt.Sprintf("%s[%d]", f("trafficFilter"), i)); err != nil {
			return err
		}
	}
	if r.Action == "" {
		return fieldErr(f("action"), "is required")
	}
	if err := oneOf(f("action"), r.Action, RuleActions); err != nil {
		return err
	}
	if len(r.DstInterface) > 2 {
		return fieldErr(f("dstInterface"), "takes at most 2 interfaces")
	}
	if strings.HasPrefix(r.Action, "FORWARD") || strings.HasPrefix(r.Action, "DUPLICATE") {
		if len(r.DstInterface) == 0 {
			return fieldErr(f("dstInterface"), "is required when the action forwards or duplicates")
		}
	}
	for i, di := range r.DstInterface {
		p := fmt.Sprintf("%s[%d]", f("dstInterface"), i)
		if err := oneOf(p+".interfaceType", di.InterfaceType, InterfaceTypes); err != nil {
			return err
		}
		if di.DstIPAddress != "" {
			if _, err := netip.ParseAddr(di.DstIPAddress); err != nil {
				return fieldErr(p+".dstIpAddress", "is not an IP address")
			}
		}
		if di.InterfaceType == "TUNNEL" {
			if di.TunnelInfo == nil {
				return fieldErr(p+".tunnelInfo", "is required for a TUNNEL interface")
			}
			if err := oneOf(p+".tunnelInfo.tunnelType", di.TunnelInfo.TunnelType, TunnelTypes); err != nil {
				return err
			}
		}
	}
	if r.State == "" && defaultState {
		r.State = "ACTIVE"
	}
	if r.State == "" {
		return fieldErr(f("state"), "is required")
	}
	return oneOf(f("state"), r.State, RuleStates)
}

func validateFilter(tf TrafficFilter, p string) error {
	addrs := func(name string, vs []string) error {
		for i, v := range vs {
			if _, err := netip.ParsePrefix(v); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(v); err != nil {
				return fieldErr(fmt.Sprintf("%s.%s[%d]", p, name, i), "is not an IP address or CIDR")
			}
		}
		return nil
	}
	ports := func(name string, vs []string) error {
		for i, v := range vs {
			lo, hi, isRange := strings.Cut(v, "-")
			if !port(lo) || isRange && !port(hi) {
				return fieldErr(fmt.Sprintf("%s.%s[%d]", p, name, i), "is not a port or port range (0..65535)")
			}
		}
		return nil
	}
	for _, c := range []struct {
		name string
		vs   []string
		fn   func(string, []string) error
	}{
		{"srcAddress", tf.SrcAddress, addrs}, {"dstAddress", tf.DstAddress, addrs},
		{"srcTunnelAddress", tf.SrcTunnelAddress, addrs}, {"tgtTunnelAddress", tf.TgtTunnelAddress, addrs},
		{"srcPort", tf.SrcPort, ports}, {"dstPort", tf.DstPort, ports},
		{"srcTunnelPort", tf.SrcTunnelPort, ports}, {"dstTunnelPort", tf.DstTunnelPort, ports},
	} {
		if len(c.vs) > 64 {
			return fieldErr(p+"."+c.name, "takes at most 64 entries")
		}
		if err := c.fn(c.name, c.vs); err != nil {
			return err
		}
	}
	for i, v := range tf.Protocol {
		if v == "" || len(v) > 32 {
			return fieldErr(fmt.Sprintf("%s.protocol[%d]", p, i), "must be a protocol name or number")
		}
	}
	for name, v := range map[string]*int{"qCI": tf.QCI, "dSCP": tf.DSCP, "tC": tf.TC} {
		if v != nil && (*v < 0 || *v > 255) {
			return fieldErr(p+"."+name, "must be 0..255")
		}
	}
	return nil
}

func port(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// ValidateDNSRule checks a DNS rule (see ValidateTrafficRule for field and
// defaultState).
func ValidateDNSRule(r *DNSRule, field string, defaultState bool) error {
	f := func(name string) string { return join(field, name) }
	if err := bounded(f("dnsRuleId"), r.DNSRuleID, true); err != nil {
		return err
	}
	if strings.ContainsAny(r.DNSRuleID, "/?#:\x00") {
		return fieldErr(f("dnsRuleId"), "must not contain '/', '?', '#', ':' or NUL")
	}
	if err := bounded(f("domainName"), r.DomainName, true); err != nil {
		return err
	}
	if !domainName(r.DomainName) {
		return fieldErr(f("domainName"), "is not a domain name")
	}
	if r.IPAddressType == "" {
		return fieldErr(f("ipAddressType"), "is required")
	}
	if err := oneOf(f("ipAddressType"), r.IPAddressType, IPAddressTypes); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(r.IPAddress)
	if err != nil {
		return fieldErr(f("ipAddress"), "is not an IP address")
	}
	if (r.IPAddressType == "IP_V4") != ip.Unmap().Is4() {
		return fieldErr(f("ipAddress"), "does not match ipAddressType %s", r.IPAddressType)
	}
	if r.TTL != nil && (*r.TTL < 0 || *r.TTL > 2147483647) {
		return fieldErr(f("ttl"), "must be 0..2147483647")
	}
	if r.State == "" && defaultState {
		r.State = "ACTIVE"
	}
	if r.State == "" {
		return fieldErr(f("state"), "is required")
	}
	return oneOf(f("state"), r.State, RuleStates)
}

func domainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '*') {
				return false
			}
		}
	}
	return true
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
