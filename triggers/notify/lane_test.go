package notify_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/triggers/notify"
)

// bulkEvent is the event of a bulk change of r (a mass expiry's).
func bulkEvent(t testing.TB, id string, r store.ServiceRecord) cloudevents.Event {
	t.Helper()
	e, ok, err := events.FromChange(store.Change{StreamID: id, Kind: store.KindService, Type: store.ChangeStateChanged,
		AppInstanceID: r.AppInstanceID, Service: r, Bulk: true})
	if err != nil || !ok {
		t.Fatalf("FromChange: ok %v, err %v", ok, err)
	}
	return e
}

// TestLiveCallbacksPassHangingBulkOnes: a bulk event whose callbacks hang
// (a dead node's subscribers) takes at most Concurrency - LiveReserve
// slots, and a live event's callback is served meanwhile. With FIFO the
// bulk callbacks take every slot and the live one waits for them.
func TestLiveCallbacksPassHangingBulkOnes(t *testing.T) {
	const conc, reserve, hanging = 4, 1, 6
	for _, tc := range []struct {
		name string
		fifo bool
	}{{"fair", false}, {"fifo", true}} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var entered atomic.Int32
			cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.URL.Path == "/fast" {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				entered.Add(1)
				<-release
				w.WriteHeader(http.StatusNoContent)
			})
			var once atomic.Bool
			open := func() {
				if once.CompareAndSwap(false, true) {
					close(release)
				}
			}
			t.Cleanup(open) // before cb.Close
			e := newEnv(t, notify.Deps{Concurrency: conc, LiveReserve: reserve, FIFO: tc.fifo, Timeout: 30 * time.Second})
			lapsed := store.ServiceRecord{ID: "lapsed", AppInstanceID: producer, Name: "rnis", State: store.StateSuspended, Rev: 2}
			live := store.ServiceRecord{ID: "live", AppInstanceID: producer, Name: "rnis", State: store.StateActive, Rev: 1}
			for i := range hanging {
				e.subscribe(t, store.Subscription{ID: "hang-" + string(rune('a'+i)), CallbackReference: cb.URL + "/hang",
					Filter: store.ServiceFilter{SerInstanceIDs: []string{lapsed.ID}}})
			}
			e.subscribe(t, store.Subscription{ID: "fast", CallbackReference: cb.URL + "/fast",
				Filter: store.ServiceFilter{SerInstanceIDs: []string{live.ID}}})

			bulkDone := make(chan int, 1)
			go func() {
				s, _, _ := e.post(bulkEvent(t, streamID(), lapsed))
				bulkDone <- s
			}()
			want := int32(conc - reserve)
			if tc.fifo {
				want = conc
			}
			waitFor(t, 10*time.Second, "the bulk callbacks take their slots", func() bool { return entered.Load() == want })
			liveDone := make(chan int, 1)
			go func() {
				s, _, _ := e.post(serviceEvent(t, streamID(), live, store.ChangeStateChanged))
				liveDone <- s
			}()
			if tc.fifo {
				// Every slot is a hanging callback's: the live one cannot start
				// until they are released.
				time.Sleep(200 * time.Millisecond)
				if n := len(cb.calls("/fast")); n != 0 {
					t.Fatalf("FIFO: the live callback was called %d times while every slot hung", n)
				}
				if got := entered.Load(); got != conc {
					t.Errorf("FIFO: %d bulk callbacks in flight, want %d (every slot)", got, conc)
				}
				open()
			}
			select {
			case s := <-liveDone:
				if s != http.StatusOK {
					t.Errorf("live event: %d, want 200", s)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the live event was not notified while the bulk callbacks hung")
			}
			if got := entered.Load(); !tc.fifo && got != want {
				t.Errorf("%d bulk callbacks in flight, want %d (the bulk share)", got, want)
			}
			open()
			if s := <-bulkDone; s != http.StatusOK {
				t.Errorf("bulk event: %d, want 200", s)
			}
			if got := cb.counts(); got["/hang"] != hanging || got["/fast"] != 1 {
				t.Errorf("callback requests %v, want %d to /hang and 1 to /fast", got, hanging)
			}
		})
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
