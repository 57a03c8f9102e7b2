//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mecApp is an app instance provisioned over Mm5, with its token.
type mecApp struct{ id, token string }

func newApp(t *testing.T, e env, id string) mecApp { return mecApp{id: id, token: appToken(t, e, id)} }

// call sends one request with a bearer token and returns the status and
// body; an error is a transport error.
func call(method, url, token, body string, header map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mustCall is call that fails t unless the status is want.
func mustCall(t *testing.T, want int, method, url, token, body string) []byte {
	t.Helper()
	status, b, err := call(method, url, token, body, nil)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %v %s, want %d", method, url, status, err, b, want)
	}
	return b
}

// receiver is make e2e's subscriber pod (testdata/receiver.yaml), reached
// from the host through its Service's cluster IP (kube-proxy).
type receiver struct{ url, callback string }

func deployReceiver(t *testing.T, e env) receiver {
	run(t, e.root, "./local/cluster/apply.sh", filepath.Join(e.root, "local/cluster/e2e/testdata/receiver.yaml"))
	e.k(t, "rollout", "status", "deployment/receiver", "-n", "kmep-e2e", "--timeout=300s")
	ip := strings.TrimSpace(e.k(t, "get", "service", "receiver", "-n", "kmep-e2e", "-o", "jsonpath={.spec.clusterIP}"))
	r := receiver{url: "http://" + ip, callback: "http://receiver.kmep-e2e.svc.cluster.local/notify"}
	// Reachable by its name from a pod before anyone subscribes it: right
	// after the rollout, the first callbacks were answered 404 (by whatever
	// the name led to before the Service's DNS record was served), which
	// notify takes as the subscriber's refusal.
	img := strings.TrimSpace(e.k(t, "get", "deployment", "receiver", "-n", "kmep-e2e", "-o", "jsonpath={.spec.template.spec.containers[0].image}"))
	waitFor(t, 2*time.Minute, "the receiver by its name from a pod", func() bool {
		out, ok := runPod(t, e, "e2e-receiver-check", img, "get", "http://receiver.kmep-e2e.svc.cluster.local/healthz")
		if !ok {
			t.Logf("receiver check: %s", out)
		}
		return ok
	})
	return r
}

// notified is one ServiceAvailabilityNotification the receiver got, with
// the trace context headers of its POST.
type notified struct {
	at                          time.Time
	id, name, changeType, state string
	traceparent, tracestate     string
}

func (r receiver) received(t *testing.T) []notified {
	t.Helper()
	var got []struct {
		At          time.Time `json:"at"`
		TraceParent string    `json:"traceparent"`
		TraceState  string    `json:"tracestate"`
		Body        struct {
			ServiceReferences []struct {
				SerName       string `json:"serName"`
				SerInstanceID string `json:"serInstanceId"`
				State         string `json:"state"`
				ChangeType    string `json:"changeType"`
			} `json:"serviceReferences"`
		} `json:"body"`
	}
	for attempt := 0; ; attempt++ {
		status, b, err := call(http.MethodGet, r.url+"/received", "", "", nil)
		if err == nil && status == http.StatusOK && json.Unmarshal(b, &got) == nil {
			break
		}
		if attempt == 30 {
			t.Fatalf("GET %s/received: %d %v", r.url, status, err)
		}
		time.Sleep(time.Second)
	}
	var out []notified
	for _, g := range got {
		for _, s := range g.Body.ServiceReferences {
			out = append(out, notified{at: g.At, id: s.SerInstanceID, name: s.SerName, changeType: s.ChangeType, state: s.State,
				traceparent: g.TraceParent, tracestate: g.TraceState})
		}
	}
	return out
}

// added maps each service id to the arrivals of its ADDED notification.
func added(ns []notified) map[string][]time.Time {
	m := map[string][]time.Time{}
	for _, n := range ns {
		if n.changeType == "ADDED" {
			m[n.id] = append(m[n.id], n.at)
		}
	}
	return m
}

// register registers service name for a, retrying 5xx answers and
// transport errors with the same Idempotency-Key (the store applies it
// once) until ctx ends; it returns the service's id and when the 201 came.
// header holds further request headers (nil: none).
func register(ctx context.Context, e env, a mecApp, name string, header map[string]string) (string, time.Time, error) {
	body := fmt.Sprintf(`{"serName":%q,"version":"1.0","state":"ACTIVE","serializer":"JSON",
"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",
"endpoint":{"addresses":[{"host":"10.0.0.5","port":8080}]},"security":{}}}`, name)
	url := e.url + "/mep/mec_service_mgmt/v1/applications/" + a.id + "/services"
	var last string
	for ctx.Err() == nil {
		hdr := map[string]string{"Idempotency-Key": name}
		for k, v := range header {
			hdr[k] = v
		}
		status, b, err := call(http.MethodPost, url, a.token, body, hdr)
		switch {
		case err == nil && (status == http.StatusCreated || status == http.StatusOK):
			var s struct {
				SerInstanceID string `json:"serInstanceId"`
			}
			if json.Unmarshal(b, &s) != nil || s.SerInstanceID == "" {
				return "", time.Time{}, fmt.Errorf("register %s: %d without serInstanceId: %s", name, status, b)
			}
			return s.SerInstanceID, time.Now(), nil
		case err == nil && status/100 == 4:
			return "", time.Time{}, fmt.Errorf("register %s: %d %s", name, status, b)
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("%d %s", status, b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "", time.Time{}, fmt.Errorf("register %s: gave up: %s", name, last)
}

// round is one batch of changes with a fault injected while they flow.
type round struct {
	name  string
	fault func(t *testing.T) // nil: none
	acked map[string]time.Time
	// notified: service id → first arrival; took: until all arrived.
	first map[string]time.Time
	took  time.Duration
}

// changesPerRound is how many changes each round makes: one registration
// (an ADDED notification) each, 20 per second.
const changesPerRound = 100

// run makes the round's changes, injects its fault 1.5 s in, and waits
// until every registration answered 201 was notified, or limit.
func (rd *round) run(t *testing.T, e env, pub mecApp, r receiver, runID string, limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rd.acked = map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	if rd.fault != nil {
		wg.Go(func() {
			time.Sleep(1500 * time.Millisecond)
			rd.fault(t)
		})
	}
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				time.Sleep(time.Until(start.Add(time.Duration(i) * 50 * time.Millisecond)))
				id, at, err := register(ctx, e, pub, fmt.Sprintf("e2e-%s-%s-%03d", runID, rd.name, i), nil)
				if err != nil {
					t.Errorf("round %s: %v", rd.name, err)
					continue
				}
				mu.Lock()
				rd.acked[id] = at
				mu.Unlock()
			}
		})
	}
	for i := range changesPerRound {
		next <- i
	}
	close(next)
	wg.Wait()
	deadline := time.Now().Add(limit)
	for {
		got := added(r.received(t))
		rd.first = map[string]time.Time{}
		for id := range rd.acked {
			if at := got[id]; len(at) > 0 {
				rd.first[id] = slices.MinFunc(at, func(a, b time.Time) int { return a.Compare(b) })
			}
		}
		if len(rd.first) == len(rd.acked) || time.Now().After(deadline) {
			rd.took = time.Since(start)
			return
		}
		time.Sleep(2 * time.Second)
	}
}

// latencies are the times from each 201 to its notification's arrival.
func (rd *round) latencies() []time.Duration {
	var out []time.Duration
	for id, at := range rd.first {
		out = append(out, at.Sub(rd.acked[id]))
	}
	return out
}

// deletePods deletes the pods of a selector (gracefully, as kubectl does
// by default), failing t when there is none.
func deletePods(e env, ns, selector string) func(t *testing.T) {
	return func(t *testing.T) {
		out := e.kTry("delete", "pod", "-n", ns, "-l", selector, "--wait=false")
		if !strings.Contains(out, "deleted") {
			t.Errorf("no pod of %s in %s to delete: %q", selector, ns, out)
			return
		}
		t.Logf("deleted: %s", strings.TrimSpace(out))
	}
}

// eventing is issue 15's notification path on the cluster: one service
// change → the receiver pod gets its notification through relay → Broker
// → Trigger → notify, first with an app's trace context (which the
// notification must continue), then latency over 100 changes; then 100
// changes with each fault, counting lost and duplicate notifications.
func eventing(t *testing.T, e env, say func(string, ...any)) {
	r := deployReceiver(t, e)
	// A previous run's apps go first (with their subscriptions: the
	// receiver would get each change once per subscription); the services
	// are named after this run, so that its Idempotency-Keys are new and
	// the receiver's earlier notifications do not count.
	for _, app := range []string{"e2e-watcher", "e2e-publisher"} {
		call(http.MethodPost, e.url+"/mepcfg/app_lcm/v1/applications/"+app+"/terminate", e.admin, `{"gracefulTimeout":0}`, nil)
	}
	runID := strconv.FormatInt(time.Now().Unix(), 36)
	watcher := newApp(t, e, "e2e-watcher")
	pub := newApp(t, e, "e2e-publisher")
	mustCall(t, http.StatusCreated, http.MethodPost, e.url+"/mep/mec_service_mgmt/v1/applications/"+watcher.id+"/subscriptions",
		watcher.token, fmt.Sprintf(`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":%q}`, r.callback))

	traceThroughKnative(t, e, pub, r, runID, say)

	// The Redis pod's data is on its PVC with the AOF; a registration
	// answered 201 before the deletion must be there after it.
	rounds := []*round{
		{name: "nofault"},
		{name: "ingress", fault: deletePods(e, "knative-eventing", "eventing.knative.dev/brokerRole=ingress")},
		{name: "filter", fault: deletePods(e, "knative-eventing", "eventing.knative.dev/brokerRole=filter")},
		{name: "dispatcher", fault: deletePods(e, "knative-eventing", "messaging.knative.dev/role=dispatcher")},
		{name: "notify", fault: deletePods(e, "kmep", "serving.knative.dev/service=notify")},
		{name: "redis", fault: deletePods(e, "kmep", "app.kubernetes.io/name=redis")},
		{name: "subscriberdown", fault: func(t *testing.T) {
			if status, b, err := call(http.MethodPost, r.url+"/fail?for=30s", "", "", nil); err != nil || status != http.StatusNoContent {
				t.Errorf("receiver /fail: %d %v %s", status, err, b)
			}
		}},
	}
	// The relay publishes an event again once it has been unsettled for
	// its redelivery timeout (manifests: 5 min), so a round may take that.
	const limit = 7 * time.Minute
	for _, rd := range rounds {
		rd.run(t, e, pub, r, runID, limit)
		lat := rd.latencies()
		p50, p99 := time.Duration(0), time.Duration(0)
		if len(lat) > 0 {
			p50, p99 = pct(lat, 50), pct(lat, 99)
		}
		say("eventing %-14s %d changes acknowledged, %d notified, %d lost; latency p50 %s, p99 %s; all in %s",
			rd.name+":", len(rd.acked), len(rd.first), len(rd.acked)-len(rd.first),
			p50.Round(time.Millisecond), p99.Round(time.Millisecond), rd.took.Round(time.Second))
		if len(rd.acked) != changesPerRound {
			t.Errorf("round %s: %d of %d registrations acknowledged", rd.name, len(rd.acked), changesPerRound)
		}
		for id := range rd.acked {
			if _, ok := rd.first[id]; !ok {
				t.Errorf("round %s: service %s (acknowledged) never notified", rd.name, id)
			}
		}
		// Ready again before the next fault.
		for _, w := range [][]string{{"deployment", "knative-eventing"}, {"deployment", "kmep"}, {"statefulset", "kmep"}} {
			e.kTry("rollout", "status", w[0], "-n", w[1], "--timeout=180s")
		}
	}
	// Duplicates are counted last: a redelivery would come after the
	// relay's timeout, which the later rounds have given the earlier ones.
	got := added(r.received(t))
	for _, rd := range rounds {
		dups := 0
		for id := range rd.acked {
			if n := len(got[id]); n > 1 {
				dups++
				t.Errorf("round %s: service %s notified %d times", rd.name, id, n)
			}
		}
		say("eventing %-14s %d duplicate notifications", rd.name+":", dups)
	}
}

// traceThroughKnative registers one service with an app's own traceparent
// and tracestate headers, as an instrumented app would send them, and
// checks that the subscriber's notification POST continues that trace:
// its traceparent has the app's trace id and its tracestate is the app's.
// The trace context crosses the services function, the store, the relay,
// Knative's Broker (ingress, channel, filter), the Trigger and notify on
// the way. The cluster exports no spans (no OTEL_EXPORTER_OTLP_ENDPOINT),
// so kmep's tracers are no-ops that pass the parent's span id on: the
// callback's traceparent may be the app's own, byte for byte.
func traceThroughKnative(t *testing.T, e env, pub mecApp, r receiver, runID string, say func(string, ...any)) {
	const (
		appTrace = "0af7651916cd43dd8448eb211c80319c"
		appState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, _, err := register(ctx, e, pub, "e2e-trace-"+runID,
		map[string]string{"traceparent": "00-" + appTrace + "-b7ad6b7169203331-01", "tracestate": appState})
	if err != nil {
		t.Fatal(err)
	}
	var got notified
	waitFor(t, time.Minute, "the traced registration's notification", func() bool {
		for _, n := range r.received(t) {
			if n.id == id && n.changeType == "ADDED" {
				got = n
				return true
			}
		}
		return false
	})
	parts := strings.Split(got.traceparent, "-")
	if len(parts) != 4 || parts[1] != appTrace {
		t.Errorf("the notification's traceparent %q does not continue the app's trace %s", got.traceparent, appTrace)
	}
	if got.tracestate != appState {
		t.Errorf("the notification's tracestate %q, want the app's %q", got.tracestate, appState)
	}
	say("trace through Knative: the app's trace %s reached the subscriber's callback as %s, tracestate %q", appTrace, got.traceparent, got.tracestate)
}
