package mec

import "net/url"

// The API roots kmep serves, each written here once. The functions mount
// their routes under them; links in answers and notifications are built
// from them.
const (
	// ServiceMgmtPath is MEC 011's service management API
	// (services, SerAvailabilityNotification subscriptions, transports).
	ServiceMgmtPath = "/mep/mec_service_mgmt/v1"
	// AppSupportPath is MEC 011's application support API (traffic and
	// DNS rules, AppTermination subscriptions, confirm_ready/termination,
	// timing).
	AppSupportPath = "/mep/mec_app_support/v1"
	// TokenPath is mepauth's token endpoint (AK/SK-signed POST).
	TokenPath = "/mep/token"
	// AppMngPath is the Mm5 app management API (confs, lockout).
	AppMngPath = "/mep/appMng/v1"
	// LCMPath is the Mm5 app lifecycle API (appd_configuration, terminate).
	LCMPath = "/mepcfg/app_lcm/v1"
	// LCMControllerPath is EdgeGallery's lcmcontroller API (packages,
	// hosts, app instances).
	LCMControllerPath = "/lcmcontroller/v1"
)

// AppPath is the resource path of app instance app under the API root root.
func AppPath(root, app string) string {
	return root + "/applications/" + url.PathEscape(app)
}

// ServicePath is the resource path of service id of app (as the services
// function serves it).
func ServicePath(app, id string) string {
	return ServiceMgmtPath + "/applications/" + app + "/services/" + id
}
