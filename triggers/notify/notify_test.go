package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/triggers/notify"
)

var (
	// redisSrv is the redis-server the tests share; each test has a prefix of its own.
	redisSrv *testenv.Redis
	nextSeq  atomic.Int64
)

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &redisSrv) }

// The app instances and the service the events are about.
const (
	consumer = "app-consumer"
	producer = "app-producer"
)

var rnis = store.ServiceRecord{ID: "ser-1", AppInstanceID: producer, Name: "rnis", State: store.StateActive, Rev: 1}

// streamID returns a fresh change-stream id (the event id).
func streamID() string { return fmt.Sprintf("1700000000000-%d", nextSeq.Add(1)) }

func serviceEvent(t testing.TB, id string, r store.ServiceRecord, change string) cloudevents.Event {
	t.Helper()
	e, ok, err := events.FromChange(store.Change{StreamID: id, Kind: store.KindService, Type: change,
		AppInstanceID: r.AppInstanceID, Service: r})
	if err != nil || !ok {
		t.Fatalf("FromChange: ok %v, err %v", ok, err)
	}
	return e
}

func terminationEvent(t testing.TB, id, app, data string) cloudevents.Event {
	t.Helper()
	e, ok, err := events.FromChange(store.Change{StreamID: id, Kind: store.KindApp, Type: store.ChangeTerminating,
		AppInstanceID: app, Data: []byte(data)})
	if err != nil || !ok {
		t.Fatalf("FromChange: ok %v, err %v", ok, err)
	}
	return e
}

// arrival is one request a callback server received.
type arrival struct {
	at     time.Time
	method string
	path   string
	query  string
	ct     string
	body   []byte
}

// callbacks is a callback server on 127.0.0.1 that records every request.
// respond answers the n-th (from 1) request to a path; nil: 204.
type callbacks struct {
	*httptest.Server
	respond func(w http.ResponseWriter, r *http.Request, n int)

	mu     sync.Mutex
	got    []arrival
	byPath map[string]int
}

func newCallbacks(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *callbacks {
	c := &callbacks{respond: respond, byPath: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *callbacks) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a := arrival{at: time.Now(), method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
		ct: r.Header.Get("Content-Type"), body: body}
	c.mu.Lock()
	c.got = append(c.got, a)
	c.byPath[r.URL.Path]++
	n := c.byPath[r.URL.Path]
	c.mu.Unlock()
	if c.respond == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c.respond(w, r, n)
}

// calls returns the requests to path, in arrival order.
func (c *callbacks) calls(path string) []arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []arrival
	for _, a := range c.got {
		if a.path == path {
			out = append(out, a)
		}
	}
	return out
}

// counts returns the number of requests per path.
func (c *callbacks) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byPath))
	for p, n := range c.byPath {
		out[p] = n
	}
	return out
}

func (c *callbacks) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *callbacks) reset() []arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got, c.byPath = nil, map[string]int{}
	return got
}

// env is a Notifier over its own store prefix, behind the CloudEvents HTTP
// receiver the binary uses.
type env struct {
	st   *store.Store
	n    *notify.Notifier
	recv string
}

// loopbackClient is the callback policy's client with 127.0.0.0/8 allowed.
func loopbackClient(t testing.TB, allow string) *http.Client {
	t.Helper()
	a, err := callback.ParseAllowList(allow)
	if err != nil {
		t.Fatal(err)
	}
	p, err := callback.New(callback.Options{Allow: a, IncludeInterfaceAddrs: true})
	if err != nil {
		t.Fatal(err)
	}
	return p.Client()
}

// newEnv fills what d leaves empty: a real store, the real policy's client
// allowing loopback, small retry waits, a test logger.
func newEnv(t testing.TB, d notify.Deps) *env {
	t.Helper()
	st := redisSrv.Store(t, store.Options{})
	if d.Store == nil {
		d.Store = st
	}
	if d.Client == nil {
		d.Client = loopbackClient(t, "127.0.0.0/8")
	}
	if d.Timeout == 0 {
		d.Timeout = 2 * time.Second
	}
	if d.Retry == (notify.Retry{}) {
		d.Retry = notify.Retry{Attempts: 3, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxRetryAfter: 2 * time.Second}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	n, err := notify.New(d)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(notify.HTTPHandler(n))
	t.Cleanup(ts.Close)
	return &env{st: st, n: n, recv: ts.URL}
}

func (e *env) subscribe(t testing.TB, subs ...store.Subscription) {
	t.Helper()
	for _, sub := range subs {
		if sub.Type == "" {
			sub.Type = store.SubServiceAvailability
		}
		if sub.AppInstanceID == "" {
			sub.AppInstanceID = consumer
		}
		sub.Body = []byte(`{}`)
		if _, _, err := e.st.CreateSubscription(context.Background(), sub); err != nil {
			t.Fatal(err)
		}
	}
}

// post sends the event in binary mode and returns the receiver's status
// and body.
func (e *env) post(ev cloudevents.Event) (int, string, error) {
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.recv, nil)
	if err != nil {
		return 0, "", err
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&ev), req); err != nil {
		return 0, "", err
	}
	return do(req)
}

func (e *env) send(t testing.TB, ev cloudevents.Event) (int, string) {
	t.Helper()
	status, body, err := e.post(ev)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

func do(req *http.Request) (int, string, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func wantStatus(t testing.TB, got int, body string, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("receiver status = %d (%q), want %d", got, body, want)
	}
}

func wantStats(t testing.TB, n *notify.Notifier, want notify.Stats) {
	t.Helper()
	if got := n.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestNotificationShapes(t *testing.T) {
	tests := []struct {
		name, golden, subType string
		event                 func(t *testing.T) cloudevents.Event
	}{
		{"service availability", "service_availability", store.SubServiceAvailability,
			func(t *testing.T) cloudevents.Event { return serviceEvent(t, streamID(), rnis, store.ChangeAdded) }},
		{"app termination", "app_termination", store.SubAppTermination,
			func(t *testing.T) cloudevents.Event {
				return terminationEvent(t, streamID(), consumer, `{"maxGracefulTimeout":10}`)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := newCallbacks(t, nil)
			e := newEnv(t, notify.Deps{})
			e.subscribe(t, store.Subscription{ID: "sub-1", Type: tc.subType, CallbackReference: cb.URL + "/notify?token=x"})
			status, body := e.send(t, tc.event(t))
			wantStatus(t, status, body, http.StatusOK)
			got := cb.calls("/notify")
			if len(got) != 1 {
				t.Fatalf("callback called %d times, want once", len(got))
			}
			if got[0].method != http.MethodPost || got[0].ct != "application/json" || got[0].query != "token=x" {
				t.Errorf("request %s ?%s Content-Type %q, want POST ?token=x application/json", got[0].method, got[0].query, got[0].ct)
			}
			problemtest.Golden(t, tc.golden, got[0].body)
			wantStats(t, e.n, notify.Stats{Events: 1, Delivered: 1})
		})
	}
}

// A termination event without maxGracefulTimeout takes it from the
// termination in progress.
func TestTerminationTimeoutFromStore(t *testing.T) {
	cb := newCallbacks(t, nil)
	e := newEnv(t, notify.Deps{})
	e.subscribe(t, store.Subscription{ID: "sub-1", Type: store.SubAppTermination, CallbackReference: cb.URL + "/term"})
	_, sid, err := e.st.StartTermination(context.Background(), consumer, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	status, body := e.send(t, terminationEvent(t, sid, consumer, ""))
	wantStatus(t, status, body, http.StatusOK)
	got := cb.calls("/term")
	if len(got) != 1 {
		t.Fatalf("callback called %d times, want once", len(got))
	}
	var n struct {
		MaxGracefulTimeout int `json:"maxGracefulTimeout"`
	}
	if err := json.Unmarshal(got[0].body, &n); err != nil || n.MaxGracefulTimeout != 30 {
		t.Errorf("notification %s: maxGracefulTimeout %d (err %v), want 30", got[0].body, n.MaxGracefulTimeout, err)
	}
}

func TestFilterSelection(t *testing.T) {
	cb := newCallbacks(t, nil)
	e := newEnv(t, notify.Deps{})
	yes := map[string]store.ServiceFilter{
		"name":        {SerNames: []string{"rnis", "other"}},
		"state":       {States: []string{store.StateActive}},
		"id":          {SerInstanceIDs: []string{rnis.ID}},
		"none":        {},
		"name+state":  {SerNames: []string{"rnis"}, States: []string{store.StateActive}},
		"local":       {IsLocal: ptr(true)},
		"name+states": {SerNames: []string{"rnis"}, States: []string{"INACTIVE", store.StateActive}},
	}
	no := map[string]store.ServiceFilter{
		"other-name":       {SerNames: []string{"other"}},
		"inactive":         {States: []string{"INACTIVE"}},
		"other-id":         {SerInstanceIDs: []string{"ser-2"}},
		"name+inactive":    {SerNames: []string{"rnis"}, States: []string{"INACTIVE"}},
		"category":         {SerCategoryIDs: []string{"cat-1"}},
		"not-local":        {IsLocal: ptr(false)},
		"other-name+state": {SerNames: []string{"other"}, States: []string{store.StateActive}},
	}
	for id, f := range yes {
		e.subscribe(t, store.Subscription{ID: "yes-" + id, CallbackReference: cb.URL + "/yes-" + id, Filter: f})
	}
	for id, f := range no {
		e.subscribe(t, store.Subscription{ID: "no-" + id, CallbackReference: cb.URL + "/no-" + id, Filter: f})
	}
	// A termination subscription of the producer is not a service subscription.
	e.subscribe(t, store.Subscription{ID: "no-term", AppInstanceID: producer, Type: store.SubAppTermination,
		CallbackReference: cb.URL + "/no-term"})

	status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeStateChanged))
	wantStatus(t, status, body, http.StatusOK)
	got := cb.counts()
	for id := range yes {
		if got["/yes-"+id] != 1 {
			t.Errorf("subscription yes-%s called %d times, want once", id, got["/yes-"+id])
		}
	}
	for p, n := range got {
		if strings.HasPrefix(p, "/no-") {
			t.Errorf("subscription %s called %d times, want never", p[1:], n)
		}
	}
	wantStats(t, e.n, notify.Stats{Events: 1, Delivered: int64(len(yes))})
}

func ptr[T any](v T) *T { return &v }

func TestDeliveryOutcomes(t *testing.T) {
	status := func(codes ...int) func(w http.ResponseWriter, r *http.Request, n int) {
		return func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(codes[min(n, len(codes))-1])
		}
	}
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, n int)
		want    int // receiver status
		calls   int
		stats   notify.Stats
	}{
		{"204", nil, http.StatusOK, 1, notify.Stats{Delivered: 1}},
		{"503 then 200", status(503, 200), http.StatusOK, 2, notify.Stats{Delivered: 1, Retried: 1}},
		{"500, 502 then 201", status(500, 502, 201), http.StatusOK, 3, notify.Stats{Delivered: 1, Retried: 2}},
		{"429 without Retry-After then 200", status(429, 200), http.StatusOK, 2, notify.Stats{Delivered: 1, Retried: 1}},
		{"timeout then 200", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				<-r.Context().Done() // until the notifier gives up on it
			}
		}, http.StatusOK, 2, notify.Stats{Delivered: 1, Retried: 1}},
		{"500 always", status(500), http.StatusBadGateway, 3, notify.Stats{Retried: 2, Failed: 1}},
		{"400", status(400), http.StatusOK, 1, notify.Stats{Rejected: 1}},
		{"404", status(404), http.StatusOK, 1, notify.Stats{Rejected: 1}},
		{"410", status(410), http.StatusOK, 1, notify.Stats{Rejected: 1}},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request, n int) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, http.StatusOK, 1, notify.Stats{Rejected: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := newCallbacks(t, tc.respond)
			e := newEnv(t, notify.Deps{Timeout: 300 * time.Millisecond})
			e.subscribe(t, store.Subscription{ID: "sub-1", CallbackReference: cb.URL + "/cb"})
			status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeAdded))
			wantStatus(t, status, body, tc.want)
			if got := cb.counts(); got["/cb"] != tc.calls || len(got) != 1 {
				t.Errorf("callback requests %v, want %d to /cb", got, tc.calls)
			}
			tc.stats.Events = 1
			wantStats(t, e.n, tc.stats)
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	e := newEnv(t, notify.Deps{Retry: notify.Retry{Attempts: 3, Backoff: time.Millisecond, MaxRetryAfter: 5 * time.Second}})
	e.subscribe(t, store.Subscription{ID: "sub-1", CallbackReference: cb.URL + "/cb"})
	status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeAdded))
	wantStatus(t, status, body, http.StatusOK)
	got := cb.calls("/cb")
	if len(got) != 2 {
		t.Fatalf("callback called %d times, want twice", len(got))
	}
	if gap := got[1].at.Sub(got[0].at); gap < 900*time.Millisecond {
		t.Errorf("second attempt %v after the first, want at least ~1 s (Retry-After: 1)", gap)
	}
	wantStats(t, e.n, notify.Stats{Events: 1, Delivered: 1, Retried: 1})
}

// A callback that never answers holds neither the other callbacks nor the
// event beyond its timeouts, whatever the concurrency.
func TestHangingCallback(t *testing.T) {
	for _, conc := range []int{1, 64} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			release := make(chan struct{})
			var hangEntered, hangAbandoned atomic.Int32
			type seen struct{ entered, abandoned int32 }
			fast := make(chan seen, 1)
			cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.URL.Path == "/fast" {
					fast <- seen{hangEntered.Load(), hangAbandoned.Load()}
					return
				}
				hangEntered.Add(1)
				select {
				case <-r.Context().Done(): // the notifier timed out
					hangAbandoned.Add(1)
				case <-release:
					return
				}
				<-release // blocks until the test ends
			})
			t.Cleanup(func() { close(release) }) // runs before cb.Close
			// With one slot the hanging attempt must time out before the
			// fast callback can run: a short timeout. With 64 the fast one
			// must run while the hanging one is in flight: a timeout long
			// enough that a loaded machine cannot make that a race.
			timeout := 500 * time.Millisecond
			if conc > 1 {
				timeout = 3 * time.Second
			}
			e := newEnv(t, notify.Deps{Concurrency: conc, Timeout: timeout,
				Retry: notify.Retry{Attempts: 2, Backoff: 5 * time.Millisecond}})
			// Subscriptions are tried in id order: the hanging one first.
			e.subscribe(t,
				store.Subscription{ID: "a-hang", CallbackReference: cb.URL + "/hang"},
				store.Subscription{ID: "b-fast", CallbackReference: cb.URL + "/fast"})

			type res struct {
				status int
				body   string
				err    error
			}
			done := make(chan res, 1)
			go func() {
				s, b, err := e.post(serviceEvent(t, streamID(), rnis, store.ChangeAdded))
				done <- res{s, b, err}
			}()
			var s seen
			select {
			case s = <-fast:
			case r := <-done:
				t.Fatalf("event answered %d %q (%v) before the fast callback was called", r.status, r.body, r.err)
			}
			if conc == 1 {
				// The one slot was the hanging callback's until its first
				// attempt timed out (the server side may notice the
				// client's timeout a moment later: see below).
				if s.entered < 1 {
					t.Errorf("fast callback called before the hanging one was entered (%d)", s.entered)
				}
			} else if s.abandoned != 0 {
				t.Errorf("fast callback called after the hanging one timed out (%d); want while its first attempt is in flight", s.abandoned)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			wantStatus(t, r.status, r.body, http.StatusBadGateway)
			for deadline := time.Now().Add(5 * time.Second); hangAbandoned.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if n := hangAbandoned.Load(); n != 2 {
				t.Errorf("the hanging callback's attempts abandoned by the notifier: %d, want 2 (both timed out)", n)
			}
			if got := cb.counts(); got["/hang"] != 2 || got["/fast"] != 1 {
				t.Errorf("callback requests %v, want 2 to /hang (both timed out) and 1 to /fast", got)
			}
			wantStats(t, e.n, notify.Stats{Events: 1, Delivered: 1, Retried: 1, Failed: 1})
		})
	}
}

// The broker redelivers a NACKed event with the same id: only the
// callbacks that failed are called again.
func TestRedeliveryAfterPartialFailure(t *testing.T) {
	var flaky atomic.Bool
	flaky.Store(true)
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/flaky" && flaky.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e := newEnv(t, notify.Deps{Retry: notify.Retry{Attempts: 2, Backoff: time.Millisecond}})
	e.subscribe(t,
		store.Subscription{ID: "a", CallbackReference: cb.URL + "/a"},
		store.Subscription{ID: "b", CallbackReference: cb.URL + "/flaky"},
		store.Subscription{ID: "c", CallbackReference: cb.URL + "/c"},
		store.Subscription{ID: "d", CallbackReference: cb.URL + "/refuses", Filter: store.ServiceFilter{}})
	ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)

	steps := []struct {
		name   string
		flaky  bool
		status int
		counts map[string]int // cumulative
		stats  notify.Stats   // cumulative
	}{
		{"first delivery", true, http.StatusBadGateway,
			map[string]int{"/a": 1, "/flaky": 2, "/c": 1, "/refuses": 1},
			notify.Stats{Events: 1, Delivered: 3, Retried: 1, Failed: 1}},
		{"redelivery, still failing", true, http.StatusBadGateway,
			map[string]int{"/a": 1, "/flaky": 4, "/c": 1, "/refuses": 1},
			notify.Stats{Events: 2, Delivered: 3, Retried: 2, Failed: 2, Skipped: 3}},
		{"redelivery, recovered", false, http.StatusOK,
			map[string]int{"/a": 1, "/flaky": 5, "/c": 1, "/refuses": 1},
			notify.Stats{Events: 3, Delivered: 4, Retried: 2, Failed: 2, Skipped: 6}},
		{"redelivery, all done", false, http.StatusOK,
			map[string]int{"/a": 1, "/flaky": 5, "/c": 1, "/refuses": 1},
			notify.Stats{Events: 4, Delivered: 4, Retried: 2, Failed: 2, Skipped: 10}},
	}
	for _, st := range steps {
		flaky.Store(st.flaky)
		status, body := e.send(t, ev)
		if status != st.status {
			t.Fatalf("%s: status %d (%q), want %d", st.name, status, body, st.status)
		}
		if got := cb.counts(); fmt.Sprint(got) != fmt.Sprint(st.counts) {
			t.Errorf("%s: callback requests %v, want %v", st.name, got, st.counts)
		}
		if got := e.n.Stats(); got != st.stats {
			t.Errorf("%s: Stats() = %+v, want %+v", st.name, got, st.stats)
		}
	}
}

// The end-to-end acknowledgment to the relay: an event stays pending while
// some callback fails, and each failed attempt touches it (the relay's
// redelivery timeout starts again); once every callback was served it is
// settled. An event that can never be notified is settled at once.
func TestEndToEndAcknowledgment(t *testing.T) {
	ctx := context.Background()
	var down atomic.Bool
	down.Store(true)
	cb := newCallbacks(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/down" && down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	e := newEnv(t, notify.Deps{Retry: notify.Retry{Attempts: 1}})
	e.subscribe(t, store.Subscription{ID: "up", CallbackReference: cb.URL + "/up"},
		store.Subscription{ID: "down", CallbackReference: cb.URL + "/down"})
	ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
	if err := e.st.AddPending(ctx, ev.ID()); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		time.Sleep(5 * time.Millisecond)
		before := time.Now()
		time.Sleep(5 * time.Millisecond)
		status, body := e.send(t, ev)
		wantStatus(t, status, body, http.StatusBadGateway)
		if ids, err := e.st.PendingIDs(ctx, 10); err != nil || len(ids) != 1 || ids[0] != ev.ID() {
			t.Fatalf("attempt %d: pending %v (%v), want the event", i, ids, err)
		}
		// Touched: not overdue for a timeout that ended before the attempt.
		if due, gone, err := e.st.ClaimOverdue(ctx, before, 10); err != nil || len(due)+len(gone) != 0 {
			t.Fatalf("attempt %d: claimable %v %v (%v): the attempt did not touch it", i, due, gone, err)
		}
	}
	down.Store(false)
	status, body := e.send(t, ev)
	wantStatus(t, status, body, http.StatusOK)
	if n, err := e.st.PendingCount(ctx); err != nil || n != 0 {
		t.Fatalf("%d pending (%v) after every callback was served, want 0", n, err)
	}
	if got := cb.counts(); got["/up"] != 1 || got["/down"] != 3 {
		t.Errorf("callback requests %v, want /up once and /down three times", got)
	}

	bad := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
	bad.SetSubject("not-the-service")
	if err := e.st.AddPending(ctx, bad.ID()); err != nil {
		t.Fatal(err)
	}
	status, body = e.send(t, bad)
	wantStatus(t, status, body, http.StatusBadRequest)
	if n, err := e.st.PendingCount(ctx); err != nil || n != 0 {
		t.Fatalf("%d pending (%v) after an invalid event, want 0: it can never be notified", n, err)
	}
}

func TestInvalidEvents(t *testing.T) {
	cb := newCallbacks(t, nil)
	e := newEnv(t, notify.Deps{})
	e.subscribe(t,
		store.Subscription{ID: "any", CallbackReference: cb.URL + "/any"},
		store.Subscription{ID: "any-producer", AppInstanceID: producer, CallbackReference: cb.URL + "/any"},
		store.Subscription{ID: "term", Type: store.SubAppTermination, CallbackReference: cb.URL + "/term"},
		store.Subscription{ID: "term-producer", AppInstanceID: producer, Type: store.SubAppTermination, CallbackReference: cb.URL + "/term"})

	raw := func(ct, body string, header map[string]string) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			req, err := http.NewRequest(http.MethodPost, e.recv, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", ct)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			return req
		}
	}
	event := func(edit func(ev *cloudevents.Event)) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			ev := serviceEvent(t, streamID(), rnis, store.ChangeAdded)
			edit(&ev)
			req, err := http.NewRequest(http.MethodPost, e.recv, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&ev), req); err != nil {
				t.Fatal(err)
			}
			return req
		}
	}
	data := func(typ, json string) func(ev *cloudevents.Event) {
		return func(ev *cloudevents.Event) {
			ev.SetType(typ)
			if json == "" {
				ev.DataEncoded = nil
				ev.SetDataContentType("")
				return
			}
			ev.DataEncoded = []byte(json)
		}
	}
	svc := func(s string) func(ev *cloudevents.Event) { return data(events.TypeServiceChanged, s) }
	term := func(s string) func(ev *cloudevents.Event) {
		return func(ev *cloudevents.Event) { data(events.TypeAppTerminating, s)(ev); ev.SetSubject(producer) }
	}
	const good = `{"changeType":"ADDED","serInstanceId":"ser-1","serName":"rnis","state":"ACTIVE","appInstanceId":"app-producer","rev":1,"href":"/x"}`

	tests := []struct {
		name string
		req  func(t *testing.T) *http.Request
		// handled: the event reached Handle (the receiver did not refuse it).
		handled bool
		status  int // zero: 400
	}{
		{"not a CloudEvent", raw("application/json", `{"hello":"world"}`, nil), false, 0},
		{"empty body", raw("", "", nil), false, 0},
		{"too large", raw("application/cloudevents+json", strings.Repeat(" ", notify.MaxEventBytes+1), nil), false,
			http.StatusRequestEntityTooLarge},
		{"structured, not JSON", raw("application/cloudevents+json", `{not json`, nil), false, 0},
		{"structured, no id", raw("application/cloudevents+json",
			`{"specversion":"1.0","type":"`+events.TypeServiceChanged+`","source":"/kmep/mep","data":`+good+`}`, nil), false, 0},
		{"binary, no id", raw("application/json", good, map[string]string{"ce-specversion": "1.0",
			"ce-type": events.TypeServiceChanged, "ce-source": "/kmep/mep", "ce-subject": "ser-1"}), false, 0},
		{"unknown type", event(func(ev *cloudevents.Event) { ev.SetType("dev.kmep.other.v1") }), true, 0},
		{"no data", event(svc("")), true, 0},
		{"undecodable data", event(svc(`{"serInstanceId":5}`)), true, 0},
		{"data not JSON", event(svc(`not json`)), true, 0},
		{"data lacks serName", event(svc(`{"changeType":"ADDED","serInstanceId":"ser-1","state":"ACTIVE","appInstanceId":"app-producer"}`)), true, 0},
		{"unknown changeType", event(svc(strings.Replace(good, "ADDED", "MOVED", 1))), true, 0},
		{"subject mismatch", event(func(ev *cloudevents.Event) { ev.SetSubject("ser-2") }), true, 0},
		{"no subject", event(func(ev *cloudevents.Event) { ev.SetSubject("") }), true, 0},
		{"app extension mismatch", event(func(ev *cloudevents.Event) { ev.SetExtension(events.ExtApp, consumer) }), true, 0},
		{"termination without app", event(term(`{"maxGracefulTimeout":3}`)), true, 0},
		{"termination subject mismatch", event(term(`{"appInstanceId":"app-consumer","maxGracefulTimeout":3}`)), true, 0},
		{"termination negative timeout", event(term(`{"appInstanceId":"app-producer","maxGracefulTimeout":-1}`)), true, 0},
		{"termination data not JSON", event(term(`[`)), true, 0},
	}
	var handled int64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := do(tc.req(t))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			wantStatus(t, status, body, want)
			if tc.handled {
				handled++
			}
		})
	}
	if n := cb.total(); n != 0 {
		t.Errorf("callbacks called %d times (%v), want never", n, cb.counts())
	}
	wantStats(t, e.n, notify.Stats{Events: handled, Invalid: handled})

	// The same subscriptions do receive a valid event.
	status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeAdded))
	wantStatus(t, status, body, http.StatusOK)
	if got := cb.counts(); got["/any"] != 2 || len(got) != 1 {
		t.Errorf("callback requests %v, want 2 to /any", got)
	}
}

// fakeStore fails where its errors are set and otherwise answers from subs.
type fakeStore struct {
	subs                 []store.Subscription
	selectErr, recordErr error
}

var _ notify.Store = (*fakeStore)(nil)

func (f *fakeStore) Audiences(_ context.Context, qs []store.AudienceQuery) ([]store.Audience, error) {
	out := make([]store.Audience, len(qs))
	for i := range out {
		out[i] = store.Audience{Subs: f.subs, Done: make([]bool, len(f.subs))}
	}
	return out, f.selectErr
}

func (f *fakeStore) Record(context.Context, store.Progress) error { return f.recordErr }

func (f *fakeStore) GetTermination(_ context.Context, app string) (store.Termination, error) {
	return store.Termination{}, fmt.Errorf("get termination %s: %w", app, store.ErrNotFound)
}

// A store that cannot be read is a 503 with nothing sent; one that cannot
// record the event as done is a 503 too, after the callbacks got it (the
// broker's redelivery then finds them done, or sends again: never lost).
func TestStoreUnavailable(t *testing.T) {
	unavailable := fmt.Errorf("redis: %w", store.ErrUnavailable)
	for _, tc := range []struct {
		name  string
		fake  fakeStore
		calls int
	}{
		{"subscriptions", fakeStore{selectErr: unavailable}, 0},
		{"settlement", fakeStore{recordErr: unavailable}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := newCallbacks(t, nil)
			tc.fake.subs = []store.Subscription{{ID: "s", AppInstanceID: consumer, Type: store.SubServiceAvailability,
				CallbackReference: cb.URL + "/cb"}}
			e := newEnv(t, notify.Deps{Store: &tc.fake})
			for _, ev := range []cloudevents.Event{serviceEvent(t, streamID(), rnis, store.ChangeAdded),
				terminationEvent(t, streamID(), consumer, `{"maxGracefulTimeout":1}`)} {
				status, body := e.send(t, ev)
				wantStatus(t, status, body, http.StatusServiceUnavailable)
			}
			if n := cb.total(); n != tc.calls {
				t.Errorf("callback called %d times, want %d", n, tc.calls)
			}
		})
	}
}

// The delivery-time checks: a callback the policy refuses (here: loopback
// without KMEP_CALLBACK_ALLOW) or that is not an http(s) URL is refused for
// good, not retried, and does not fail the event.
func TestRefusedCallbacks(t *testing.T) {
	cb := newCallbacks(t, nil)
	tests := []struct {
		name, allow, url string
	}{
		{"loopback not allowed", "", cb.URL + "/cb"},
		{"loopback name not allowed", "", strings.Replace(cb.URL, "127.0.0.1", "localhost", 1) + "/cb"},
		{"not http", "127.0.0.0/8", "ftp://127.0.0.1/cb"},
		{"not a URL", "127.0.0.0/8", "http://[::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, notify.Deps{Client: loopbackClient(t, tc.allow)})
			e.subscribe(t, store.Subscription{ID: "sub-1", CallbackReference: tc.url})
			status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeAdded))
			wantStatus(t, status, body, http.StatusOK)
			wantStats(t, e.n, notify.Stats{Events: 1, Rejected: 1})
		})
	}
	if n := cb.total(); n != 0 {
		t.Errorf("callback called %d times, want never", n)
	}
}

func TestNewRequiresDeps(t *testing.T) {
	for _, d := range []notify.Deps{
		{Client: http.DefaultClient},
		{Store: &fakeStore{}},
		{Store: &fakeStore{}, Client: http.DefaultClient, Timeout: -1},
		{Store: &fakeStore{}, Client: http.DefaultClient, Timeout: time.Second, ClaimTTL: time.Second},
	} {
		if _, err := notify.New(d); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", d)
		}
	}
}

const fanOut = 1000

// subscribeMany creates n subscriptions matching rnis by name, each with a
// callback path of its own, and one that does not match.
func subscribeMany(t testing.TB, e *env, cb *callbacks, n int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				id := fmt.Sprintf("sub-%04d", i)
				_, _, err := e.st.CreateSubscription(ctx, store.Subscription{ID: id, AppInstanceID: consumer,
					Type: store.SubServiceAvailability, CallbackReference: cb.URL + "/" + id, Body: []byte(`{}`),
					Filter: store.ServiceFilter{SerNames: []string{"rnis"}}})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs); err != nil {
		t.Fatal(err)
	}
	e.subscribe(t, store.Subscription{ID: "other", CallbackReference: cb.URL + "/other",
		Filter: store.ServiceFilter{SerNames: []string{"other"}}})
}

func TestFanOut1000(t *testing.T) {
	cb := newCallbacks(t, nil)
	e := newEnv(t, notify.Deps{})
	subscribeMany(t, e, cb, fanOut)
	status, body := e.send(t, serviceEvent(t, streamID(), rnis, store.ChangeAdded))
	wantStatus(t, status, body, http.StatusOK)
	got := cb.counts()
	if len(got) != fanOut || got["/other"] != 0 {
		t.Errorf("%d callbacks called (other: %d), want %d", len(got), got["/other"], fanOut)
	}
	for p, n := range got {
		if n != 1 {
			t.Errorf("%s called %d times, want once", p, n)
		}
	}
	wantStats(t, e.n, notify.Stats{Events: 1, Delivered: fanOut})
}
