package broker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/manifests"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/triggers/deadletter"
)

// The all-in-one may hand the Broker to the relay as its Sender.
var _ relay.Sender = (*broker.Broker)(nil)

type recorded struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorded) RecordDeadLetter(_ context.Context, id string, _ []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return nil
}

func (r *recorded) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// TestPipeline wires what the all-in-one wires: the store's change stream,
// the relay, this broker with the Triggers of manifests/eventing.yaml, a
// notify stand-in that refuses one app's events, and the dead-letter
// trigger.
func TestPipeline(t *testing.T) {
	rds := testenv.NewRedis(t, testenv.RedisOptions{})
	st, err := store.New(store.Options{Client: rds.Client(t)})
	if err != nil {
		t.Fatal(err)
	}
	trs, err := broker.LoadTriggers(manifests.Eventing)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs { // the manifests wait 0.5 s·(2^10 - 1) before dead-lettering
		one, delay := int32(1), "PT0.1S"
		tr.Spec.Delivery.Retry, tr.Spec.Delivery.BackoffDelay = &one, &delay
	}
	notify := &receiver{}
	notify.status = func(n int) int {
		if app, _ := notify.got[n].e.Extensions()[events.ExtApp].(string); app == "bad" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	dead := &recorded{}
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	dl, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, deadletter.New(deadletter.Deps{Recorder: dead, Log: quiet()}).Handle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Broker: "kmep", Namespace: "kmep", Triggers: trs, Log: quiet(),
		Resolve: broker.Services(map[string]http.Handler{"notify": notify, "deadletter": dl,
			// Instance changes are not part of this pipeline: acknowledged.
			"installer": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })})})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	ingress := httptest.NewServer(b)
	defer ingress.Close()
	a, err := relay.New(relay.Config{Sink: ingress.URL + "/kmep/kmep", LeaseTTL: time.Second, Block: 100 * time.Millisecond},
		relay.Deps{Store: st, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "the relay leads", func() bool { return a.Stats().Leader })

	ctx0 := context.Background()
	good, _, err := st.CreateService(ctx0, store.ServiceRecord{ID: "s1", AppInstanceID: "good", Name: "rni", State: store.StateActive, Info: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	good.State = store.StateInactive
	if _, _, err := st.UpdateService(ctx0, good, 0); err != nil {
		t.Fatal(err)
	}
	_, badID, err := st.CreateService(ctx0, store.ServiceRecord{ID: "s2", AppInstanceID: "bad", Name: "rni", State: store.StateActive, Info: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	_, termID, err := st.StartTermination(ctx0, "good", time.Second)
	if err != nil {
		t.Fatal(err)
	}

	waitFor(t, 10*time.Second, "the bad event dead-lettered", func() bool { return len(dead.list()) == 1 })
	if got := dead.list(); got[0] != badID {
		t.Errorf("dead letters %v, want %s", got, badID)
	}
	var goodTypes []string
	for _, d := range notify.deliveries(t) {
		if d.e.Extensions()[events.ExtApp] == "good" {
			goodTypes = append(goodTypes, d.e.Type()+"/"+d.e.Extensions()[events.ExtChange].(string))
			if d.e.Type() == events.TypeAppTerminating && d.e.ID() != termID {
				t.Errorf("termination id %s, want %s", d.e.ID(), termID)
			}
		}
	}
	// The broker, like Knative's, does not keep the order of events.
	slices.Sort(goodTypes)
	want := []string{events.TypeAppTerminating + "/TERMINATING", events.TypeServiceChanged + "/ADDED", events.TypeServiceChanged + "/STATE_CHANGED"}
	if !slices.Equal(goodTypes, want) {
		t.Errorf("notify got %v, want %v", goodTypes, want)
	}
	// The broker counts a dead letter once the sink has answered, which
	// may be after the sink has recorded it.
	var s broker.Stats
	defer func() {
		if t.Failed() {
			t.Logf("broker stats %+v", s)
		}
	}()
	waitFor(t, 5*time.Second, "the broker's stats: 3 delivered, 1 dead-lettered, 1 retry", func() bool {
		s = b.Stats()
		return s.Delivered == 3 && s.DeadLettered == 1 && s.Retries == 1
	})
}
