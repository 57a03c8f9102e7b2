package appsupport

import "github.com/kmep-io/kmep/store/mec"

// OperationActions are the operationAction values of an
// AppTerminationConfirmation (MEC 011 2.1.1).
var OperationActions = []string{"TERMINATING", "STOPPING"}

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
