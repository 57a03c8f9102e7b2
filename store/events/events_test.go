package events_test

import (
	"testing"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
)

// TestLaneExtension: the event of a bulk change carries kmeplane=bulk, that
// of any other change no kmeplane at all (so the events of live changes are
// as they were), and Bulk tells them apart.
func TestLaneExtension(t *testing.T) {
	for _, tc := range []struct {
		name string
		bulk bool
	}{{"live", false}, {"bulk", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := store.Change{StreamID: "1-0", Kind: store.KindService, Type: store.ChangeStateChanged, AppInstanceID: "app",
				Service: store.ServiceRecord{ID: "svc", AppInstanceID: "app", Name: "rni", State: store.StateSuspended, Rev: 2},
				Bulk:    tc.bulk}
			e, ok, err := events.FromChange(c)
			if err != nil || !ok {
				t.Fatalf("FromChange: %v %v", ok, err)
			}
			v, has := e.Extensions()[events.ExtLane]
			if has != tc.bulk || (tc.bulk && v != events.LaneBulk) {
				t.Errorf("extension %s = %v (present %v), want present %v", events.ExtLane, v, has, tc.bulk)
			}
			if events.Bulk(e) != tc.bulk {
				t.Errorf("Bulk = %v, want %v", events.Bulk(e), tc.bulk)
			}
		})
	}
}

// TestSubjectAgreesWithFromChange: Subject says a change is published, and
// with which subject, exactly when FromChange does.
func TestSubjectAgreesWithFromChange(t *testing.T) {
	svc := store.ServiceRecord{ID: "svc", AppInstanceID: "app", Name: "rni", State: store.StateActive, Rev: 1}
	for _, c := range []store.Change{
		{Kind: store.KindService, Type: store.ChangeAdded, AppInstanceID: "app", Service: svc},
		{Kind: store.KindApp, Type: store.ChangeTerminating, AppInstanceID: "app", Data: []byte(`{"maxGracefulTimeout":3}`)},
		{Kind: store.KindApp, Type: store.ChangeTerminated, AppInstanceID: "app"},
		{Kind: store.KindInstance, Type: store.ChangeInstantiate, AppInstanceID: "app"},
		{Kind: store.KindInstance, Type: store.ChangeTerminate, AppInstanceID: "app", Data: []byte(`{"gracefulTimeout":2}`)},
		{Kind: store.KindSubscription, Type: store.ChangeCreated, AppInstanceID: "app", ID: "sub"},
		{Kind: store.KindRegistration, Type: store.ChangeUpdated, AppInstanceID: "app", ID: "app"},
	} {
		t.Run(c.Kind+"/"+c.Type, func(t *testing.T) {
			c.StreamID = "1-0"
			subject, published := events.Subject(c)
			e, ok, err := events.FromChange(c)
			if err != nil {
				t.Fatal(err)
			}
			if published != ok || (ok && e.Subject() != subject) {
				t.Errorf("Subject = %q, %v; FromChange: subject %q, ok %v", subject, published, e.Subject(), ok)
			}
		})
	}
}
