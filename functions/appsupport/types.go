package appsupport

import (
	"bytes"
	"encoding/json"

	"github.com/kmep-io/kmep/functions/mec"
)

// Enumerations of MEC 011 2.1.1 application support.
var (
	FilterTypes      = []string{"FLOW", "PACKET"}
	Actions          = []string{"DROP", "FORWARD_DECAPSULATED", "FORWARD_ENCAPSULATED", "PASSTHROUGH", "DUPLICATE_DECAPSULATED", "DUPLICATE_ENCAPSULATED"}
	RuleStates       = []string{"ACTIVE", "INACTIVE"}
	InterfaceTypes   = []string{"TUNNEL", "MAC", "IP"}
	TunnelTypes      = []string{"GTP_U", "GRE"}
	IPAddressTypes   = []string{"IP_V4", "IP_V6"}
	OperationActions = []string{"TERMINATING", "STOPPING"}
)

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

// AppReadyConfirmation is the body of confirm_ready.
type AppReadyConfirmation struct {
	Indication string `json:"indication"`
}

// AppTerminationConfirmation is the body of confirm_termination.
type AppTerminationConfirmation struct {
	OperationAction string `json:"operationAction"`
}

// CurrentTime answers timing/current_time.
type CurrentTime struct {
	Seconds     int64 `json:"seconds"`
	NanoSeconds int64 `json:"nanoSeconds"`
	// TimeSourceStatus is TRACEABLE or NONTRACEABLE.
	TimeSourceStatus string `json:"timeSourceStatus"`
}

// TimingCaps answers timing/timing_caps.
type TimingCaps struct {
	TimeStamp  mec.TimeStamp `json:"timeStamp"`
	NTPServers []NTPServer   `json:"ntpServers,omitempty"`
	PTPMasters []PTPMaster   `json:"ptpMasters,omitempty"`
}

// NTPServer is an NTP server the platform offers (TimingCaps.ntpServers).
type NTPServer struct {
	// NTPServerAddrType is IP_ADDRESS or DNS_NAME.
	NTPServerAddrType string `json:"ntpServerAddrType"`
	NTPServerAddr     string `json:"ntpServerAddr"`
	// MinPollingInterval and MaxPollingInterval are powers of two
	// (seconds), 3..17.
	MinPollingInterval int `json:"minPollingInterval"`
	MaxPollingInterval int `json:"maxPollingInterval"`
	LocalPriority      int `json:"localPriority"`
	// AuthenticationOption is NONE, SYMMETRIC_KEY or AUTO_KEY.
	AuthenticationOption string `json:"authenticationOption"`
	AuthenticationKeyNum int    `json:"authenticationKeyNum"`
}

// PTPMaster is a PTP master the platform offers (TimingCaps.ptpMasters).
type PTPMaster struct {
	PTPMasterIPAddress     string `json:"ptpMasterIpAddress"`
	PTPMasterLocalPriority int    `json:"ptpMasterLocalPriority"`
	DelayReqMaxRate        int    `json:"delayReqMaxRate"`
}
