package subscriptions

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/mec"
)

// Bounds of a subscription request.
const (
	// MaxFilterEntries bounds each list of filteringCriteria.
	MaxFilterEntries = 100
	// MaxStringLen bounds each string of filteringCriteria and appInstanceId.
	MaxStringLen = mec.MaxNameLen
)

// selfLinks is the _links member of a subscription in responses.
type selfLinks struct {
	Self mec.Link `json:"self"`
}

// filteringCriteria is SerAvailabilityNotificationSubscription.FilteringCriteria.
type filteringCriteria struct {
	SerInstanceIDs []string          `json:"serInstanceIds,omitempty"`
	SerNames       []string          `json:"serNames,omitempty"`
	SerCategories  []mec.CategoryRef `json:"serCategories,omitempty"`
	States         []string          `json:"states,omitempty"`
	IsLocal        *bool             `json:"isLocal,omitempty"`
}

func (f *filteringCriteria) empty() bool {
	return len(f.SerInstanceIDs) == 0 && len(f.SerNames) == 0 && len(f.SerCategories) == 0 &&
		len(f.States) == 0 && f.IsLocal == nil
}

// serAvailabilityRequest is what a POST of a
// SerAvailabilityNotificationSubscription is read into. It has no _links:
// a request's "_links" (or EdgeGallery's "links") is ignored, whatever it
// holds.
type serAvailabilityRequest struct {
	SubscriptionType  string             `json:"subscriptionType"`
	CallbackReference string             `json:"callbackReference"`
	FilteringCriteria *filteringCriteria `json:"filteringCriteria"`
}

// serAvailabilitySubscription is a SerAvailabilityNotificationSubscription
// as served.
type serAvailabilitySubscription struct {
	SubscriptionType  string             `json:"subscriptionType"`
	CallbackReference string             `json:"callbackReference"`
	Links             selfLinks          `json:"_links"`
	FilteringCriteria *filteringCriteria `json:"filteringCriteria,omitempty"`
}

// appTerminationRequest is what a POST of an
// AppTerminationNotificationSubscription is read into (no _links either).
type appTerminationRequest struct {
	SubscriptionType  string `json:"subscriptionType"`
	CallbackReference string `json:"callbackReference"`
	AppInstanceID     string `json:"appInstanceId"`
}

// appTerminationSubscription is an AppTerminationNotificationSubscription
// as served.
type appTerminationSubscription struct {
	SubscriptionType  string    `json:"subscriptionType"`
	CallbackReference string    `json:"callbackReference"`
	Links             selfLinks `json:"_links"`
	AppInstanceID     string    `json:"appInstanceId"`
}

// request is a decoded, validated subscription request: what the store
// keeps, and the response body but for its self link.
type request struct {
	callbackReference string
	filter            store.ServiceFilter
	// render returns the subscription as served, with self as its link.
	render func(self string) any
}

func fieldErr(field, format string, args ...any) *mec.FieldError {
	return &mec.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func checkType(got, want string) error {
	if got == "" {
		return fieldErr("subscriptionType", "is required")
	}
	if got != want {
		return fieldErr("subscriptionType", "must be %q here, not %q", want, got)
	}
	return nil
}

// checkCallback checks what can be checked without the callback policy.
func checkCallback(cb string) error {
	if strings.TrimSpace(cb) == "" {
		return fieldErr("callbackReference", "is required")
	}
	if len(cb) > callback.MaxURLLength {
		return fieldErr("callbackReference", "is longer than %d bytes", callback.MaxURLLength)
	}
	return nil
}

// decodeSerAvailability reads and validates a
// SerAvailabilityNotificationSubscription.
func decodeSerAvailability(raw []byte) (request, error) {
	var in serAvailabilityRequest
	if err := mec.DecodeBytes(raw, store.SubServiceAvailability, &in); err != nil {
		return request{}, err
	}
	if err := checkType(in.SubscriptionType, store.SubServiceAvailability); err != nil {
		return request{}, err
	}
	if err := checkCallback(in.CallbackReference); err != nil {
		return request{}, err
	}
	fc := in.FilteringCriteria
	if fc != nil && fc.empty() {
		// null, {}, or EdgeGallery's lists that are all empty: no filter.
		fc = nil
	}
	var filter store.ServiceFilter
	if fc != nil {
		var err error
		if filter, err = serviceFilter(fc); err != nil {
			return request{}, err
		}
	}
	return request{
		callbackReference: in.CallbackReference,
		filter:            filter,
		render: func(self string) any {
			return serAvailabilitySubscription{SubscriptionType: store.SubServiceAvailability,
				CallbackReference: in.CallbackReference, Links: selfLinks{Self: mec.Link{Href: self}}, FilteringCriteria: fc}
		},
	}, nil
}

// serviceFilter validates filteringCriteria and reduces it to the store's
// selection filter. Empty lists count as absent (EdgeGallery sends them).
func serviceFilter(fc *filteringCriteria) (store.ServiceFilter, error) {
	const base = "filteringCriteria"
	nonEmpty := 0
	for _, n := range []int{len(fc.SerInstanceIDs), len(fc.SerNames), len(fc.SerCategories)} {
		if n > 0 {
			nonEmpty++
		}
	}
	if nonEmpty > 1 {
		return store.ServiceFilter{}, fieldErr(base, "at most one of serInstanceIds, serNames and serCategories may be given")
	}
	for _, l := range []struct {
		name string
		vs   []string
	}{{"serInstanceIds", fc.SerInstanceIDs}, {"serNames", fc.SerNames}, {"states", fc.States}} {
		if len(l.vs) > MaxFilterEntries {
			return store.ServiceFilter{}, fieldErr(base+"."+l.name, "has more than %d entries", MaxFilterEntries)
		}
		for i, v := range l.vs {
			if err := boundedString(fmt.Sprintf("%s.%s[%d]", base, l.name, i), v); err != nil {
				return store.ServiceFilter{}, err
			}
		}
	}
	for i, s := range fc.States {
		if !slices.Contains(mec.ServiceStates, s) {
			return store.ServiceFilter{}, fieldErr(fmt.Sprintf("%s.states[%d]", base, i),
				"must be one of %s, not %q", strings.Join(mec.ServiceStates, ", "), s)
		}
	}
	if len(fc.SerCategories) > MaxFilterEntries {
		return store.ServiceFilter{}, fieldErr(base+".serCategories", "has more than %d entries", MaxFilterEntries)
	}
	cats := make([]string, 0, len(fc.SerCategories))
	for i, c := range fc.SerCategories {
		field := fmt.Sprintf("%s.serCategories[%d]", base, i)
		if err := boundedString(field+".id", c.ID); err != nil {
			return store.ServiceFilter{}, err
		}
		for _, f := range [][2]string{{"href", c.Href}, {"name", c.Name}, {"version", c.Version}} {
			if len(f[1]) > MaxStringLen {
				return store.ServiceFilter{}, fieldErr(field+"."+f[0], "is longer than %d bytes", MaxStringLen)
			}
		}
		cats = append(cats, c.ID)
	}
	f := store.ServiceFilter{
		SerInstanceIDs: fc.SerInstanceIDs,
		SerNames:       fc.SerNames,
		States:         fc.States,
	}
	if len(cats) > 0 {
		f.SerCategoryIDs = cats
	}
	// isLocal: MEC 011 says true selects the services in the consumer's
	// locality, and absent places no constraint. Every service on this
	// platform is local to its consumers, so true selects every service,
	// and false, read literally, would select none. EdgeGallery's mep-agent
	// marshals isLocal from a plain Go bool, so it sends false whenever the
	// app set nothing: read literally, every subscription it makes would
	// never be notified. A subscription that can never match is of no use
	// to anyone, so false is stored as "no constraint" (nil), like absent.
	// The served subscription keeps isLocal as the app sent it.
	if fc.IsLocal != nil && *fc.IsLocal {
		t := true
		f.IsLocal = &t
	}
	return f, nil
}

// boundedString refuses an empty (or blank) entry and one over MaxStringLen.
func boundedString(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return fieldErr(field, "must not be empty")
	}
	if len(v) > MaxStringLen {
		return fieldErr(field, "is longer than %d bytes", MaxStringLen)
	}
	return nil
}

// decodeAppTermination reads and validates an
// AppTerminationNotificationSubscription of app (the path's appInstanceId).
func decodeAppTermination(raw []byte, app string) (request, error) {
	var in appTerminationRequest
	if err := mec.DecodeBytes(raw, store.SubAppTermination, &in); err != nil {
		return request{}, err
	}
	if err := checkType(in.SubscriptionType, store.SubAppTermination); err != nil {
		return request{}, err
	}
	if err := checkCallback(in.CallbackReference); err != nil {
		return request{}, err
	}
	switch in.AppInstanceID {
	case "":
		in.AppInstanceID = app // required by MEC 011, but it can only be the path's
	case app:
	default:
		return request{}, fieldErr("appInstanceId", "must be the appInstanceId of the path")
	}
	return request{
		callbackReference: in.CallbackReference,
		render: func(self string) any {
			return appTerminationSubscription{SubscriptionType: store.SubAppTermination,
				CallbackReference: in.CallbackReference, Links: selfLinks{Self: mec.Link{Href: self}}, AppInstanceID: in.AppInstanceID}
		},
	}, nil
}
