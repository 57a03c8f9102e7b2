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
