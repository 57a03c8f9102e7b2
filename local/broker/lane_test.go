package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/kmep-io/kmep/local/broker"
)

// isBulk is the tests' lane: events whose id starts with "b" are bulk.
func isBulk(e cloudevents.Event) bool { return strings.HasPrefix(e.ID(), "b") }

// gatedReceiver records the ids it gets; the first call waits until open
// is closed.
type gatedReceiver struct {
	open    chan struct{}
	holding chan struct{} // closed once the first call waits

	mu  sync.Mutex
	got []string
}

func newGatedReceiver() *gatedReceiver {
	return &gatedReceiver{open: make(chan struct{}), holding: make(chan struct{})}
}

func (g *gatedReceiver) receive(_ context.Context, e cloudevents.Event) protocol.Result {
	g.mu.Lock()
	first := len(g.got) == 0
	g.got = append(g.got, e.ID())
	g.mu.Unlock()
	if first {
		close(g.holding)
		<-g.open
	}
	return protocol.ResultACK
}

func (g *gatedReceiver) ids() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.got...)
}

func withID(id string) cloudevents.Event {
	e := event("t", "/s", "", nil)
	e.SetID(id)
	return e
}

// TestLiveEventsPassQueuedBulkOnes: with lanes, bulk events fill the queue
// only up to QueueSize - LiveReserve (then Send waits, the ingress answers
// 503), live events take the rest (then both refuse), and the worker
// delivers the live events before the bulk ones queued earlier. Without
// lanes (Bulk nil) the queue is one FIFO: the live events come last.
func TestLiveEventsPassQueuedBulkOnes(t *testing.T) {
	const size, reserve = 8, 2
	for _, tc := range []struct {
		name  string
		bulk  func(cloudevents.Event) bool
		order string
	}{
		{"fair", isBulk, "b0 l1 l2 b1 b2 b3 b4 b5"},
		{"fifo", nil, "b0 b1 b2 b3 b4 b5 l1 l2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedReceiver()
			b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), QueueSize: size, LiveReserve: reserve,
				Workers: 1, Bulk: tc.bulk,
				Resolve:  broker.Receivers(map[string]broker.Receiver{"s": g.receive}),
				Triggers: load(t, trigger("a", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s}}\n"))})
			if err != nil {
				t.Fatal(err)
			}
			run(t, b)
			ctx := context.Background()
			send := func(id string) {
				t.Helper()
				if res := b.Send(ctx, withID(id)); !cloudevents.IsACK(res) {
					t.Fatalf("Send %s: %v", id, res)
				}
			}
			full := func(id string) {
				t.Helper()
				if w := post(t, b, withID(id)); w.Code != http.StatusServiceUnavailable {
					t.Errorf("ingress %s: %d, want 503 (queue bound)", id, w.Code)
				}
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				if res := b.Send(short, withID(id)); cloudevents.IsACK(res) {
					t.Errorf("Send %s: accepted beyond the queue bound", id)
				}
			}
			send("b0")
			<-g.holding // b0 is being delivered, and holds its place
			for i := 1; i <= size-reserve-1; i++ {
				send(fmt.Sprintf("b%d", i))
			}
			if tc.bulk != nil {
				full("b6") // the bulk share is taken
			}
			send("l1")
			send("l2")
			full("l3") // the whole queue is taken
			close(g.open)
			waitFor(t, 5*time.Second, "every event delivered", func() bool { return b.Stats().Delivered == size })
			if got := strings.Join(g.ids(), " "); got != tc.order {
				t.Errorf("delivered %s, want %s", got, tc.order)
			}
			s := b.Stats()
			if s.Accepted != size || s.Delivered != size {
				t.Errorf("stats %+v: want %d accepted and delivered", s, size)
			}
		})
	}
}

// TestBulkIsNotStarved: while live events keep the worker busy, a bulk one
// waiting is delivered after each 7 live ones.
func TestBulkIsNotStarved(t *testing.T) {
	g := newGatedReceiver()
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), QueueSize: 64, Workers: 1, Bulk: isBulk,
		Resolve:  broker.Receivers(map[string]broker.Receiver{"s": g.receive}),
		Triggers: load(t, trigger("a", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s}}\n"))})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	ctx := context.Background()
	if res := b.Send(ctx, withID("l0")); !cloudevents.IsACK(res) {
		t.Fatal(res)
	}
	<-g.holding
	for i := 1; i <= 4; i++ {
		if res := b.Send(ctx, withID(fmt.Sprintf("b%d", i))); !cloudevents.IsACK(res) {
			t.Fatal(res)
		}
	}
	for i := 1; i <= 20; i++ {
		if res := b.Send(ctx, withID(fmt.Sprintf("l%d", i))); !cloudevents.IsACK(res) {
			t.Fatal(res)
		}
	}
	close(g.open)
	waitFor(t, 5*time.Second, "every event delivered", func() bool { return b.Stats().Delivered == 25 })
	want := "l0 l1 l2 l3 l4 l5 l6 b1 l7 l8 l9 l10 l11 l12 l13 b2 l14 l15 l16 l17 l18 l19 l20 b3 b4"
	if got := strings.Join(g.ids(), " "); got != want {
		t.Errorf("delivered %s, want %s (a bulk event after each 7 live ones)", got, want)
	}
}
