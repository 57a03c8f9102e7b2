package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"

	"github.com/kmep-io/kmep/local/broker"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func trigger(name, body string) string {
	return fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: %s
  namespace: kmep
spec:
  broker: kmep
%s`, name, body)
}

func load(t *testing.T, docs ...string) []*eventingv1.Trigger {
	t.Helper()
	trs, err := broker.LoadTriggers([]byte(strings.Join(docs, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	return trs
}

func event(typ, source, subject string, ext map[string]string) cloudevents.Event {
	e := cloudevents.NewEvent()
	e.SetID("1-0")
	e.SetType(typ)
	e.SetSource(source)
	if subject != "" {
		e.SetSubject(subject)
	}
	for k, v := range ext {
		e.SetExtension(k, v)
	}
	_ = e.SetData(cloudevents.ApplicationJSON, map[string]string{"hello": "world"})
	return e
}

const sub = `  subscriber:
    uri: http://127.0.0.1:1/
`

func TestLoadTriggers(t *testing.T) {
	brokerDoc := `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: kmep, namespace: kmep}
spec: {unknownFieldsInOtherKindsAreNotOurs: true}`
	trs := load(t, "# a comment only", brokerDoc, trigger("a", sub+`  filters:
  - exact: {type: t1}
`), trigger("b", `  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: notify}
`))
	if len(trs) != 2 || trs[0].Name != "a" || trs[1].Name != "b" {
		t.Fatalf("got %d triggers", len(trs))
	}
	if ns := trs[1].Spec.Subscriber.Ref.Namespace; ns != "kmep" {
		t.Errorf("SetDefaults did not default the subscriber's namespace: %q", ns)
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", trigger("x", sub+"  filterz: {}\n"), "unknown field"},
		{"unknown nested field", trigger("x", sub+"  filters:\n  - exakt: {type: t}\n"), "unknown field"},
		{"two dialects", trigger("x", sub+"  filters:\n  - {exact: {type: t}, prefix: {type: t}}\n"), "multiple dialects"},
		{"bad attribute name", trigger("x", sub+"  filter:\n    attributes: {Type: t}\n"), "Attribute name"},
		{"bad backoffDelay", trigger("x", sub+"  delivery: {backoffDelay: soon}\n"), "backoffDelay"},
		{"bad backoffPolicy", trigger("x", sub+"  delivery: {backoffPolicy: random}\n"), "backoffPolicy"},
		{"no subscriber", trigger("x", "  filter: {}\n"), "subscriber"},
		{"no broker", "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: x}\nspec:\n" + sub, "broker"},
		{"bad cesql", trigger("x", sub+"  filters:\n  - cesql: \"type = \"\n"), "cesql"},
		{"old version", "apiVersion: eventing.knative.dev/v1beta1\nkind: Trigger\nmetadata: {name: x}\n", "apiVersion"},
		{"not yaml", "kind: [", "document 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.LoadTriggers([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestFilterMatching(t *testing.T) {
	trs := load(t,
		trigger("exact", sub+"  filters:\n  - exact: {type: dev.kmep.service.changed.v1}\n"),
		trigger("prefix", sub+"  filters:\n  - prefix: {type: dev.kmep.}\n"),
		trigger("suffix", sub+"  filters:\n  - suffix: {type: .v1}\n"),
		trigger("all", sub+"  filters:\n  - all:\n    - exact: {type: dev.kmep.service.changed.v1}\n    - exact: {kmepapp: app1}\n"),
		trigger("any", sub+"  filters:\n  - any:\n    - exact: {type: dev.kmep.app.terminating.v1}\n    - exact: {kmepchange: REMOVED}\n"),
		trigger("not", sub+"  filters:\n  - not:\n      exact: {type: dev.kmep.service.changed.v1}\n"),
		trigger("cesql", sub+"  filters:\n  - cesql: \"type LIKE 'dev.kmep.%' AND kmepchange = 'ADDED'\"\n"),
		trigger("implicit-all", sub+"  filters:\n  - exact: {type: dev.kmep.service.changed.v1}\n  - prefix: {subject: svc-}\n"),
		trigger("attributes", sub+"  filter:\n    attributes: {type: dev.kmep.app.terminating.v1, kmepapp: app1}\n"),
		trigger("attributes-any", sub+"  filter:\n    attributes: {type: \"\", kmepapp: app2}\n"),
		trigger("no-filter", sub),
	)
	byName := map[string]*eventingv1.Trigger{}
	for _, tr := range trs {
		byName[tr.Name] = tr
	}
	svc := func(app, change, subject string) cloudevents.Event {
		return event("dev.kmep.service.changed.v1", "/kmep/mep", subject, map[string]string{"kmepapp": app, "kmepchange": change})
	}
	term := event("dev.kmep.app.terminating.v1", "/kmep/mep", "app1", map[string]string{"kmepapp": "app1", "kmepchange": "TERMINATING"})
	other := event("com.example.other.v2", "/elsewhere", "", nil)
	for _, tc := range []struct {
		trigger string
		e       cloudevents.Event
		want    bool
	}{
		{"exact", svc("app1", "ADDED", "svc-1"), true},
		{"exact", term, false},
		{"prefix", term, true},
		{"prefix", other, false},
		{"suffix", svc("app1", "ADDED", "svc-1"), true},
		{"suffix", other, false},
		{"all", svc("app1", "ADDED", "svc-1"), true},
		{"all", svc("app2", "ADDED", "svc-1"), false},
		{"any", term, true},
		{"any", svc("app1", "REMOVED", "svc-1"), true},
		{"any", svc("app1", "ADDED", "svc-1"), false},
		{"not", term, true},
		{"not", svc("app1", "ADDED", "svc-1"), false},
		{"cesql", svc("app1", "ADDED", "svc-1"), true},
		{"cesql", svc("app1", "REMOVED", "svc-1"), false},
		{"cesql", other, false},
		{"implicit-all", svc("app1", "ADDED", "svc-1"), true},
		{"implicit-all", svc("app1", "ADDED", "other"), false},
		{"attributes", term, true},
		{"attributes", svc("app1", "ADDED", "svc-1"), false},
		{"attributes-any", svc("app2", "ADDED", "svc-1"), true},
		{"attributes-any", svc("app1", "ADDED", "svc-1"), false},
		{"attributes-any", other, false}, // the extension is missing
		{"no-filter", other, true},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", tc.trigger, tc.e.Type(), tc.e.Extensions()["kmepchange"]), func(t *testing.T) {
			if got := broker.Match(byName[tc.trigger], tc.e); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

// delivery is one request a test receiver got.
type delivery struct {
	at          time.Time
	e           cloudevents.Event
	contentType string
	path        string
}

// receiver records the events it gets and answers with status(n) for the
// n-th request (0-based).
type receiver struct {
	mu     sync.Mutex
	got    []delivery
	status func(n int) int
	errs   []error
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := binding.ToEvent(req.Context(), cehttp.NewMessageFromHttpRequest(req))
	if err != nil {
		r.errs = append(r.errs, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got = append(r.got, delivery{at: time.Now(), e: *e, contentType: req.Header.Get("Content-Type"), path: req.URL.Path})
	code := http.StatusOK
	if r.status != nil {
		code = r.status(len(r.got) - 1)
	}
	w.WriteHeader(code)
	if code >= 300 {
		_, _ = io.WriteString(w, "boom")
	}
}

func (r *receiver) deliveries(t *testing.T) []delivery {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		t.Error("receiver:", err)
	}
	return append([]delivery(nil), r.got...)
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

func run(t *testing.T, b *broker.Broker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// post sends e to the ingress in binary content mode.
func post(t *testing.T, h http.Handler, e cloudevents.Event) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/kmep/kmep", nil)
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestRetriesWithExponentialBackoffThenDeadLetter(t *testing.T) {
	subscriber := &receiver{status: func(int) int { return http.StatusInternalServerError }}
	subSrv := httptest.NewServer(subscriber)
	defer subSrv.Close()
	refuses := &receiver{status: func(int) int { return http.StatusBadRequest }}
	refSrv := httptest.NewServer(refuses)
	defer refSrv.Close()
	dls := &receiver{}
	dlsSrv := httptest.NewServer(dls)
	defer dlsSrv.Close()

	delivery := func(subscriberURL string) string {
		return fmt.Sprintf(`  subscriber: {uri: %q}
  filters:
  - exact: {type: t1}
  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT0.1S
    deadLetterSink: {uri: %q}
`, subscriberURL, dlsSrv.URL+"/dead")
	}
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), Triggers: load(t,
		trigger("fails", delivery(subSrv.URL+"/fails")),
		trigger("refuses", delivery(refSrv.URL+"/refuses")))})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	if w := post(t, b, event("t1", "/test", "s", nil)); w.Code != http.StatusAccepted {
		t.Fatalf("ingress: %d %s", w.Code, w.Body)
	}
	waitFor(t, 10*time.Second, "two dead letters", func() bool { return len(dls.deliveries(t)) == 2 })

	// retry: 3 → 4 attempts, waiting 0.1, 0.2 and 0.4 s.
	got := subscriber.deliveries(t)
	if len(got) != 4 {
		t.Fatalf("%d attempts, want 4", len(got))
	}
	for i, want := range []time.Duration{100, 200, 400} {
		gap := got[i+1].at.Sub(got[i].at)
		// Never sooner than the backoff; later only by scheduling delay
		// (generous: a loaded CI machine once took > 300 ms).
		if want *= time.Millisecond; gap < want || gap > want+1500*time.Millisecond {
			t.Errorf("wait before retry %d: %s, want %s", i+1, gap, want)
		}
	}
	// A 400 is final: no retry.
	if n := len(refuses.deliveries(t)); n != 1 {
		t.Errorf("a 400 was attempted %d times, want 1", n)
	}

	dests := map[string]cloudevents.Event{}
	for _, d := range dls.deliveries(t) {
		if d.path != "/dead" {
			t.Errorf("dead letter posted to %s", d.path)
		}
		dest, _ := types.ToString(d.e.Extensions()["knativeerrordest"])
		dests[dest] = d.e
	}
	for _, tc := range []struct {
		dest string
		code int32
	}{{subSrv.URL + "/fails", 500}, {refSrv.URL + "/refuses", 400}} {
		e, ok := dests[tc.dest]
		if !ok {
			t.Errorf("no dead letter with knativeerrordest %s: %v", tc.dest, dests)
			continue
		}
		if code, _ := types.ToInteger(e.Extensions()["knativeerrorcode"]); code != tc.code {
			t.Errorf("knativeerrorcode %v, want %d", e.Extensions()["knativeerrorcode"], tc.code)
		}
		if data, _ := types.ToString(e.Extensions()["knativeerrordata"]); data != base64.StdEncoding.EncodeToString([]byte("boom")) {
			t.Errorf("knativeerrordata %q", data)
		}
		if e.ID() != "1-0" || e.Type() != "t1" || !bytes.Contains(e.Data(), []byte("world")) {
			t.Errorf("dead letter is not the event: %v", e)
		}
	}
	if s := b.Stats(); s.DeadLettered != 2 || s.Retries != 3 || s.Delivered != 0 || s.Dropped != 0 || s.Accepted != 1 {
		t.Errorf("stats: %+v", s)
	}
}

func TestRetryThenSuccessAndDropWithoutDeadLetterSink(t *testing.T) {
	flaky := &receiver{status: func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	}}
	down := &receiver{status: func(int) int { return http.StatusBadGateway }}
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(),
		Resolve: broker.Services(map[string]http.Handler{"flaky": flaky, "down": down}),
		Triggers: load(t,
			trigger("flaky", `  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: flaky}}
  delivery: {retry: 5, backoffPolicy: linear, backoffDelay: PT0.1S}
`),
			trigger("down", `  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: down}}
  delivery: {retry: 1}
`))})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	post(t, b, event("t1", "/test", "s", nil))
	waitFor(t, 10*time.Second, "delivered and dropped", func() bool { s := b.Stats(); return s.Delivered == 1 && s.Dropped == 1 })
	got := flaky.deliveries(t)
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3", len(got))
	}
	// linear: the n-th retry waits n·0.1 s (n = 0, 1, ...), as Knative does.
	if gap := got[2].at.Sub(got[1].at); gap < 100*time.Millisecond {
		t.Errorf("second retry after %s, want >= 100ms", gap)
	}
	if got[0].path != "/" || got[0].contentType != "application/json" {
		t.Errorf("in-process request: path %q content type %q", got[0].path, got[0].contentType)
	}
	if n := len(down.deliveries(t)); n != 2 {
		t.Errorf("down: %d attempts, want 2", n)
	}
}

func TestEventMatchingTwoTriggersGoesToBoth(t *testing.T) {
	a, c, never := &receiver{}, &receiver{}, &receiver{}
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(),
		Resolve: broker.Services(map[string]http.Handler{"a": a, "c": c, "never": never}),
		Triggers: load(t,
			trigger("to-a", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: a}}\n  filters: [{prefix: {type: dev.kmep.}}]\n"),
			trigger("to-c", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: c}, uri: /events}\n  filters: [{exact: {type: dev.kmep.x}}]\n  delivery: {format: json}\n"),
			trigger("to-never", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: never}}\n  filters: [{exact: {type: other}}]\n"),
			"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: other-broker, namespace: kmep}\nspec:\n  broker: default\n  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: unknown}}\n",
		)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.Triggers(), ","); got != "kmep/to-a,kmep/to-c,kmep/to-never" {
		t.Fatalf("triggers in use: %s", got)
	}
	run(t, b)
	if w := post(t, b, event("dev.kmep.x", "/test", "s", nil)); w.Code != http.StatusAccepted {
		t.Fatalf("ingress: %d", w.Code)
	}
	waitFor(t, 5*time.Second, "both delivered", func() bool { return b.Stats().Delivered == 2 })
	da, dc := a.deliveries(t), c.deliveries(t)
	if len(da) != 1 || len(dc) != 1 || len(never.deliveries(t)) != 0 {
		t.Fatalf("deliveries: a %d, c %d, never %d", len(da), len(dc), len(never.deliveries(t)))
	}
	if da[0].e.ID() != "1-0" || dc[0].e.ID() != "1-0" {
		t.Errorf("ids %s %s", da[0].e.ID(), dc[0].e.ID())
	}
	if dc[0].contentType != "application/cloudevents+json" || dc[0].path != "/events" {
		t.Errorf("format json: content type %q path %q", dc[0].contentType, dc[0].path)
	}
}

func TestNewRejectsUnresolvableDestinations(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown service", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: nope}}\n", "nope"},
		{"not a service", "  subscriber: {ref: {apiVersion: v1, kind: Pod, name: p}}\n", "Pod"},
		{"dead letter", sub + "  delivery: {deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: gone}}}\n", "deadLetterSink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.New(broker.Options{Broker: "kmep", Resolve: broker.Services(map[string]http.Handler{}),
				Triggers: load(t, trigger("x", tc.doc))})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestIngressRejectsMalformedEvents(t *testing.T) {
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), Triggers: load(t, trigger("a", sub))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		body    string
		want    int
	}{
		{"no event at all", "POST", map[string]string{"Content-Type": "application/json"}, `{}`, 400},
		{"binary without id", "POST", map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "t", "Ce-Source": "/s"}, `{}`, 400},
		{"binary bad specversion", "POST", map[string]string{"Ce-Specversion": "9.9", "Ce-Id": "1", "Ce-Type": "t", "Ce-Source": "/s"}, ``, 400},
		{"structured not JSON", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":`, 400},
		{"structured without source", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":"1","type":"t"}`, 400},
		{"too large", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":"1","type":"t","source":"/s","data":"` + strings.Repeat("x", 5<<20) + `"}`, 413},
		{"GET", "GET", nil, ``, 405},
		{"structured ok", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":"1","type":"t","source":"/s"}`, 202},
		{"binary ok", "POST", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Type": "t", "Ce-Source": "/s"}, ``, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/", strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			b.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.want)
			}
		})
	}
	if s := b.Stats(); s.Invalid != 6 || s.Accepted != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestQueueFullAnswers503(t *testing.T) {
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), QueueSize: 3, RetryAfter: 1500 * time.Millisecond,
		Triggers: load(t,
			trigger("a", sub+"  filters: [{exact: {type: t1}}]\n"),
			trigger("b", sub+"  filters: [{prefix: {type: t}}]\n"))})
	if err != nil {
		t.Fatal(err)
	}
	// Not running: nothing drains. Each t1 event takes two places, t2 one.
	for i, tc := range []struct {
		typ  string
		want int
	}{{"t1", 202}, {"t1", 503}, {"t2", 202}, {"t2", 503}, {"other", 202}} {
		w := post(t, b, event(tc.typ, "/s", "", nil))
		if w.Code != tc.want {
			t.Fatalf("event %d (%s): %d, want %d", i, tc.typ, w.Code, tc.want)
		}
		if tc.want == 503 && w.Header().Get("Retry-After") != "2" {
			t.Errorf("Retry-After %q, want 2", w.Header().Get("Retry-After"))
		}
	}
	if s := b.Stats(); s.Rejected != 2 || s.Accepted != 3 {
		t.Errorf("stats %+v", s)
	}

	// Once running, the queue drains and the ingress accepts again; once
	// stopped, it answers 503.
	stop := run(t, b)
	waitFor(t, 5*time.Second, "the queue drains", func() bool { return b.Stats().Dropped == 3 })
	if w := post(t, b, event("t1", "/s", "", nil)); w.Code != 202 {
		t.Fatalf("after draining: %d", w.Code)
	}
	stop()
	if w := post(t, b, event("t1", "/s", "", nil)); w.Code != 503 {
		t.Fatalf("after Run returned: %d, want 503", w.Code)
	}
}

func TestSendInProcess(t *testing.T) {
	got := &receiver{}
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(), QueueSize: 1,
		Resolve:  broker.Services(map[string]http.Handler{"s": got}),
		Triggers: load(t, trigger("a", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s}}\n"))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res := b.Send(ctx, event("t", "/s", "", nil)); !cloudevents.IsACK(res) {
		t.Fatalf("first: %v", res)
	}
	// The queue is full: Send waits for room, and gives up when its
	// context ends.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if res := b.Send(short, event("t", "/s", "", nil)); cloudevents.IsACK(res) {
		t.Fatal("queue full until the context ended: want a NACK")
	}
	if res := b.Send(ctx, cloudevents.NewEvent()); cloudevents.IsACK(res) {
		t.Fatal("invalid event: want an error")
	}
	// A Send that waits gets in once a delivery frees a place.
	waiting := make(chan error, 1)
	go func() { waiting <- b.Send(ctx, event("t", "/s", "", nil)) }()
	stop := run(t, b)
	select {
	case res := <-waiting:
		if !cloudevents.IsACK(res) {
			t.Fatalf("waiting Send: %v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Send did not get in within 5 s of the queue draining")
	}
	waitFor(t, 5*time.Second, "delivered", func() bool { return len(got.deliveries(t)) == 2 })
	if s := b.Stats(); s.Accepted != 2 || s.Rejected != 1 || s.Invalid != 1 {
		t.Errorf("stats %+v", s)
	}
	// Once stopped, Send refuses at once.
	stop()
	if res := b.Send(ctx, event("t", "/s", "", nil)); cloudevents.IsACK(res) {
		t.Fatal("stopped broker: want a NACK")
	}
}

// Receivers hand events to receiver functions without encoding them, and
// read their results as cloudevents' HTTP receiver answers them: an ACK is
// delivered; a 5xx result is retried, then dead-lettered with its status
// and text; a 400 result is dead-lettered at once.
func TestReceiversInProcess(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	var dead []cloudevents.Event
	recv := func(name string, res func(n int) protocol.Result) broker.Receiver {
		return func(_ context.Context, e cloudevents.Event) protocol.Result {
			mu.Lock()
			defer mu.Unlock()
			calls[name]++
			if name == "dls" {
				dead = append(dead, e)
			}
			return res(calls[name])
		}
	}
	ok := func(int) protocol.Result { return protocol.ResultACK }
	b, err := broker.New(broker.Options{Broker: "kmep", Log: quiet(),
		Resolve: broker.Receivers(map[string]broker.Receiver{
			"ok": recv("ok", ok),
			"flaky": recv("flaky", func(n int) protocol.Result {
				if n == 1 {
					return cehttp.NewResult(502, "%d of %d failed", 1, 2)
				}
				return nil // as good as an ACK
			}),
			"down": recv("down", func(int) protocol.Result { return cehttp.NewResult(503, "store unavailable") }),
			"bad":  recv("bad", func(int) protocol.Result { return cehttp.NewResult(400, "not ours") }),
			"dls":  recv("dls", ok),
		}),
		Triggers: load(t,
			trigger("ok", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: ok}}\n"),
			trigger("flaky", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: flaky}}\n  delivery: {retry: 2}\n"),
			trigger("down", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: down}}\n  delivery: {retry: 2, deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dls}}}\n"),
			trigger("bad", "  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: bad}}\n  delivery: {retry: 2, deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dls}}}\n"),
		)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	if res := b.Send(context.Background(), event("t", "/s", "", nil)); !cloudevents.IsACK(res) {
		t.Fatal(res)
	}
	waitFor(t, 5*time.Second, "every delivery settled", func() bool { s := b.Stats(); return s.Delivered == 2 && s.DeadLettered == 2 })
	mu.Lock()
	defer mu.Unlock()
	if want := map[string]int{"ok": 1, "flaky": 2, "down": 3, "bad": 1, "dls": 2}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	codes := map[string]string{}
	for _, e := range dead {
		dest, _ := types.ToString(e.Extensions()["knativeerrordest"])
		code, _ := types.ToInteger(e.Extensions()["knativeerrorcode"])
		data, _ := types.ToString(e.Extensions()["knativeerrordata"])
		text, _ := base64.StdEncoding.DecodeString(data)
		codes[dest] = fmt.Sprintf("%d %s", code, text)
	}
	if want := map[string]string{"http://down.kmep.svc.cluster.local": "503 store unavailable",
		"http://bad.kmep.svc.cluster.local": "400 not ours"}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("dead letters %v, want %v", codes, want)
	}
}
