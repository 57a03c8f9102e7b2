package notify

import (
	"encoding/json"
	"github.com/kmep-io/kmep/store/mec"
	"net/url"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
)

// serviceNotification renders the ServiceAvailabilityNotification of d for
// subscription sub.
func serviceNotification(d events.ServiceChanged, sub store.Subscription) ([]byte, error) {
	href := d.Href
	if href == "" {
		href = mec.ServicePath(d.AppInstanceID, d.SerInstanceID)
	}
	return json.Marshal(mec.ServiceAvailabilityNotification{
		NotificationType: mec.TypeServiceAvailability,
		ServiceReferences: []mec.ServiceReference{{Link: mec.Link{Href: href}, SerName: d.SerName,
			SerInstanceID: d.SerInstanceID, State: d.State, ChangeType: d.ChangeType}},
		Links: mec.SubscriptionLinks{Subscription: mec.Link{
			Href: mec.AppPath(mec.ServiceMgmtPath, sub.AppInstanceID) + "/subscriptions/" + url.PathEscape(sub.ID)}},
	})
}

// terminationNotification renders the AppTerminationNotification of app for
// subscription sub.
func terminationNotification(app string, maxGraceful int, sub store.Subscription) ([]byte, error) {
	base := mec.AppPath(mec.AppSupportPath, app)
	return json.Marshal(mec.AppTerminationNotification{
		NotificationType:   mec.TypeAppTermination,
		OperationAction:    mec.ActionTerminating,
		MaxGracefulTimeout: maxGraceful,
		Links: mec.TerminationLinks{
			Subscription:       mec.Link{Href: base + "/subscriptions/" + url.PathEscape(sub.ID)},
			ConfirmTermination: mec.Link{Href: base + "/confirm_termination"},
		},
	})
}
