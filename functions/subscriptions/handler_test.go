package subscriptions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// srv is the redis-server the tests share; each test has a prefix of its own.
var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

// fakeCallbacks is a hand-written CallbackValidator: it refuses the URLs in
// refuse with their reason and accepts everything else.
type fakeCallbacks struct {
	refuse map[string]string
	calls  atomic.Int64
}

var _ subscriptions.CallbackValidator = (*fakeCallbacks)(nil)

func (f *fakeCallbacks) Validate(_ context.Context, rawURL string) error {
	f.calls.Add(1)
	if reason, ok := f.refuse[rawURL]; ok {
		return &callback.Error{Reason: reason, Err: callback.ErrForbiddenAddress}
	}
	return nil
}

// refusedCallback is the URL the fake policy refuses.
const refusedCallback = "http://10.0.0.66/cb"

// env is one handler over its own store prefix.
type env struct {
	h  http.Handler
	st *store.Store
}

type envOptions struct {
	// redis is the server; nil: the shared one.
	redis *testenv.Redis
	// callbacks is the validator; nil: a fakeCallbacks refusing refusedCallback.
	callbacks subscriptions.CallbackValidator
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	r := o.redis
	if r == nil {
		r = srv
	}
	st := r.Store(t, store.Options{})
	cb := o.callbacks
	if cb == nil {
		cb = &fakeCallbacks{refuse: map[string]string{refusedCallback: "host 10.0.0.66 is not a permitted address"}}
	}
	return &env{st: st, h: subscriptions.New(subscriptions.Deps{Store: st, Callbacks: cb,
		Authenticate: resttest.Authenticate, Log: slog.New(slog.DiscardHandler)})}
}

// do sends one request as app ("" sends no Authorization).
func (e *env) do(t *testing.T, method, path, app, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if app != "" {
		req.Header.Set("Authorization", "Bearer "+app)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// kind is one of the two subscription APIs as the tests see it.
type kind struct {
	name, base, typ string
}

var (
	serAvail = kind{name: "service availability", base: subscriptions.ServiceMgmtPath, typ: store.SubServiceAvailability}
	appTerm  = kind{name: "app termination", base: subscriptions.AppSupportPath, typ: store.SubAppTermination}
	kinds    = []kind{serAvail, appTerm}
)

func (k kind) list(app string) string { return k.base + "/applications/" + app + "/subscriptions" }

func (k kind) one(app, id string) string { return k.list(app) + "/" + id }

// body is a minimal valid subscription of kind k.
func (k kind) body(cb string) string {
	return `{"subscriptionType":"` + k.typ + `","callbackReference":"` + cb + `"}`
}

// other is the other kind.
func (k kind) other() kind {
	if k == serAvail {
		return appTerm
	}
	return serAvail
}

// create POSTs body as app under k and returns the new subscription id.
func (e *env) create(t *testing.T, k kind, app, body string) string {
	t.Helper()
	rec := e.do(t, "POST", k.list(app), app, body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", k.list(app), rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")
	prefix := "http://example.com" + k.list(app) + "/"
	id, ok := strings.CutPrefix(loc, prefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		t.Fatalf("Location = %q, want %s<id>", loc, prefix)
	}
	return id
}

// linkList is the SubscriptionLinkList of app under k.
type linkList struct {
	Links struct {
		Self struct {
			Href string `json:"href"`
		} `json:"self"`
		Subscriptions []struct {
			Href string `json:"href"`
			Rel  string `json:"rel"`
		} `json:"subscriptions"`
	} `json:"_links"`
}

// ids GETs the link list of app under k, checks its shape, and returns the
// subscription ids in it.
func (e *env) ids(t *testing.T, k kind, app string) []string {
	t.Helper()
	rec := e.do(t, "GET", k.list(app), app, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", k.list(app), rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var l linkList
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
		t.Fatalf("link list %s: %v", rec.Body, err)
	}
	if l.Links.Self.Href != k.list(app) {
		t.Errorf("_links.self.href = %q, want %q", l.Links.Self.Href, k.list(app))
	}
	if l.Links.Subscriptions == nil {
		t.Errorf("link list without a subscriptions array: %s", rec.Body)
	}
	ids := []string{}
	for _, s := range l.Links.Subscriptions {
		if s.Rel != k.typ {
			t.Errorf("rel = %q, want %q", s.Rel, k.typ)
		}
		id, ok := strings.CutPrefix(s.Href, k.list(app)+"/")
		if !ok {
			t.Errorf("href %q is not under %s", s.Href, k.list(app))
		}
		ids = append(ids, id)
	}
	return ids
}

// snapshot is everything the store holds for the test apps, and the last
// change: a refused request must leave it as it was.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, app := range []string{"app-a", "app-b"} {
		subs, err := e.st.ListSubscriptions(ctx, app, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			fmt.Fprintf(&b, "%s %s %s %s %+v %s\n", s.ID, s.AppInstanceID, s.Type, s.CallbackReference, s.Filter, s.Body)
		}
	}
	last, err := e.st.LastChangeID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "last change %s\n", last)
	return b.String()
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func ptr[T any](v T) *T { return &v }

// edgeGalleryBody is a subscription as EdgeGallery's mep-agent marshals it:
// "links" instead of "_links", every list present (most of them empty), and
// isLocal false from a plain Go bool.
const edgeGalleryBody = `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5:8080/notify","links":{"self":{"href":""}},"filteringCriteria":{"serInstanceIds":[],"serNames":["svc-a"],"serCategories":[],"states":[],"isLocal":false}}`

func TestCreateServiceAvailability(t *testing.T) {
	tests := []struct {
		name, body string
		// echo is the expected response body but for _links.
		echo       string
		wantFilter store.ServiceFilter
	}{
		{name: "no filter", body: serAvail.body("http://10.0.0.5/cb"),
			echo: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb"}`},
		{name: "EdgeGallery mep-agent", body: edgeGalleryBody,
			echo:       `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5:8080/notify","filteringCriteria":{"serNames":["svc-a"],"isLocal":false}}`,
			wantFilter: store.ServiceFilter{SerNames: []string{"svc-a"}}},
		{name: "request _links ignored, empty criteria", body: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","_links":"whatever","filteringCriteria":{}}`,
			echo: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb"}`},
		{name: "null criteria", body: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":null}`,
			echo: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb"}`},
		{name: "v3.1.1 wrapper", body: `{"SerAvailabilityNotificationSubscription":{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":{"serInstanceIds":["s1","s2"]}}}`,
			echo:       `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":{"serInstanceIds":["s1","s2"]}}`,
			wantFilter: store.ServiceFilter{SerInstanceIDs: []string{"s1", "s2"}}},
		{name: "categories, states, isLocal true", body: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":{"serCategories":[{"href":"/cat/rni","id":"rni","name":"RNI","version":"1"},{"id":"loc"}],"states":["ACTIVE","SUSPENDED"],"isLocal":true}}`,
			echo:       `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":{"serCategories":[{"href":"/cat/rni","id":"rni","name":"RNI","version":"1"},{"href":"","id":"loc","name":"","version":""}],"states":["ACTIVE","SUSPENDED"],"isLocal":true}}`,
			wantFilter: store.ServiceFilter{SerCategoryIDs: []string{"rni", "loc"}, States: []string{"ACTIVE", "SUSPENDED"}, IsLocal: ptr(true)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			rec := e.do(t, "POST", serAvail.list("app-a"), "app-a", tc.body)
			id := checkCreated(t, e, serAvail, "app-a", rec, tc.echo)
			sub, err := e.st.GetSubscription(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sub.Filter, tc.wantFilter) {
				t.Errorf("stored filter = %+v, want %+v", sub.Filter, tc.wantFilter)
			}
		})
	}
}

func TestCreateAppTermination(t *testing.T) {
	tests := []struct{ name, body string }{
		{name: "appInstanceId absent", body: appTerm.body("http://10.0.0.5/term")},
		{name: "appInstanceId of the path", body: `{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"http://10.0.0.5/term","appInstanceId":"app-a"}`},
		{name: "request links ignored", body: `{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"http://10.0.0.5/term","_links":{"self":{"href":"/x"}},"links":{}}`},
		{name: "v3.1.1 wrapper", body: `{"AppTerminationNotificationSubscription":{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"http://10.0.0.5/term","appInstanceId":"app-a"}}`},
	}
	const echo = `{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"http://10.0.0.5/term","appInstanceId":"app-a"}`
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			rec := e.do(t, "POST", appTerm.list("app-a"), "app-a", tc.body)
			id := checkCreated(t, e, appTerm, "app-a", rec, echo)
			term, err := e.st.TerminationSubscriptions(context.Background(), "app-a")
			if err != nil {
				t.Fatal(err)
			}
			if len(term) != 1 || term[0].ID != id || term[0].CallbackReference != "http://10.0.0.5/term" {
				t.Errorf("termination subscriptions = %+v, want the one created", term)
			}
		})
	}
}

// checkCreated checks a 201 answer: Location, the body (echo plus its self
// link), what the store holds, and that GET serves the same body. It
// returns the subscription id.
func checkCreated(t *testing.T, e *env, k kind, app string, rec *httptest.ResponseRecorder, echo string) string {
	t.Helper()
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	id, ok := strings.CutPrefix(rec.Header().Get("Location"), "http://example.com"+k.list(app)+"/")
	if !ok || len(id) != 36 || id[14] != '4' {
		t.Fatalf("Location = %q, want an absolute URL ending in a random UUID", rec.Header().Get("Location"))
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(echo), &want); err != nil {
		t.Fatal(err)
	}
	want["_links"] = map[string]any{"self": map[string]any{"href": k.one(app, id)}}
	wantJSON, _ := json.Marshal(want)
	if !jsonEqual(rec.Body.Bytes(), wantJSON) {
		t.Errorf("body = %s\nwant %s", rec.Body, wantJSON)
	}
	sub, err := e.st.GetSubscription(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if sub.AppInstanceID != app || sub.Type != k.typ || sub.CallbackReference != want["callbackReference"] {
		t.Errorf("stored %+v", sub)
	}
	if !jsonEqual(sub.Body, rec.Body.Bytes()) {
		t.Errorf("stored body %s, served %s", sub.Body, rec.Body)
	}
	got := e.do(t, "GET", k.one(app, id), app, "")
	if got.Code != http.StatusOK || !jsonEqual(got.Body.Bytes(), rec.Body.Bytes()) {
		t.Errorf("GET = %d %s, want 200 %s", got.Code, got.Body, rec.Body)
	}
	return id
}

// TestLifecycle creates, lists, reads and deletes subscriptions of both
// kinds side by side: each API lists only its own kind.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, k := range kinds {
		if ids := e.ids(t, k, "app-a"); len(ids) != 0 {
			t.Fatalf("%s: list before any subscription = %v", k.name, ids)
		}
	}
	made := map[kind][]string{}
	for _, k := range kinds {
		for i := range 3 {
			made[k] = append(made[k], e.create(t, k, "app-a", k.body(fmt.Sprintf("http://10.0.0.5/%d", i))))
		}
		slices.Sort(made[k])
	}
	e.create(t, serAvail, "app-b", serAvail.body("http://10.0.0.6/cb"))
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			if got := e.ids(t, k, "app-a"); !slices.Equal(got, made[k]) {
				t.Errorf("list = %v, want %v", got, made[k])
			}
			del := made[k][1]
			rec := e.do(t, "DELETE", k.one("app-a", del), "app-a", "")
			if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
				t.Fatalf("DELETE = %d %q, want 204 and no body", rec.Code, rec.Body)
			}
			want := slices.Delete(slices.Clone(made[k]), 1, 2)
			if got := e.ids(t, k, "app-a"); !slices.Equal(got, want) {
				t.Errorf("list after DELETE = %v, want %v", got, want)
			}
			for _, m := range []string{"GET", "DELETE"} {
				problemtest.Want(t, e.do(t, m, k.one("app-a", del), "app-a", ""), k.one("app-a", del), http.StatusNotFound, "")
			}
			if _, err := e.st.GetSubscription(context.Background(), del); err == nil {
				t.Error("deleted subscription still in the store")
			}
		})
	}
	if got := e.ids(t, serAvail, "app-b"); len(got) != 1 {
		t.Errorf("app-b's list = %v, want its one subscription", got)
	}
}

// TestBadRequests: every refused body is a 4xx naming the field, and
// nothing is stored.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, k := range kinds {
		e.create(t, k, "app-a", k.body("http://10.0.0.5/existing"))
	}
	names := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("%q", fmt.Sprintf("svc-%d", i))
		}
		return strings.Join(s, ",")
	}
	repeat := func(v string, n int) string { return strings.TrimSuffix(strings.Repeat(v+",", n), ",") }
	long := strings.Repeat("x", subscriptions.MaxStringLen+1)
	fc := func(criteria string) string {
		return `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":` + criteria + `}`
	}
	tests := []struct {
		name   string
		k      kind
		body   string
		status int
		field  string
		golden string
	}{
		{name: "malformed JSON", k: serAvail, body: `{"subscriptionType":`, field: "body"},
		{name: "empty body", k: serAvail, body: ``, field: "body"},
		{name: "not an object", k: appTerm, body: `[1]`, field: "body"},
		{name: "trailing data", k: serAvail, body: serAvail.body("http://10.0.0.5/cb") + `}`, field: "body"},
		{name: "subscriptionType missing", k: serAvail, body: `{"callbackReference":"http://10.0.0.5/cb"}`, field: "subscriptionType"},
		{name: "app termination under service management", k: serAvail, body: appTerm.body("http://10.0.0.5/cb"), field: "subscriptionType", golden: "wrong_subscription_type"},
		{name: "service availability under app support", k: appTerm, body: serAvail.body("http://10.0.0.5/cb"), field: "subscriptionType"},
		{name: "unknown subscriptionType", k: serAvail, body: `{"subscriptionType":"LocationSubscription","callbackReference":"http://10.0.0.5/cb"}`, field: "subscriptionType"},
		{name: "callbackReference missing", k: serAvail, body: `{"subscriptionType":"SerAvailabilityNotificationSubscription"}`, field: "callbackReference", golden: "missing_callback"},
		{name: "callbackReference empty", k: appTerm, body: appTerm.body(""), field: "callbackReference"},
		{name: "callbackReference blank", k: serAvail, body: serAvail.body("  "), field: "callbackReference"},
		{name: "callbackReference not a string", k: serAvail, body: `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":5}`, field: "callbackReference"},
		{name: "callbackReference too long", k: serAvail, body: serAvail.body("http://10.0.0.5/" + strings.Repeat("x", callback.MaxURLLength)), field: "callbackReference"},
		{name: "callback refused by the policy", k: serAvail, body: serAvail.body(refusedCallback), field: "callbackReference", golden: "callback_refused"},
		{name: "termination callback refused by the policy", k: appTerm, body: appTerm.body(refusedCallback), field: "callbackReference"},
		{name: "serInstanceIds and serNames", k: serAvail, body: fc(`{"serInstanceIds":["s1"],"serNames":["a"]}`), field: "filteringCriteria", golden: "exclusive_criteria"},
		{name: "serNames and serCategories", k: serAvail, body: fc(`{"serNames":["a"],"serCategories":[{"id":"rni"}]}`), field: "filteringCriteria"},
		{name: "all three", k: serAvail, body: fc(`{"serInstanceIds":["s1"],"serNames":["a"],"serCategories":[{"id":"rni"}]}`), field: "filteringCriteria"},
		{name: "unknown state", k: serAvail, body: fc(`{"states":["UP"]}`), field: "filteringCriteria.states[0]"},
		{name: "second state unknown", k: serAvail, body: fc(`{"states":["ACTIVE","active"]}`), field: "filteringCriteria.states[1]"},
		{name: "category without id", k: serAvail, body: fc(`{"serCategories":[{"id":"rni"},{"name":"RNI"}]}`), field: "filteringCriteria.serCategories[1].id"},
		{name: "category name too long", k: serAvail, body: fc(`{"serCategories":[{"id":"rni","name":"` + long + `"}]}`), field: "filteringCriteria.serCategories[0].name"},
		{name: "category id too long", k: serAvail, body: fc(`{"serCategories":[{"id":"` + long + `"}]}`), field: "filteringCriteria.serCategories[0].id"},
		{name: "too many serNames", k: serAvail, body: fc(`{"serNames":[` + names(subscriptions.MaxFilterEntries+1) + `]}`), field: "filteringCriteria.serNames"},
		{name: "too many serInstanceIds", k: serAvail, body: fc(`{"serInstanceIds":[` + names(subscriptions.MaxFilterEntries+1) + `]}`), field: "filteringCriteria.serInstanceIds"},
		{name: "too many serCategories", k: serAvail, body: fc(`{"serCategories":[` + repeat(`{"id":"c"}`, subscriptions.MaxFilterEntries+1) + `]}`), field: "filteringCriteria.serCategories"},
		{name: "too many states", k: serAvail, body: fc(`{"states":[` + repeat(`"ACTIVE"`, subscriptions.MaxFilterEntries+1) + `]}`), field: "filteringCriteria.states"},
		{name: "empty serName", k: serAvail, body: fc(`{"serNames":["a",""]}`), field: "filteringCriteria.serNames[1]"},
		{name: "serName too long", k: serAvail, body: fc(`{"serNames":["` + long + `"]}`), field: "filteringCriteria.serNames[0]"},
		{name: "serInstanceId too long", k: serAvail, body: fc(`{"serInstanceIds":["` + long + `"]}`), field: "filteringCriteria.serInstanceIds[0]"},
		{name: "criteria not an object", k: serAvail, body: fc(`["svc-a"]`), field: "filteringCriteria"},
		{name: "isLocal not a boolean", k: serAvail, body: fc(`{"isLocal":"yes"}`), field: "filteringCriteria.isLocal"},
		{name: "serNames not an array", k: serAvail, body: fc(`{"serNames":"svc-a"}`), field: "filteringCriteria.serNames"},
		{name: "another app's appInstanceId", k: appTerm, body: `{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"http://10.0.0.5/cb","appInstanceId":"app-b"}`, field: "appInstanceId"},
		{name: "termination callbackReference missing", k: appTerm, body: `{"subscriptionType":"AppTerminationNotificationSubscription","appInstanceId":"app-a"}`, field: "callbackReference"},
		{name: "wrapped, wrong type", k: appTerm, body: `{"AppTerminationNotificationSubscription":` + serAvail.body("http://10.0.0.5/cb") + `}`, field: "subscriptionType"},
		{name: "body over 64 KiB", k: serAvail, body: serAvail.body("http://10.0.0.5/" + strings.Repeat("x", subscriptions.MaxBody)), status: http.StatusRequestEntityTooLarge, golden: "too_large"},
	}
	before := e.snapshot(t)
	lists := map[kind][]string{}
	for _, k := range kinds {
		lists[k] = e.ids(t, k, "app-a")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status := tc.status
			if status == 0 {
				status = http.StatusBadRequest
			}
			path := tc.k.list("app-a")
			rec := e.do(t, "POST", path, "app-a", tc.body)
			problemtest.Want(t, rec, path, status, tc.field)
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
			if rec.Header().Get("Location") != "" {
				t.Errorf("refused request answered with Location %q", rec.Header().Get("Location"))
			}
			for _, k := range kinds {
				if got := e.ids(t, k, "app-a"); !slices.Equal(got, lists[k]) {
					t.Errorf("%s list = %v after a refused request, want %v", k.name, got, lists[k])
				}
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("refused request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// fakeResolver answers every lookup with addrs, or with err.
type fakeResolver struct {
	addrs []netip.Addr
	err   error
}

func (f fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f.addrs, f.err
}

// TestCallbackPolicy runs the real callback policy, with the allow list
// local development uses.
func TestCallbackPolicy(t *testing.T) {
	allow, err := callback.ParseAllowList("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opts     callback.Options
		k        kind
		cb       string
		status   int
		field    string
		inDetail string
	}{
		{name: "allowlisted loopback", opts: callback.Options{Allow: allow}, k: serAvail, cb: "http://127.0.0.1:9/cb", status: http.StatusCreated},
		{name: "allowlisted loopback, termination", opts: callback.Options{Allow: allow}, k: appTerm, cb: "http://127.0.0.1:9/cb", status: http.StatusCreated},
		{name: "metadata address", opts: callback.Options{Allow: allow}, k: serAvail, cb: "http://169.254.169.254/latest",
			status: http.StatusBadRequest, field: "callbackReference", inDetail: "169.254.169.254 is not a permitted address"},
		{name: "metadata address, termination", opts: callback.Options{Allow: allow}, k: appTerm, cb: "http://169.254.169.254/latest",
			status: http.StatusBadRequest, field: "callbackReference", inDetail: "not a permitted address"},
		{name: "loopback without the allow list", k: serAvail, cb: "http://127.0.0.1:9/cb",
			status: http.StatusBadRequest, field: "callbackReference", inDetail: "127.0.0.1 is not a permitted address"},
		{name: "not http", opts: callback.Options{Allow: allow}, k: serAvail, cb: "ftp://10.0.0.5/cb",
			status: http.StatusBadRequest, field: "callbackReference", inDetail: "http"},
		{name: "name resolving to metadata", opts: callback.Options{Resolver: fakeResolver{addrs: []netip.Addr{netip.MustParseAddr("169.254.169.254")}}},
			k: serAvail, cb: "http://cb.example.test/x", status: http.StatusBadRequest, field: "callbackReference", inDetail: "resolves to an address that is not permitted"},
		{name: "name not found", opts: callback.Options{Resolver: fakeResolver{err: &net.DNSError{Err: "no such host", Name: "cb.example.test", IsNotFound: true}}},
			k: serAvail, cb: "http://cb.example.test/x", status: http.StatusBadRequest, field: "callbackReference", inDetail: "could not be resolved"},
		{name: "lookup timed out", opts: callback.Options{Resolver: fakeResolver{err: &net.DNSError{Err: "i/o timeout", Name: "cb.example.test", IsTimeout: true}}},
			k: serAvail, cb: "http://cb.example.test/x", status: http.StatusServiceUnavailable},
		{name: "private name", opts: callback.Options{Resolver: fakeResolver{addrs: []netip.Addr{netip.MustParseAddr("10.1.2.3")}}},
			k: appTerm, cb: "http://cb.example.test/x", status: http.StatusCreated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy, err := callback.New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, envOptions{callbacks: policy})
			before := e.snapshot(t)
			rec := e.do(t, "POST", tc.k.list("app-a"), "app-a", tc.k.body(tc.cb))
			if tc.status == http.StatusCreated {
				if rec.Code != http.StatusCreated {
					t.Fatalf("status = %d, want 201; body %s", rec.Code, rec.Body)
				}
				if got := e.ids(t, tc.k, "app-a"); len(got) != 1 {
					t.Errorf("list = %v, want the one created", got)
				}
				return
			}
			d := problemtest.Want(t, rec, tc.k.list("app-a"), tc.status, tc.field)
			if !strings.Contains(d.Detail, tc.inDetail) {
				t.Errorf("detail = %q, want it to contain %q", d.Detail, tc.inDetail)
			}
			if tc.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("refused callback changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestOtherApp: an app reaches neither another app's collection nor another
// app's subscription through its own path, and learns nothing about it.
func TestOtherApp(t *testing.T) {
	e := newEnv(t, envOptions{})
	theirs := map[kind]string{}
	for _, k := range kinds {
		theirs[k] = e.create(t, k, "app-b", k.body("http://10.0.0.6/secret-callback"))
	}
	before := e.snapshot(t)
	type request struct {
		name, method, path, body, golden string
	}
	var tests []request
	for _, k := range kinds {
		golden := ""
		if k == serAvail {
			golden = "not_yours"
		}
		tests = append(tests,
			request{name: k.name + ": list of app-b", method: "GET", path: k.list("app-b")},
			request{name: k.name + ": POST for app-b", method: "POST", path: k.list("app-b"), body: k.body("http://10.0.0.5/cb")},
			request{name: k.name + ": GET under app-b's path", method: "GET", path: k.one("app-b", theirs[k])},
			request{name: k.name + ": DELETE under app-b's path", method: "DELETE", path: k.one("app-b", theirs[k])},
			request{name: k.name + ": GET app-b's id under app-a's path", method: "GET", path: k.one("app-a", theirs[k]), golden: golden},
			request{name: k.name + ": DELETE app-b's id under app-a's path", method: "DELETE", path: k.one("app-a", theirs[k])},
			// Another app's subscription of the other kind: still 403, so the
			// answer does not tell which kind it is.
			request{name: k.name + ": GET app-b's other-kind id", method: "GET", path: k.one("app-a", theirs[k.other()])},
			request{name: k.name + ": DELETE app-b's other-kind id", method: "DELETE", path: k.one("app-a", theirs[k.other()])},
		)
	}
	tests[0].golden = "forbidden"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
			problemtest.Want(t, rec, tc.path, http.StatusForbidden, "")
			if tc.golden != "" {
				// The instance is the path, with app-b's random id in it.
				problemtest.Golden(t, tc.golden, []byte(strings.ReplaceAll(rec.Body.String(), theirs[serAvail], "ID")))
			}
			if strings.Contains(rec.Body.String(), "secret-callback") ||
				strings.Contains(tc.path, "/app-a/") && strings.Contains(rec.Body.String(), "app-b") {
				t.Errorf("403 reveals the subscription: %s", rec.Body)
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("forbidden request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	for _, k := range kinds {
		if got := e.ids(t, k, "app-b"); !slices.Equal(got, []string{theirs[k]}) {
			t.Errorf("app-b's %s list = %v, want %v", k.name, got, []string{theirs[k]})
		}
	}
}

// TestNotFound: unknown ids, a subscription of the other kind under the
// wrong API, and unknown paths are 404s that change nothing.
func TestNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	mine := map[kind]string{}
	for _, k := range kinds {
		mine[k] = e.create(t, k, "app-a", k.body("http://10.0.0.5/cb"))
	}
	before := e.snapshot(t)
	type request struct{ name, method, path, golden string }
	var tests []request
	for _, k := range kinds {
		tests = append(tests,
			request{name: k.name + ": GET unknown id", method: "GET", path: k.one("app-a", "3f1e7c52-9a4b-4c8e-8d2f-0b6a1e5c9d70")},
			request{name: k.name + ": DELETE unknown id", method: "DELETE", path: k.one("app-a", "nope")},
			request{name: k.name + ": GET the other kind's id", method: "GET", path: k.one("app-a", mine[k.other()])},
			request{name: k.name + ": DELETE the other kind's id", method: "DELETE", path: k.one("app-a", mine[k.other()])},
			request{name: k.name + ": below a subscription", method: "GET", path: k.one("app-a", mine[k]) + "/x"},
		)
	}
	tests[0].golden = "not_found"
	tests = append(tests,
		request{name: "unknown API", method: "GET", path: "/mep/mec_app_support/v1/timing/current_time"},
		request{name: "root", method: "GET", path: "/"},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, "app-a", "")
			problemtest.Want(t, rec, tc.path, http.StatusNotFound, "")
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestAuthAndMethods(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create(t, serAvail, "app-a", serAvail.body("http://10.0.0.5/cb"))
	tests := []struct {
		name, method, path, app string
		status                  int
		allow                   string
		golden                  string
	}{
		{name: "list without Authorization", method: "GET", path: serAvail.list("app-a"), status: http.StatusUnauthorized, golden: "unauthorized"},
		{name: "POST without Authorization", method: "POST", path: appTerm.list("app-a"), status: http.StatusUnauthorized},
		{name: "GET without Authorization", method: "GET", path: serAvail.one("app-a", id), status: http.StatusUnauthorized},
		{name: "DELETE without Authorization", method: "DELETE", path: serAvail.one("app-a", id), status: http.StatusUnauthorized},
		{name: "PUT a collection", method: "PUT", path: serAvail.list("app-a"), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET, POST", golden: "method_not_allowed"},
		{name: "DELETE a collection", method: "DELETE", path: appTerm.list("app-a"), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET, POST"},
		{name: "PUT a subscription", method: "PUT", path: serAvail.one("app-a", id), app: "app-a", status: http.StatusMethodNotAllowed, allow: "DELETE, GET"},
		{name: "PATCH a subscription", method: "PATCH", path: appTerm.one("app-a", id), app: "app-a", status: http.StatusMethodNotAllowed, allow: "DELETE, GET"},
		{name: "POST a subscription", method: "POST", path: serAvail.one("app-a", id), app: "app-a", status: http.StatusMethodNotAllowed, allow: "DELETE, GET"},
		{name: "wrong method without Authorization", method: "PUT", path: serAvail.list("app-b"), status: http.StatusMethodNotAllowed, allow: "GET, POST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, tc.app, "")
			problemtest.Want(t, rec, tc.path, tc.status, "")
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without a WWW-Authenticate challenge")
			}
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
		})
	}
	if got := e.ids(t, serAvail, "app-a"); !slices.Equal(got, []string{id}) {
		t.Errorf("list = %v, want %v", got, []string{id})
	}
}

// TestStoreUnavailable stops Redis under the handler: every call answers
// 503 with Retry-After.
func TestStoreUnavailable(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	e := newEnv(t, envOptions{redis: r})
	ids := map[kind]string{}
	for _, k := range kinds {
		ids[k] = e.create(t, k, "app-a", k.body("http://10.0.0.5/cb"))
	}
	r.Stop()
	for _, k := range kinds {
		tests := []struct{ name, method, path, body, golden string }{
			{name: "list", method: "GET", path: k.list("app-a"), golden: "unavailable"},
			{name: "create", method: "POST", path: k.list("app-a"), body: k.body("http://10.0.0.5/new")},
			{name: "get", method: "GET", path: k.one("app-a", ids[k])},
			{name: "delete", method: "DELETE", path: k.one("app-a", ids[k])},
		}
		for _, tc := range tests {
			t.Run(k.name+": "+tc.name, func(t *testing.T) {
				rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
				problemtest.Want(t, rec, tc.path, http.StatusServiceUnavailable, "")
				if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
					t.Errorf("Retry-After = %q", ra)
				}
				if tc.golden != "" && k == serAvail {
					problemtest.Golden(t, tc.golden, rec.Body.Bytes())
				}
			})
		}
	}
}

// TestSelection: what the handler stores is found by the store's selection
// index for exactly the services its filter names.
func TestSelection(t *testing.T) {
	e := newEnv(t, envOptions{})
	sub := func(criteria string) string {
		return e.create(t, serAvail, "app-a", `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.5/cb","filteringCriteria":`+criteria+`}`)
	}
	byName := sub(`{"serNames":["svc-a"]}`)
	mepAgent := e.create(t, serAvail, "app-a", edgeGalleryBody) // serNames svc-a, isLocal false
	anyLocal := sub(`{"isLocal":true}`)
	inactiveA := sub(`{"serNames":["svc-a"],"states":["INACTIVE"]}`)
	byCategory := sub(`{"serCategories":[{"id":"rni","name":"RNI"}]}`)
	byID := sub(`{"serInstanceIds":["svc-b-1"]}`)
	allB := e.create(t, serAvail, "app-b", `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://10.0.0.6/cb","links":{},"filteringCriteria":{"serInstanceIds":[],"serNames":[],"serCategories":[],"states":[],"isLocal":false}}`)
	term := e.create(t, appTerm, "app-a", appTerm.body("http://10.0.0.5/term"))

	tests := []struct {
		name string
		svc  store.ServiceRecord
		want []string
	}{
		{name: "svc-a active", svc: store.ServiceRecord{ID: "svc-a-1", Name: "svc-a", State: "ACTIVE"},
			want: []string{byName, mepAgent, anyLocal, allB}},
		{name: "svc-a inactive", svc: store.ServiceRecord{ID: "svc-a-1", Name: "svc-a", State: "INACTIVE"},
			want: []string{byName, mepAgent, anyLocal, inactiveA, allB}},
		{name: "another name", svc: store.ServiceRecord{ID: "svc-c-1", Name: "svc-c", State: "ACTIVE"},
			want: []string{anyLocal, allB}},
		{name: "category rni", svc: store.ServiceRecord{ID: "svc-c-1", Name: "svc-c", CategoryID: "rni", State: "ACTIVE"},
			want: []string{anyLocal, byCategory, allB}},
		{name: "by id", svc: store.ServiceRecord{ID: "svc-b-1", Name: "svc-b", State: "SUSPENDED"},
			want: []string{anyLocal, byID, allB}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.st.MatchServiceSubscriptions(context.Background(), tc.svc)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID)
			}
			slices.Sort(ids)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(ids, want) {
				t.Errorf("matched %v, want %v", ids, want)
			}
		})
	}
	ts, err := e.st.TerminationSubscriptions(context.Background(), "app-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].ID != term {
		t.Errorf("termination subscriptions = %+v, want %s", ts, term)
	}
}

func TestRoutes(t *testing.T) {
	want := []string{
		"/mep/mec_service_mgmt/v1/applications/{appInstanceId}/subscriptions",
		"/mep/mec_service_mgmt/v1/applications/{appInstanceId}/subscriptions/{subscriptionId}",
		"/mep/mec_app_support/v1/applications/{appInstanceId}/subscriptions",
		"/mep/mec_app_support/v1/applications/{appInstanceId}/subscriptions/{subscriptionId}",
	}
	if got := subscriptions.Routes(); !slices.Equal(got, want) {
		t.Errorf("Routes() = %v, want %v", got, want)
	}
	// Mounted on a shared mux beside another function's catch-all, as the
	// all-in-one runner does, the handler still gets its paths.
	e := newEnv(t, envOptions{})
	mux := http.NewServeMux()
	mux.Handle(subscriptions.ServiceMgmtPath+"/", http.NotFoundHandler())
	for _, p := range subscriptions.Routes() {
		mux.Handle(p, e.h)
	}
	req := httptest.NewRequest("GET", serAvail.list("app-a"), nil)
	req.Header.Set("Authorization", "Bearer app-a")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET through a shared mux = %d %s", rec.Code, rec.Body)
	}
}
