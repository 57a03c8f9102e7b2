package manifests_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/manifests"
	"github.com/kmep-io/kmep/store/events"
)

// object is what every Knative object here can do.
type object interface {
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
}

// TestEventingDocumentsDecodeStrictlyAndValidate decodes every document of
// eventing.yaml into its Go type, rejecting unknown fields, and runs the
// object's own defaulting and validation (the eventing webhook's).
func TestEventingDocumentsDecodeStrictlyAndValidate(t *testing.T) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests.Eventing)))
	kinds := map[string]int{}
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			t.Fatal(err)
		}
		var obj object
		switch tm.APIVersion + " " + tm.Kind {
		case "eventing.knative.dev/v1 Broker":
			obj = new(eventingv1.Broker)
		case "eventing.knative.dev/v1 Trigger":
			obj = new(eventingv1.Trigger)
		case "sources.knative.dev/v1 SinkBinding":
			obj = new(sourcesv1.SinkBinding)
		default:
			t.Errorf("unexpected document %s %s", tm.APIVersion, tm.Kind)
			continue
		}
		kinds[tm.Kind]++
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			t.Errorf("%s: %v", tm.Kind, err)
			continue
		}
		obj.SetDefaults(context.Background())
		if fe := obj.Validate(context.Background()); fe != nil {
			t.Errorf("%s: %v", tm.Kind, fe)
		}
	}
	if kinds["Broker"] != 1 || kinds["Trigger"] < 2 || kinds["SinkBinding"] != 1 {
		t.Errorf("documents: %v", kinds)
	}
}

func triggers(t *testing.T) []*eventingv1.Trigger {
	t.Helper()
	trs, err := broker.LoadTriggers(manifests.Eventing)
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) == 0 {
		t.Fatal("no Triggers in eventing.yaml")
	}
	return trs
}

// sample is an event of type typ as kmep emits it.
func sample(typ string) cloudevents.Event {
	e := cloudevents.NewEvent()
	e.SetID("1700000000000-0")
	e.SetType(typ)
	e.SetSource(events.Source)
	e.SetSubject("subject")
	e.SetExtension(events.ExtApp, "app")
	e.SetExtension(events.ExtChange, "ADDED")
	return e
}

// TestTriggersCoverEventTypes: every type kmep emits reaches at least one
// Trigger, and every Trigger receives at least one type kmep emits (a
// Trigger for a type nobody emits is a typo).
func TestTriggersCoverEventTypes(t *testing.T) {
	trs := triggers(t)
	used := map[string]bool{}
	for _, typ := range events.Types {
		matched := false
		for _, tr := range trs {
			if broker.Match(tr, sample(typ)) {
				matched, used[tr.Name] = true, true
			}
		}
		if !matched {
			t.Errorf("no Trigger routes %s", typ)
		}
	}
	for _, tr := range trs {
		if !used[tr.Name] {
			t.Errorf("Trigger %s matches no type in events.Types", tr.Name)
		}
	}
}

// TestTriggersDeadLetterAndBelongToTheBroker: each Trigger is the Broker's
// and parks what it cannot deliver; and the all-in-one can resolve them
// all to in-process handlers.
func TestTriggersDeadLetterAndBelongToTheBroker(t *testing.T) {
	trs := triggers(t)
	for _, tr := range trs {
		if tr.Spec.Broker != "kmep" || tr.Namespace != "kmep" {
			t.Errorf("%s: broker %q namespace %q, want kmep/kmep", tr.Name, tr.Spec.Broker, tr.Namespace)
		}
		d := tr.Spec.Delivery
		if d == nil || d.DeadLetterSink == nil || d.DeadLetterSink.Ref == nil || d.DeadLetterSink.Ref.Name != "deadletter" {
			t.Errorf("%s: no deadLetterSink to the deadletter Service", tr.Name)
		}
		if d != nil && (d.Retry == nil || *d.Retry < 1 || d.BackoffDelay == nil) {
			t.Errorf("%s: no retries", tr.Name)
		}
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	b, err := broker.New(broker.Options{Broker: "kmep", Triggers: trs,
		Resolve: broker.Services(map[string]http.Handler{"notify": ok, "deadletter": ok, "installer": ok})})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.Triggers()); n != len(trs) {
		t.Fatalf("the broker uses %d of %d Triggers", n, len(trs))
	}
}
