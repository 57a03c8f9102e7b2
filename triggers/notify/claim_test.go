package notify_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/notify"
)

// Two copies of one event at once (the relay published it again while the
// broker still held the first; or two notify replicas got a copy each):
// the second finds the callback claimed by the first, calls nothing and
// answers 502, so the broker tries it again; that retry finds it done.
func TestCopyWhileDeliveringIsBusy(t *testing.T) {
	entered, release := make(chan struct{}, 10), make(chan struct{})
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		entered <- struct{}{}
		<-release
	})
	first := newEnv(t, notify.Deps{})
	second := newEnv(t, notify.Deps{Store: first.st}) // another replica
	first.subscribe(t, store.Subscription{ID: "sub-1", CallbackReference: cb.URL + "/cb"})
	ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)

	type answer struct {
		status int
		body   string
		err    error
	}
	firstDone := make(chan answer, 1)
	go func() {
		s, b, err := first.post(ev)
		firstDone <- answer{s, b, err}
	}()
	select {
	case <-entered:
	case a := <-firstDone:
		t.Fatalf("first copy answered %d %q (%v) before its callback was called", a.status, a.body, a.err)
	}
	status, body := second.send(t, ev)
	wantStatus(t, status, body, http.StatusBadGateway)
	if !strings.Contains(body, "another delivery") {
		t.Errorf("busy answer %q does not say another delivery holds the callback", body)
	}
	wantStats(t, second.n, notify.Stats{Events: 1, Busy: 1})
	close(release)
	if a := <-firstDone; a.err != nil || a.status != http.StatusOK {
		t.Fatalf("first copy: %d %q (%v), want 200", a.status, a.body, a.err)
	}
	status, body = second.send(t, ev) // the broker's retry
	wantStatus(t, status, body, http.StatusOK)
	wantStats(t, second.n, notify.Stats{Events: 2, Busy: 1, Skipped: 1})
	if n := cb.total(); n != 1 {
		t.Errorf("callback called %d times, want once", n)
	}
}

// Many copies of one event delivered at once by several replicas, the
// 502s retried as a broker does: every callback is called exactly once.
func TestCopiesAtOnceNotifyEachCallbackOnce(t *testing.T) {
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(time.Millisecond) // a callback takes a moment: copies overlap
		w.WriteHeader(http.StatusNoContent)
	})
	replicas := []*env{newEnv(t, notify.Deps{})}
	for range 3 {
		replicas = append(replicas, newEnv(t, notify.Deps{Store: replicas[0].st}))
	}
	subscribeMany(t, replicas[0], cb, 50)
	for round := range 10 {
		ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
		var wg sync.WaitGroup
		var retries atomic.Int64
		for c := range 3 * len(replicas) {
			e := replicas[c%len(replicas)]
			wg.Go(func() { deliverUntilAck(t, e, ev, &retries) })
		}
		wg.Wait()
		got := cb.reset()
		per := map[string]int{}
		for _, a := range got {
			per[a.path]++
		}
		if len(per) != 50 {
			t.Errorf("round %d: %d callbacks called, want 50", round, len(per))
		}
		for p, n := range per {
			if n != 1 {
				t.Errorf("round %d: %s called %d times, want once", round, p, n)
			}
		}
		t.Logf("round %d: %d retries of busy or failed copies", round, retries.Load())
	}
}

// deliverUntilAck posts ev to e until it is ACKed, retrying a 502 at once
// (a broker's retry, without its backoff).
func deliverUntilAck(t *testing.T, e *env, ev cloudevents.Event, retries *atomic.Int64) {
	for range 1000 {
		status, body, err := e.post(ev)
		if err != nil {
			t.Error(err)
			return
		}
		switch status {
		case http.StatusOK:
			return
		case http.StatusBadGateway:
			retries.Add(1)
			time.Sleep(time.Millisecond)
		default:
			t.Errorf("status %d (%q)", status, body)
			return
		}
	}
	t.Error("event not ACKed after 1,000 deliveries")
}

// A delivery does not start an attempt that would outlive its claim: with
// one slot held by a callback that hangs until the attempt times out, the
// next callback's claim would run out during its attempt, so it is not
// tried (the event is answered 502; the broker's retry calls it).
func TestNoAttemptOutlivesItsClaim(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/a-hang" && hang.Load() {
			<-r.Context().Done()
		}
	})
	e := newEnv(t, notify.Deps{Concurrency: 1, LiveReserve: 0, Timeout: 200 * time.Millisecond, ClaimTTL: 300 * time.Millisecond,
		Retry: notify.Retry{Attempts: 1}})
	e.subscribe(t, store.Subscription{ID: "a", CallbackReference: cb.URL + "/a-hang"},
		store.Subscription{ID: "b", CallbackReference: cb.URL + "/b-fast"})
	ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
	status, body := e.send(t, ev)
	wantStatus(t, status, body, http.StatusBadGateway)
	if got := cb.counts(); got["/b-fast"] != 0 {
		t.Errorf("callback requests %v: /b-fast tried although its claim would run out", got)
	}
	wantStats(t, e.n, notify.Stats{Events: 1, Failed: 2})
	// Both claims were given back: the retry takes them at once.
	hang.Store(false)
	status, body = e.send(t, ev)
	wantStatus(t, status, body, http.StatusOK)
	if got := cb.counts(); got["/a-hang"] != 2 || got["/b-fast"] != 1 {
		t.Errorf("callback requests %v, want /a-hang twice and /b-fast once", got)
	}
}
