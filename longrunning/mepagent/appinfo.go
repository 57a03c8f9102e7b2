package mepagent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// AppInstanceInfo is the content of app_instance_info.yaml, EdgeGallery's
// mep-agent configuration file: the services the app provides and the
// service availability subscriptions it wants.
type AppInstanceInfo struct {
	// AppInstanceID is the optional top-level appInstanceId of EdgeGallery's
	// sample file. The binary uses it when APPINSTID is not set.
	AppInstanceID string `yaml:"appInstanceId" json:"appInstanceId,omitempty"`
	// ServiceInfoPosts are registered, one POST each.
	ServiceInfoPosts []ServiceInfo `yaml:"serviceInfoPosts" json:"serviceInfoPosts"`
	// SerAvailabilityNotificationSubscriptions are created once each.
	SerAvailabilityNotificationSubscriptions []Subscription `yaml:"serAvailabilityNotificationSubscriptions" json:"serAvailabilityNotificationSubscriptions"`
}

// ServiceInfo is a service to register (MEC 011 ServiceInfo, as
// EdgeGallery's ServiceInfoPost). Optional members left out of the file are
// left out of the request.
type ServiceInfo struct {
	SerName           string         `yaml:"serName" json:"serName"`
	SerCategory       *CategoryRef   `yaml:"serCategory" json:"serCategory,omitempty"`
	Version           string         `yaml:"version" json:"version"`
	State             string         `yaml:"state" json:"state"`
	TransportID       string         `yaml:"transportId" json:"transportId,omitempty"`
	TransportInfo     *TransportInfo `yaml:"transportInfo" json:"transportInfo,omitempty"`
	Serializer        string         `yaml:"serializer" json:"serializer"`
	ScopeOfLocality   string         `yaml:"scopeOfLocality" json:"scopeOfLocality,omitempty"`
	ConsumedLocalOnly *bool          `yaml:"consumedLocalOnly" json:"consumedLocalOnly,omitempty"`
	IsLocal           *bool          `yaml:"isLocal" json:"isLocal,omitempty"`
	// LivenessInterval is the heartbeat interval in seconds asked for; 0
	// means no heartbeats.
	LivenessInterval int `yaml:"livenessInterval" json:"livenessInterval,omitempty"`
}

// CategoryRef is a service category reference.
type CategoryRef struct {
	Href    string `yaml:"href" json:"href"`
	ID      string `yaml:"id" json:"id"`
	Name    string `yaml:"name" json:"name"`
	Version string `yaml:"version" json:"version"`
}

// TransportInfo describes how the service is reached.
type TransportInfo struct {
	ID          string        `yaml:"id" json:"id"`
	Name        string        `yaml:"name" json:"name"`
	Description string        `yaml:"description" json:"description,omitempty"`
	Type        string        `yaml:"type" json:"type"`
	Protocol    string        `yaml:"protocol" json:"protocol"`
	Version     string        `yaml:"version" json:"version"`
	Endpoint    *EndPointInfo `yaml:"endpoint" json:"endpoint,omitempty"`
	Security    *SecurityInfo `yaml:"security" json:"security,omitempty"`
	// ImplSpecificInfo is passed through as written.
	ImplSpecificInfo map[string]any `yaml:"implSpecificInfo" json:"implSpecificInfo,omitempty"`
}

// EndPointInfo is one of uris, fqdn, addresses and alternative.
type EndPointInfo struct {
	URIs      []string  `yaml:"uris" json:"uris,omitempty"`
	FQDN      []string  `yaml:"fqdn" json:"fqdn,omitempty"`
	Addresses []Address `yaml:"addresses" json:"addresses,omitempty"`
	// Alternative is passed through as written.
	Alternative any `yaml:"alternative" json:"alternative,omitempty"`
}

// Address is a host and a port.
type Address struct {
	Host string `yaml:"host" json:"host"`
	Port uint32 `yaml:"port" json:"port"`
}

// SecurityInfo holds the transport's security.
type SecurityInfo struct {
	OAuth2Info *OAuth2Info `yaml:"oAuth2Info" json:"oAuth2Info,omitempty"`
}

// OAuth2Info names the OAuth 2.0 grant types and token endpoint.
type OAuth2Info struct {
	GrantTypes    []string `yaml:"grantTypes" json:"grantTypes"`
	TokenEndpoint string   `yaml:"tokenEndpoint" json:"tokenEndpoint"`
}

// Subscription is a SerAvailabilityNotificationSubscription to create.
type Subscription struct {
	// SubscriptionType defaults to "SerAvailabilityNotificationSubscription".
	SubscriptionType  string `yaml:"subscriptionType" json:"subscriptionType"`
	CallbackReference string `yaml:"callbackReference" json:"callbackReference"`
	// Links is read for compatibility with EdgeGallery's file and not sent:
	// the platform assigns the subscription's links.
	Links             *SubscriptionLinks `yaml:"links" json:"-"`
	FilteringCriteria *FilteringCriteria `yaml:"filteringCriteria" json:"filteringCriteria,omitempty"`
}

// SubscriptionLinks is EdgeGallery's "links" member of a subscription.
type SubscriptionLinks struct {
	Self struct {
		Href string `yaml:"href"`
	} `yaml:"self"`
}

// FilteringCriteria selects the services a subscription is about.
type FilteringCriteria struct {
	SerInstanceIDs []string      `yaml:"serInstanceIds" json:"serInstanceIds,omitempty"`
	SerNames       []string      `yaml:"serNames" json:"serNames,omitempty"`
	SerCategories  []CategoryRef `yaml:"serCategories" json:"serCategories,omitempty"`
	States         []string      `yaml:"states" json:"states,omitempty"`
	IsLocal        *bool         `yaml:"isLocal" json:"isLocal,omitempty"`
}

// subscriptionTypeSerAvailability is the one subscription type the file holds.
const subscriptionTypeSerAvailability = "SerAvailabilityNotificationSubscription"

// ParseAppInstanceInfo reads app_instance_info.yaml tolerantly: members it
// does not know are ignored and returned in unknown (as
// "path.to.member (line N)") for the caller to log. A member of the wrong
// type, or a file that is not YAML, is an error. An empty file is an empty
// AppInstanceInfo.
func ParseAppInstanceInfo(data []byte) (info AppInstanceInfo, unknown []string, err error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return AppInstanceInfo{}, nil, nil
		}
		return AppInstanceInfo{}, nil, fmt.Errorf("app_instance_info: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return AppInstanceInfo{}, nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return AppInstanceInfo{}, nil, fmt.Errorf("app_instance_info: line %d: the file must be a mapping", root.Line)
	}
	if err := root.Decode(&info); err != nil {
		return AppInstanceInfo{}, nil, fmt.Errorf("app_instance_info: %w", err)
	}
	unknownMembers(root, reflect.TypeOf(info), "", &unknown)
	return info, unknown, nil
}

// unknownMembers appends to out the mapping keys under n that t (a struct,
// a pointer, a slice of them) has no yaml-tagged field for.
func unknownMembers(n *yaml.Node, t reflect.Type, path string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, c := range n.Content {
			unknownMembers(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := make(map[string]reflect.Type, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			p := key.Value
			if path != "" {
				p = path + "." + key.Value
			}
			ft, ok := fields[key.Value]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s (line %d)", p, key.Line))
				continue
			}
			unknownMembers(val, ft, p, out)
		}
	}
}
