// Package notify is the trigger that turns kmep's change events into MEC 011
// notifications: a TypeServiceChanged event becomes a
// ServiceAvailabilityNotification POSTed to every matching
// SerAvailabilityNotificationSubscription, and a TypeAppTerminating event an
// AppTerminationNotification POSTed to the app instance's
// AppTerminationNotificationSubscriptions.
//
// A Notifier's Handle is the CloudEvents receiver function; HTTPHandler
// wraps it in cloudevents.NewHTTPReceiveHandler (behind a guard that answers
// 400 to requests that are not CloudEvents) for the binary, which a Knative
// Eventing Trigger delivers to.
//
// Deliveries run with bounded concurrency, a timeout per attempt, and
// retries with exponential backoff (honouring Retry-After) on 5xx, 429 and
// transport errors. Every delivered (event id, subscription id) pair is
// marked done in the store, so when the broker redelivers an event because
// some callbacks failed, only those are called again. The result is an ACK
// when every callback took the notification (or refused it with a 4xx), a
// 502 NACK when some still failed, a 503 NACK when the store could not be
// read, and a 400 for an event that is not one of kmep's.
package notify
