package mec

// Notification types and the termination's operation action (MEC 011).
const (
	TypeServiceAvailability = "SerAvailabilityNotification"
	TypeAppTermination      = "AppTerminationNotification"
	ActionTerminating       = "TERMINATING"
)

// ServiceReference is ServiceAvailabilityNotification.ServiceReferences.
type ServiceReference struct {
	Link          Link   `json:"link"`
	SerName       string `json:"serName"`
	SerInstanceID string `json:"serInstanceId"`
	State         string `json:"state"`
	ChangeType    string `json:"changeType"`
}

// SubscriptionLinks are a notification's _links.
type SubscriptionLinks struct {
	Subscription Link `json:"subscription"`
}

// ServiceAvailabilityNotification is MEC 011's ServiceAvailabilityNotification.
type ServiceAvailabilityNotification struct {
	NotificationType  string             `json:"notificationType"`
	ServiceReferences []ServiceReference `json:"serviceReferences"`
	Links             SubscriptionLinks  `json:"_links"`
}

// TerminationLinks are an AppTerminationNotification's _links.
type TerminationLinks struct {
	Subscription       Link `json:"subscription"`
	ConfirmTermination Link `json:"confirmTermination"`
}

// AppTerminationNotification is MEC 011's AppTerminationNotification.
type AppTerminationNotification struct {
	NotificationType   string           `json:"notificationType"`
	OperationAction    string           `json:"operationAction"`
	MaxGracefulTimeout int              `json:"maxGracefulTimeout"`
	Links              TerminationLinks `json:"_links"`
}
