// Package events names kmep's CloudEvent types, in one place, and turns
// the store's change-stream entries into CloudEvents (spec 1.0).
//
// The event id is the change's stream id, so every redelivery of one
// change carries the same id and receivers can deduplicate. The subject is
// the record the change is about (serInstanceId, appInstanceId); the
// extension "kmepapp" carries the appInstanceId and "kmepchange" the change
// type, so Triggers can filter on them. "kmeplane" is "bulk" on the event of
// a bulk change (store.Change.Bulk) and absent otherwise: the relay, the
// all-in-one's broker and notify let the other events pass those (Knative's
// broker ignores the extension and passes it on).
//
// The event of a change a traced request made carries W3C trace context
// in the CloudEvents distributed-tracing extension (traceparent, and
// tracestate when the span that set it has one): FromChange sets
// traceparent from store.Change.TraceParent when it is well formed (a
// malformed one is left out) and tracestate from Change.TraceState when
// that is well formed too; each hop that makes a span of the event sets
// the extension to that span (SetTraceContext), and the next hop
// continues the trace from it (TraceContext; Handle, the span every
// trigger makes of an event).
package events

import (
	"context"
	"encoding/json"
	"fmt"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/extensions"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/trace"
	"github.com/kmep-io/kmep/store/mec"
)

// The CloudEvent types kmep emits.
const (
	// TypeServiceChanged: a MEC service was ADDED, REMOVED, or its state or
	// attributes changed. Data: ServiceChanged.
	TypeServiceChanged = "dev.kmep.service.changed.v1"
	// TypeAppTerminating: the platform is terminating an app instance.
	// Data: AppTerminating.
	TypeAppTerminating = "dev.kmep.app.terminating.v1"
	// TypeInstanceChanged: the instantiate function recorded an app
	// instance to install (INSTANTIATE) or to remove (TERMINATE); the
	// installer trigger does the work. Data: InstanceChanged.
	TypeInstanceChanged = "dev.kmep.instance.changed.v1"
)

// Types lists every type kmep emits (manifests are checked against it).
var Types = []string{TypeServiceChanged, TypeAppTerminating, TypeInstanceChanged}

// Source is the CloudEvents source of every kmep event.
const Source = "/kmep/mep"

// Extension attribute names.
const (
	ExtApp    = "kmepapp"
	ExtChange = "kmepchange"
	ExtLane   = "kmeplane"
	// ExtTraceParent and ExtTraceState are the CloudEvents
	// distributed-tracing extension's attributes.
	ExtTraceParent = extensions.TraceParentExtension
	ExtTraceState  = extensions.TraceStateExtension
)

// LaneBulk is ExtLane's value on the event of a bulk change.
const LaneBulk = "bulk"

// Bulk reports whether e is the event of a bulk change (ExtLane is
// LaneBulk).
func Bulk(e cloudevents.Event) bool {
	v, _ := e.Extensions()[ExtLane].(string)
	return v == LaneBulk
}

// SetTraceContext sets e's traceparent and tracestate extensions to the
// span context of ctx (the span of the hop that hands e on), and removes
// them when ctx has none.
func SetTraceContext(ctx context.Context, e *cloudevents.Event) {
	tp, ts := trace.Inject(ctx)
	if tp == "" {
		e.SetExtension(ExtTraceParent, nil)
		e.SetExtension(ExtTraceState, nil)
		return
	}
	e.SetExtension(ExtTraceParent, tp)
	if ts == "" {
		e.SetExtension(ExtTraceState, nil)
	} else {
		e.SetExtension(ExtTraceState, ts)
	}
}

// TraceContext returns ctx with the span context of e's traceparent and
// tracestate extensions as its remote parent, and true; ctx unchanged and
// false when e has no traceparent or a malformed one.
func TraceContext(ctx context.Context, e cloudevents.Event) (context.Context, bool) {
	d, ok := extensions.GetDistributedTracingExtension(e)
	if !ok {
		return ctx, false
	}
	return trace.Extract(ctx, d.TraceParent, d.TraceState)
}

// ServiceChanged is the data of TypeServiceChanged.
type ServiceChanged struct {
	ChangeType    string `json:"changeType"`
	SerInstanceID string `json:"serInstanceId"`
	SerName       string `json:"serName"`
	SerCategoryID string `json:"serCategoryId,omitempty"`
	State         string `json:"state"`
	AppInstanceID string `json:"appInstanceId"`
	Rev           int64  `json:"rev"`
	// Href is the service's resource path (ServiceAvailabilityNotification
	// serviceReferences[].link.href).
	Href string `json:"href"`
}

// Record is the store record the change is about (without its Info).
func (d ServiceChanged) Record() store.ServiceRecord {
	return store.ServiceRecord{ID: d.SerInstanceID, AppInstanceID: d.AppInstanceID, Name: d.SerName,
		CategoryID: d.SerCategoryID, State: d.State, Rev: d.Rev}
}

// AppTerminating is the data of TypeAppTerminating.
type AppTerminating struct {
	AppInstanceID      string `json:"appInstanceId"`
	MaxGracefulTimeout int    `json:"maxGracefulTimeout"`
}

// InstanceChanged is the data of TypeInstanceChanged.
type InstanceChanged struct {
	// ChangeType is store.ChangeInstantiate or store.ChangeTerminate.
	ChangeType    string `json:"changeType"`
	AppInstanceID string `json:"appInstanceId"`
	// GracefulTimeout is the termination's graceful timeout in seconds
	// (TERMINATE only).
	GracefulTimeout int `json:"gracefulTimeout,omitempty"`
}

// Subject is the subject of c's event (the service or app instance the
// change is about), and false when c is not published as an event (then
// FromChange's ok is false too). It is the cheap part of FromChange: the
// relay partitions by it before it builds the event.
func Subject(c store.Change) (string, bool) {
	switch {
	case c.Kind == store.KindService:
		return c.Service.ID, true
	case c.Kind == store.KindApp && c.Type == store.ChangeTerminating,
		c.Kind == store.KindInstance && (c.Type == store.ChangeInstantiate || c.Type == store.ChangeTerminate):
		return c.AppInstanceID, true
	}
	return "", false
}

// FromChange converts a change-stream entry into its CloudEvent. ok is
// false for changes that are not published as events (they stay in the
// stream for the agents that read it directly). The event's traceparent
// is c.TraceParent when that is well formed, else absent.
func FromChange(c store.Change) (e cloudevents.Event, ok bool, err error) {
	e = cloudevents.NewEvent()
	e.SetID(c.StreamID)
	e.SetSource(Source)
	e.SetExtension(ExtApp, c.AppInstanceID)
	e.SetExtension(ExtChange, c.Type)
	subject, ok := Subject(c)
	if !ok {
		return e, false, nil
	}
	e.SetSubject(subject)
	if c.Bulk {
		e.SetExtension(ExtLane, LaneBulk)
	}
	if trace.Valid(c.TraceParent) {
		e.SetExtension(ExtTraceParent, c.TraceParent)
		if _, err := oteltrace.ParseTraceState(c.TraceState); err == nil && c.TraceState != "" {
			e.SetExtension(ExtTraceState, c.TraceState)
		}
	}
	switch c.Kind {
	case store.KindService:
		e.SetType(TypeServiceChanged)
		err = e.SetData(cloudevents.ApplicationJSON, ServiceChanged{
			ChangeType: c.Type, SerInstanceID: c.Service.ID, SerName: c.Service.Name, SerCategoryID: c.Service.CategoryID,
			State: c.Service.State, AppInstanceID: c.AppInstanceID, Rev: c.Service.Rev,
			Href: mec.ServicePath(c.AppInstanceID, c.Service.ID),
		})
	case store.KindApp:
		var d AppTerminating
		if len(c.Data) > 0 {
			if err := json.Unmarshal(c.Data, &d); err != nil {
				return e, false, fmt.Errorf("termination change %s: %w", c.StreamID, err)
			}
		}
		d.AppInstanceID = c.AppInstanceID
		e.SetType(TypeAppTerminating)
		err = e.SetData(cloudevents.ApplicationJSON, d)
	case store.KindInstance:
		td, terr := store.ParseTerminateData(c.Data)
		if terr != nil {
			return e, false, fmt.Errorf("instance change %s: %w", c.StreamID, terr)
		}
		e.SetType(TypeInstanceChanged)
		err = e.SetData(cloudevents.ApplicationJSON, InstanceChanged{ChangeType: c.Type, AppInstanceID: c.AppInstanceID,
			GracefulTimeout: td.GracefulTimeout})
	default:
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	return e, true, e.Validate()
}
