package mec

import "encoding/json"

// Enumerations of MEC 011.
var (
	ServiceStates   = []string{"ACTIVE", "INACTIVE", "SUSPENDED"}
	SerializerTypes = []string{"JSON", "XML", "PROTOBUF3"}
	LocalityTypes   = []string{"MEC_SYSTEM", "MEC_HOST", "NFVI_POP", "ZONE", "ZONE_GROUP", "NFVI_NODE"}
	TransportTypes  = []string{"REST_HTTP", "MB_TOPIC_BASED", "MB_ROUTING", "MB_PUBSUB", "RPC", "RPC_STREAMING", "WEBSOCKET"}
	GrantTypes      = []string{"OAUTH2_AUTHORIZATION_CODE", "OAUTH2_IMPLICIT_GRANT", "OAUTH2_RESOURCE_OWNER", "OAUTH2_CLIENT_CREDENTIALS"}
)

// ServiceInfo is a MEC service (MEC 011 clause 8.1.2.2).
type ServiceInfo struct {
	SerInstanceID     string         `json:"serInstanceId,omitempty"`
	SerName           string         `json:"serName"`
	SerCategory       *CategoryRef   `json:"serCategory,omitempty"`
	Version           string         `json:"version"`
	State             string         `json:"state,omitempty"`
	TransportID       string         `json:"transportId,omitempty"`
	TransportInfo     *TransportInfo `json:"transportInfo,omitempty"`
	Serializer        string         `json:"serializer"`
	ScopeOfLocality   string         `json:"scopeOfLocality,omitempty"`
	ConsumedLocalOnly *bool          `json:"consumedLocalOnly,omitempty"`
	IsLocal           *bool          `json:"isLocal,omitempty"`
	LivenessInterval  int            `json:"livenessInterval,omitempty"`
	Links             *ServiceLinks  `json:"_links,omitempty"`
}

// CategoryRef is a service category reference.
type CategoryRef struct {
	Href    string `json:"href"`
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// TransportInfo describes how a service is reached.
type TransportInfo struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Description      string          `json:"description,omitempty"`
	Type             string          `json:"type"`
	Protocol         string          `json:"protocol"`
	Version          string          `json:"version"`
	Endpoint         *EndPointInfo   `json:"endpoint"`
	Security         *SecurityInfo   `json:"security"`
	ImplSpecificInfo json.RawMessage `json:"implSpecificInfo,omitempty"`
}

// EndPointInfo is one of: uris, fqdn (v3), addresses, alternative.
type EndPointInfo struct {
	URIs        []string        `json:"uris,omitempty"`
	FQDN        []string        `json:"fqdn,omitempty"`
	Addresses   []Address       `json:"addresses,omitempty"`
	Alternative json.RawMessage `json:"alternative,omitempty"`
}

// Address is a host and port.
type Address struct {
	Host string `json:"host"`
	Port uint32 `json:"port"`
}

// SecurityInfo holds the transport's security.
type SecurityInfo struct {
	OAuth2Info *OAuth2Info `json:"oAuth2Info,omitempty"`
}

// OAuth2Info names the OAuth 2.0 grant types and token endpoint.
type OAuth2Info struct {
	GrantTypes    []string `json:"grantTypes"`
	TokenEndpoint string   `json:"tokenEndpoint"`
}

// ServiceLinks are the links of a ServiceInfo in responses. Self.Liveness
// is where EdgeGallery's mep-agent looks for the heartbeat path; Liveness is
// MEC 011 v3's link. Both carry the same path.
type ServiceLinks struct {
	Self     SelfLink `json:"self"`
	Liveness *Link    `json:"liveness,omitempty"`
}

// SelfLink is a link with EdgeGallery's liveness member.
type SelfLink struct {
	Href     string `json:"href"`
	Liveness string `json:"liveness,omitempty"`
}

// Link is a LinkType.
type Link struct {
	Href string `json:"href"`
}

// ServiceLivenessInfo answers GET on a liveness resource (v3 clause 8.1.2.4).
type ServiceLivenessInfo struct {
	State     string    `json:"state"`
	TimeStamp TimeStamp `json:"timeStamp"`
	Interval  int       `json:"interval"`
}

// TimeStamp is seconds and nanoseconds since the Unix epoch.
type TimeStamp struct {
	Seconds     int64 `json:"seconds"`
	NanoSeconds int64 `json:"nanoSeconds"`
}

// ServiceLivenessUpdate is the body of a heartbeat.
type ServiceLivenessUpdate struct {
	State string `json:"state"`
}
