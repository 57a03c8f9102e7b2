// Package lcm is the platform admin's Mm5 side of an app instance's life:
// its rule configuration (/mepcfg/app_lcm/v1/applications/{id}/appd_configuration:
// the traffic and DNS rules the Mp1 app-support API then exposes) and its
// termination flow (POST .../terminate: subscribers get an
// AppTerminationNotification, the platform waits for confirm_termination or
// the graceful timeout, then removes the instance's services — REMOVED
// notifications go out — subscriptions, rules and credentials).
package lcm
