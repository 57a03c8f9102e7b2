package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/eventfilter"
	"knative.dev/eventing/pkg/eventfilter/attributes"
	"knative.dev/eventing/pkg/eventfilter/subscriptionsapi"
	"sigs.k8s.io/yaml"
)

// LoadTriggers decodes the Trigger objects (eventing.knative.dev/v1) of a
// multi-document YAML file, strictly: unknown or duplicate fields are
// errors. Documents of other kinds are skipped. Each Trigger is defaulted
// and validated as the eventing webhook would (SetDefaults, Validate).
func LoadTriggers(doc []byte) ([]*eventingv1.Trigger, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(doc)))
	var out []*eventingv1.Trigger
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if tm.Kind != "Trigger" {
			continue
		}
		if tm.APIVersion != eventingv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("document %d: Trigger of apiVersion %q, want %s", i, tm.APIVersion, eventingv1.SchemeGroupVersion)
		}
		t := new(eventingv1.Trigger)
		if err := yaml.UnmarshalStrict(raw, t); err != nil {
			return nil, fmt.Errorf("document %d: Trigger: %w", i, err)
		}
		if err := validate(t); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, t)
	}
}

// validate defaults t in place and validates it.
func validate(t *eventingv1.Trigger) error {
	ctx := context.Background()
	t.SetDefaults(ctx)
	if fe := t.Validate(ctx); fe != nil {
		return fmt.Errorf("Trigger %s/%s: %w", t.Namespace, t.Name, fe)
	}
	return nil
}

// newFilter is the filter Knative's broker applies for t: spec.filters
// when present, else spec.filter.attributes, else none. Call Cleanup on it
// when done.
func newFilter(t *eventingv1.Trigger) eventfilter.Filter {
	switch {
	case len(t.Spec.Filters) > 0:
		return allOf(materializeList(t.Spec.Filters))
	case t.Spec.Filter != nil:
		return attributes.NewAttributesFilter(t.Spec.Filter.Attributes)
	}
	return subscriptionsapi.NewNoFilter()
}

// materialize is subscriptionsapi.MaterializeSubscriptionsAPIFilter with
// Knative's own leaf filters (exact, prefix, suffix, not, cesql), but with
// plain all and any: Knative's NewAllFilter and NewAnyFilter reorder their
// children from a goroutine (optimizeLoop, swapWithEarlierFilter) that
// races with their own reads (eventing v0.50.0; the race detector flags
// it). The results are the same. An invalid filter is nil (and skipped, as
// Knative skips it); Validate rejects those before they get here.
func materialize(f eventingv1.SubscriptionsAPIFilter) eventfilter.Filter {
	var m eventfilter.Filter
	var err error
	switch {
	case len(f.Exact) > 0:
		m, err = subscriptionsapi.NewExactFilter(f.Exact)
	case len(f.Prefix) > 0:
		m, err = subscriptionsapi.NewPrefixFilter(f.Prefix)
	case len(f.Suffix) > 0:
		m, err = subscriptionsapi.NewSuffixFilter(f.Suffix)
	case len(f.All) > 0:
		m = allOf(materializeList(f.All))
	case len(f.Any) > 0:
		m = anyOf(materializeList(f.Any))
	case f.Not != nil:
		if inner := materialize(*f.Not); inner != nil {
			m = subscriptionsapi.NewNotFilter(inner)
		}
	case f.CESQL != "":
		m, err = subscriptionsapi.NewCESQLFilter(f.CESQL)
	}
	if err != nil {
		return nil
	}
	return m
}

func materializeList(fs []eventingv1.SubscriptionsAPIFilter) []eventfilter.Filter {
	out := make([]eventfilter.Filter, 0, len(fs))
	for _, f := range fs {
		if m := materialize(f); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// allOf and anyOf answer as Knative's all and any filters do: the first
// FailFilter (all) or PassFilter (any) decides, else the last child's
// result, else NoFilter.
type allOf []eventfilter.Filter

func (a allOf) Filter(ctx context.Context, e cloudevents.Event) eventfilter.FilterResult {
	res := eventfilter.NoFilter
	for _, f := range a {
		if res = f.Filter(ctx, e); res == eventfilter.FailFilter {
			return res
		}
	}
	return res
}

func (a allOf) Cleanup() {
	for _, f := range a {
		f.Cleanup()
	}
}

type anyOf []eventfilter.Filter

func (a anyOf) Filter(ctx context.Context, e cloudevents.Event) eventfilter.FilterResult {
	res := eventfilter.NoFilter
	for _, f := range a {
		if res = f.Filter(ctx, e); res == eventfilter.PassFilter {
			return res
		}
	}
	return res
}

func (a anyOf) Cleanup() {
	for _, f := range a {
		f.Cleanup()
	}
}

var (
	_ eventfilter.Filter = allOf(nil)
	_ eventfilter.Filter = anyOf(nil)
)

// passes is Knative's rule: only FailFilter keeps an event from a Trigger.
func passes(f eventfilter.Filter, e cloudevents.Event) bool {
	return f.Filter(context.Background(), e) != eventfilter.FailFilter
}

// Match reports whether Trigger t routes event e, decided exactly as the
// Broker decides it.
func Match(t *eventingv1.Trigger, e cloudevents.Event) bool {
	f := newFilter(t)
	defer f.Cleanup()
	return passes(f, e)
}
