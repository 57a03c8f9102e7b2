package appsupport

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/functions/mec"
)

func fieldErr(field, format string, args ...any) *mec.FieldError {
	return &mec.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func oneOf(field, v string, allowed []string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	if !slices.Contains(allowed, v) {
		return fieldErr(field, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}
	return nil
}

// id checks a required identifier or name.
func id(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return fieldErr(field, "is required")
	}
	if len(v) > mec.MaxNameLen {
		return fieldErr(field, "is longer than %d bytes", mec.MaxNameLen)
	}
	return nil
}

func inRange(field string, v *int, lo, hi int) error {
	if v != nil && (*v < lo || *v > hi) {
		return fieldErr(field, "must be %d..%d, not %d", lo, hi, *v)
	}
	return nil
}

// DecodeTrafficRule reads and validates a TrafficRule (MEC 011 2.1.1; the
// v3.1.1 wrapper object is tolerated). It returns the rule and its
// canonical JSON: the validated value re-marshalled. Errors are
// *mec.FieldError naming the member.
//
// Beyond the schema's types and enumerations: priority is 0..255;
// trafficFilter has at least one entry; addresses are an IP address, a
// prefix or a range "a-b"; ports a port or a range "p-q"; qCI and tC are
// 0..255, dSCP 0..63. dstInterface (an object, or an array of up to two)
// holds no entry for DROP, one for FORWARD_*, at most one for PASSTHROUGH
// and two for DUPLICATE_*; an IP interface needs dstIpAddress, a MAC
// interface dstMacAddress, a TUNNEL interface tunnelInfo.
func DecodeTrafficRule(raw []byte) (TrafficRule, []byte, error) {
	var tr TrafficRule
	if err := mec.DecodeBytes(raw, "TrafficRule", &tr); err != nil {
		return tr, nil, err
	}
	if err := validateTrafficRule(&tr); err != nil {
		return tr, nil, err
	}
	b, err := json.Marshal(tr)
	return tr, b, err
}

func validateTrafficRule(tr *TrafficRule) error {
	if err := id("trafficRuleId", tr.TrafficRuleID); err != nil {
		return err
	}
	if len(tr.SerName) > mec.MaxNameLen {
		return fieldErr("serName", "is longer than %d bytes", mec.MaxNameLen)
	}
	if err := oneOf("filterType", tr.FilterType, FilterTypes); err != nil {
		return err
	}
	if tr.Priority == nil {
		return fieldErr("priority", "is required")
	}
	if err := inRange("priority", tr.Priority, 0, 255); err != nil {
		return err
	}
	if len(tr.TrafficFilter) == 0 {
		return fieldErr("trafficFilter", "needs at least one TrafficFilter")
	}
	for i := range tr.TrafficFilter {
		if err := validateFilter(fmt.Sprintf("trafficFilter[%d]", i), &tr.TrafficFilter[i]); err != nil {
			return err
		}
	}
	if err := oneOf("action", tr.Action, Actions); err != nil {
		return err
	}
	var dsts []DestinationInterface
	if tr.DstInterface != nil {
		dsts = tr.DstInterface.List
	}
	if len(dsts) == 0 {
		tr.DstInterface = nil
	}
	lo, hi := 0, 0
	switch tr.Action {
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
		return fieldErr("dstInterface", "action %s takes %s, not %d", tr.Action, want, n)
	}
	for i, d := range dsts {
		field := "dstInterface"
		if tr.DstInterface.Array {
			field = fmt.Sprintf("dstInterface[%d]", i)
		}
		if err := validateInterface(field, d); err != nil {
			return err
		}
	}
	return oneOf("state", tr.State, RuleStates)
}

func validateFilter(field string, f *TrafficFilter) error {
	for _, l := range []struct {
		name  string
		vs    []string
		check func(string) bool
	}{
		{"srcAddress", f.SrcAddress, isAddressRange}, {"dstAddress", f.DstAddress, isAddressRange},
		{"srcPort", f.SrcPort, isPortRange}, {"dstPort", f.DstPort, isPortRange},
		{"protocol", f.Protocol, nil}, {"token", f.Token, nil}, {"tag", f.Tag, nil},
		{"srcTunnelAddress", f.SrcTunnelAddress, isAddressRange}, {"tgtTunnelAddress", f.TgtTunnelAddress, isAddressRange},
		{"srcTunnelPort", f.SrcTunnelPort, isPortRange}, {"dstTunnelPort", f.DstTunnelPort, isPortRange},
	} {
		for i, v := range l.vs {
			name := fmt.Sprintf("%s.%s[%d]", field, l.name, i)
			if err := id(name, v); err != nil {
				return err
			}
			if l.check != nil && !l.check(v) {
				kind := "an IP address, a prefix or a range a-b"
				if strings.HasSuffix(l.name, "Port") {
					kind = "a port or a range p-q of 0..65535"
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
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// isPortRange accepts a port or a range p-q (p <= q) of 0..65535.
func isPortRange(s string) bool {
	port := func(s string) (int, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		return n, err == nil && n >= 0 && n <= 65535
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		lo, ok1 := port(a)
		hi, ok2 := port(b)
		return ok1 && ok2 && lo <= hi
	}
	_, ok := port(s)
	return ok
}

func validateInterface(field string, d DestinationInterface) error {
	if err := oneOf(field+".interfaceType", d.InterfaceType, InterfaceTypes); err != nil {
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
		if err := oneOf(field+".tunnelInfo.tunnelType", t.TunnelType, TunnelTypes); err != nil {
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

// MaxTTL is the largest DNS TTL (RFC 2181: 2^31 - 1 seconds).
const MaxTTL = 1<<31 - 1

// DecodeDNSRule reads and validates a DnsRule (MEC 011 2.1.1; the v3.1.1
// wrapper object is tolerated). It returns the rule and its canonical JSON.
// Beyond the schema: domainName is a DNS name (labels of letters, digits,
// '-' and '_', 1..63 bytes each, 253 in all, a leading "*." allowed, a
// trailing dot allowed); ipAddress parses as the family ipAddressType
// names; ttl is 0..2^31-1 when present. Errors are *mec.FieldError.
func DecodeDNSRule(raw []byte) (DNSRule, []byte, error) {
	var r DNSRule
	if err := mec.DecodeBytes(raw, "DnsRule", &r); err != nil {
		return r, nil, err
	}
	if err := validateDNSRule(&r); err != nil {
		return r, nil, err
	}
	b, err := json.Marshal(r)
	return r, b, err
}

func validateDNSRule(r *DNSRule) error {
	if err := id("dnsRuleId", r.DNSRuleID); err != nil {
		return err
	}
	if r.DomainName == "" {
		return fieldErr("domainName", "is required")
	}
	if !isDomainName(r.DomainName) {
		return fieldErr("domainName", "must be a DNS name, not %q", r.DomainName)
	}
	if err := oneOf("ipAddressType", r.IPAddressType, IPAddressTypes); err != nil {
		return err
	}
	if r.IPAddress == "" {
		return fieldErr("ipAddress", "is required")
	}
	a, err := netip.ParseAddr(r.IPAddress)
	switch {
	case err != nil || a.Zone() != "":
		return fieldErr("ipAddress", "must be an IP address, not %q", r.IPAddress)
	case r.IPAddressType == "IP_V4" && !a.Is4():
		return fieldErr("ipAddress", "must be an IPv4 address (ipAddressType IP_V4), not %q", r.IPAddress)
	case r.IPAddressType == "IP_V6" && !a.Is6():
		return fieldErr("ipAddress", "must be an IPv6 address (ipAddressType IP_V6), not %q", r.IPAddress)
	}
	if r.TTL != nil && (*r.TTL < 0 || *r.TTL > MaxTTL) {
		return fieldErr("ttl", "must be 0..%d seconds, not %d", MaxTTL, *r.TTL)
	}
	return oneOf("state", r.State, RuleStates)
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

// appInfo types the AppInfo members kmep knows (MEC 011 3.1.1 clause
// 7.1.2.6) so that a mistyped one is refused; the stored body keeps every
// member as sent.
type appInfo struct {
	AppName            string              `json:"appName"`
	AppProvider        string              `json:"appProvider"`
	AppCategory        *mec.CategoryRef    `json:"appCategory"`
	AppDID             string              `json:"appDId"`
	AppInstanceID      string              `json:"appInstanceId"`
	Endpoint           *mec.EndPointInfo   `json:"endpoint"`
	AppServiceRequired []serviceDependency `json:"appServiceRequired"`
	AppServiceOptional []serviceDependency `json:"appServiceOptional"`
	AppFeatureRequired []featureDependency `json:"appFeatureRequired"`
	AppFeatureOptional []featureDependency `json:"appFeatureOptional"`
	IsInsByMec         *bool               `json:"isInsByMec"`
	AppProfile         map[string]any      `json:"appProfile"`
}

type serviceDependency struct {
	SerName                  string           `json:"serName"`
	SerCategory              *mec.CategoryRef `json:"serCategory"`
	Version                  string           `json:"version"`
	SerTransportDependencies []map[string]any `json:"serTransportDependencies"`
	RequestedPermissions     json.RawMessage  `json:"requestedPermissions"`
}

type featureDependency struct {
	FeatureName string `json:"featureName"`
	Version     string `json:"version"`
}

// DecodeAppInfo reads and validates an AppInfo (MEC 011 3.1.1; the wrapper
// object is tolerated). appName and appInstanceId are required (kmep's app
// instances are all instantiated by MEC management); the members kmep knows
// must have their types; every member is kept. It returns the
// appInstanceId and the canonical JSON (members in name order).
func DecodeAppInfo(raw []byte) (string, []byte, error) {
	var ai appInfo
	if err := mec.DecodeBytes(raw, "AppInfo", &ai); err != nil {
		return "", nil, err
	}
	var members map[string]json.RawMessage
	if err := mec.DecodeBytes(raw, "AppInfo", &members); err != nil {
		return "", nil, err
	}
	if err := id("appName", ai.AppName); err != nil {
		return "", nil, err
	}
	if err := id("appInstanceId", ai.AppInstanceID); err != nil {
		return "", nil, err
	}
	for _, l := range []struct {
		name string
		deps []serviceDependency
	}{{"appServiceRequired", ai.AppServiceRequired}, {"appServiceOptional", ai.AppServiceOptional}} {
		for i, d := range l.deps {
			if err := id(fmt.Sprintf("%s[%d].serName", l.name, i), d.SerName); err != nil {
				return "", nil, err
			}
			if err := id(fmt.Sprintf("%s[%d].version", l.name, i), d.Version); err != nil {
				return "", nil, err
			}
		}
	}
	for _, l := range []struct {
		name  string
		feats []featureDependency
	}{{"appFeatureRequired", ai.AppFeatureRequired}, {"appFeatureOptional", ai.AppFeatureOptional}} {
		for i, f := range l.feats {
			if err := id(fmt.Sprintf("%s[%d].featureName", l.name, i), f.FeatureName); err != nil {
				return "", nil, err
			}
			if err := id(fmt.Sprintf("%s[%d].version", l.name, i), f.Version); err != nil {
				return "", nil, err
			}
		}
	}
	body, err := json.Marshal(members) // compacts each member

	return ai.AppInstanceID, body, err
}
