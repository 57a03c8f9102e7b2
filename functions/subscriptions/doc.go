// Package subscriptions is kmep's MEC 011 subscription function: an app
// instance's notification subscriptions on Mp1, over the store.
//
// It serves two resources of the same shape under two APIs:
//
//   - /mep/mec_service_mgmt/v1/applications/{appInstanceId}/subscriptions
//     for SerAvailabilityNotificationSubscription (service availability, with
//     filteringCriteria stored as a store.ServiceFilter and indexed for
//     selection);
//   - /mep/mec_app_support/v1/applications/{appInstanceId}/subscriptions
//     for AppTerminationNotificationSubscription.
//
// Each answers GET (the SubscriptionLinkList) and POST (201 with Location)
// on the collection, and GET and DELETE on .../subscriptions/{subscriptionId}.
// Every call needs an app's Bearer JWT, and an app reaches only its own
// subscriptions: another app's appInstanceId in the path or another app's
// subscription id is a 403. A subscription of the other kind, under the other
// API, is a 404. Every callbackReference is checked by the callback policy
// (see package callback) before anything is stored.
package subscriptions
