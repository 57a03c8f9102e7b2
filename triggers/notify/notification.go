package notify

import (
	"encoding/json"
	"net/url"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/events"
)

// API roots of the notifications' links.
const (
	ServiceMgmtPath = "/mep/mec_service_mgmt/v1"
	AppSupportPath  = "/mep/mec_app_support/v1"
)

// Notification types and the termination's operation action (MEC 011).
const (
	TypeServiceAvailability = "SerAvailabilityNotification"
	TypeAppTermination      = "AppTerminationNotification"
	ActionTerminating       = "TERMINATING"
)

type link struct {
	Href string `json:"href"`
}

// serviceReference is ServiceAvailabilityNotification.ServiceReferences.
type serviceReference struct {
	Link          link   `json:"link"`
	SerName       string `json:"serName"`
	SerInstanceID string `json:"serInstanceId"`
	State         string `json:"state"`
	ChangeType    string `json:"changeType"`
}

type subscriptionLinks struct {
	Subscription link `json:"subscription"`
}

// serviceAvailabilityNotification is MEC 011's ServiceAvailabilityNotification.
type serviceAvailabilityNotification struct {
	NotificationType  string             `json:"notificationType"`
	ServiceReferences []serviceReference `json:"serviceReferences"`
	Links             subscriptionLinks  `json:"_links"`
}

type terminationLinks struct {
	Subscription       link `json:"subscription"`
	ConfirmTermination link `json:"confirmTermination"`
}

// appTerminationNotification is MEC 011's AppTerminationNotification.
type appTerminationNotification struct {
	NotificationType   string           `json:"notificationType"`
	OperationAction    string           `json:"operationAction"`
	MaxGracefulTimeout int              `json:"maxGracefulTimeout"`
	Links              terminationLinks `json:"_links"`
}

func appPath(root, app string) string {
	return root + "/applications/" + url.PathEscape(app)
}

// serviceNotification renders the ServiceAvailabilityNotification of d for
// subscription sub.
func serviceNotification(d events.ServiceChanged, sub store.Subscription) ([]byte, error) {
	href := d.Href
	if href == "" {
		href = events.ServicePath(d.AppInstanceID, d.SerInstanceID)
	}
	return json.Marshal(serviceAvailabilityNotification{
		NotificationType: TypeServiceAvailability,
		ServiceReferences: []serviceReference{{Link: link{Href: href}, SerName: d.SerName,
			SerInstanceID: d.SerInstanceID, State: d.State, ChangeType: d.ChangeType}},
		Links: subscriptionLinks{Subscription: link{
			Href: appPath(ServiceMgmtPath, sub.AppInstanceID) + "/subscriptions/" + url.PathEscape(sub.ID)}},
	})
}

// terminationNotification renders the AppTerminationNotification of app for
// subscription sub.
func terminationNotification(app string, maxGraceful int, sub store.Subscription) ([]byte, error) {
	base := appPath(AppSupportPath, app)
	return json.Marshal(appTerminationNotification{
		NotificationType:   TypeAppTermination,
		OperationAction:    ActionTerminating,
		MaxGracefulTimeout: maxGraceful,
		Links: terminationLinks{
			Subscription:       link{Href: base + "/subscriptions/" + url.PathEscape(sub.ID)},
			ConfirmTermination: link{Href: base + "/confirm_termination"},
		},
	})
}
