// Package appsupport is kmep's MEC 011 application support function
// (/mep/mec_app_support/v1): an app instance's traffic rules and DNS rules,
// its confirm_ready and confirm_termination, its registration (AppInfo,
// MEC 011 v3 /registrations) and the platform's timing (current_time,
// timing_caps), over the store.
//
// Shapes, enumerations and status codes follow MEC 011 2.1.1; /registrations
// follows 3.1.1. Bodies may come wrapped in the v3.1.1 object
// ({"TrafficRule":{...}}); answers are never wrapped.
//
// Every call needs an app's Bearer JWT, and an app reads and changes only
// the resources under its own appInstanceId (403 otherwise). Rules are
// created by the platform administrator through Mm5 (appd_configuration);
// an app reads them and replaces them with PUT (404 for a rule that does
// not exist). A PUT is validated completely and stored canonically (the
// validated value re-marshalled, so equal rules store equal bytes and a PUT
// that changes nothing keeps the ETag and appends nothing to the change
// stream). ETags are the store's revisions; If-Match is honoured on every
// PUT (412 when stale).
//
// timing_caps lists NTP servers and PTP masters only when Deps names them:
// kmep does not discover the node's time sources. current_time reports
// TRACEABLE only when Deps.TimeTraceable says the clock is locked to UTC.
package appsupport
