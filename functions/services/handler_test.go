package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/mec"
)

// base is the API root every path below hangs from.
const base = services.BasePath

// srv is the redis-server the tests share; each test has a prefix of its own.
var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

// clock is a settable clock for the store and the handler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// The two read paths: straight from Redis, and through a fresh cache.
const (
	modeStore = "store"
	modeCache = "cache"
)

var modes = []string{modeStore, modeCache}

// env is one handler over its own store prefix.
type env struct {
	h     http.Handler
	st    *store.Store
	cache *store.ServiceCache
	clock *clock
}

type envOptions struct {
	// redis is the server; nil: the shared one.
	redis *testenv.Redis
	// maxStaleness of the cache; zero: the cache's default.
	maxStaleness time.Duration
	// minLiveness is Deps.MinLivenessInterval.
	minLiveness time.Duration
}

func newEnv(t *testing.T, mode string, o envOptions) *env {
	t.Helper()
	r := o.redis
	if r == nil {
		r = srv
	}
	clk := &clock{t: time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)}
	st := r.Store(t, store.Options{Now: clk.Now})
	e := &env{st: st, clock: clk}
	if mode == modeCache {
		e.cache = services.NewCache(st, store.CacheOptions{MaxStaleness: o.maxStaleness})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = e.cache.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		waitUntil(t, "the cache is fresh", e.cache.Fresh)
	}
	e.h = services.New(services.Deps{Store: st, Cache: e.cache, Authenticate: resttest.Authenticate,
		Log: slog.New(slog.DiscardHandler), MinLivenessInterval: o.minLiveness, Now: clk.Now})
	return e
}

// waitUntil polls cond; it fails the test only if cond never holds within
// a bound far beyond anything the code under test should need.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sync makes the cache, when there is one, hold every change made so far,
// so what the tests read does not depend on how fast it follows.
func (e *env) sync(t *testing.T) {
	t.Helper()
	if e.cache == nil {
		return
	}
	last, err := e.st.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !e.cache.WaitFor(context.Background(), last, 20*time.Second) {
		t.Fatalf("cache did not reach %s", last)
	}
	waitUntil(t, "the cache is fresh", e.cache.Fresh)
}

// do sends one request as app ("" sends no Authorization).
func (e *env) do(t *testing.T, method, path, app, body string, header ...string) *httptest.ResponseRecorder {
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
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func servicesPath(app string) string { return base + "/applications/" + app + "/services" }

func servicePath(app, id string) string { return servicesPath(app) + "/" + id }

func livenessPath(app, id string) string { return servicePath(app, id) + "/liveness" }

// info is a valid ServiceInfo body named name, changed by opts.
func info(name string, opts ...func(*mec.ServiceInfo)) string {
	si := mec.ServiceInfo{
		SerName:    name,
		Version:    "1.0.0",
		State:      "ACTIVE",
		Serializer: "JSON",
		TransportInfo: &mec.TransportInfo{ID: "t1", Name: "REST", Type: "REST_HTTP", Protocol: "HTTP", Version: "2.0",
			Endpoint: &mec.EndPointInfo{Addresses: []mec.Address{{Host: "10.0.0.1", Port: 30005}}}},
	}
	for _, o := range opts {
		o(&si)
	}
	b, err := json.Marshal(si)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func category(id string) func(*mec.ServiceInfo) {
	return func(si *mec.ServiceInfo) { si.SerCategory = &mec.CategoryRef{ID: id, Name: id} }
}

func liveness(s int) func(*mec.ServiceInfo) {
	return func(si *mec.ServiceInfo) { si.LivenessInterval = s }
}

func remote(scope string) func(*mec.ServiceInfo) {
	return func(si *mec.ServiceInfo) { f := false; si.ConsumedLocalOnly = &f; si.ScopeOfLocality = scope }
}

// register POSTs body as app and returns the new serInstanceId.
func (e *env) register(t *testing.T, app, body string) string {
	t.Helper()
	rec := e.do(t, "POST", servicesPath(app), app, body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	si := decode[mec.ServiceInfo](t, rec)
	e.sync(t)
	return si.SerInstanceID
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	return v
}

// snapshot is every service in the store, for "nothing changed" checks.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	recs, err := e.st.AllServices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(recs, func(a, b store.ServiceRecord) int { return strings.Compare(a.ID, b.ID) })
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %s %s %d %d %d %s\n", r.ID, r.AppInstanceID, r.Name, r.State, r.Rev,
			r.LivenessInterval, r.LastHeartbeat.UnixMilli(), r.Info)
	}
	return b.String()
}

// edgeGalleryPayload is a ServiceInfo as EdgeGallery's mep-agent sends it.
const edgeGalleryPayload = `{"serName":"ExampleService10","serCategory":{"href":"/example/catalogue1","id":"57d7a5e4","name":"RNI","version":"1.0.2"},"version":"1.0.1","state":"ACTIVE","transportId":"6aca7ffe","transportInfo":{"id":"6aca7ffe","name":"REST","description":"REST API","type":"REST_HTTP","protocol":"HTTP","version":"2.0","endpoint":{"addresses":[{"host":"10.0.0.1","port":30005}]},"security":{"oAuth2Info":{"grantTypes":["OAUTH2_CLIENT_CREDENTIALS"],"tokenEndpoint":"/mecSerMgmtApi/security/TokenEndPoint"}},"implSpecificInfo":{}},"serializer":"JSON","scopeOfLocality":"MEC_SYSTEM","consumedLocalOnly":false,"isLocal":true,"livenessInterval":10,"_links":{"self":{"liveness":""}}}`

func TestRegister(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{minLiveness: 5 * time.Second})
			tests := []struct {
				name         string
				body         string
				wantLiveness int
			}{
				{"edgegallery payload with liveness", edgeGalleryPayload, 10},
				{"no liveness", info("plain"), 0},
				{"liveness raised to the minimum", info("fast", liveness(1)), 5},
				{"wrapped body", `{"ServiceInfo":` + info("wrapped") + `}`, 0},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					rec := e.do(t, "POST", servicesPath("app-a"), "app-a", tc.body)
					if rec.Code != http.StatusCreated {
						t.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
					si := decode[mec.ServiceInfo](t, rec)
					id := si.SerInstanceID
					if id == "" {
						t.Fatalf("no serInstanceId in %s", rec.Body)
					}
					if got, want := rec.Header().Get("Location"), "http://example.com"+servicePath("app-a", id); got != want {
						t.Errorf("Location = %q, want %q", got, want)
					}
					if got := rec.Header().Get("ETag"); got != `"1"` {
						t.Errorf("ETag = %q, want \"1\"", got)
					}
					if si.State != "ACTIVE" || si.IsLocal == nil || !*si.IsLocal || si.LivenessInterval != tc.wantLiveness {
						t.Errorf("state %q isLocal %v livenessInterval %d: %s", si.State, si.IsLocal, si.LivenessInterval, rec.Body)
					}
					if si.TransportID != "" || si.TransportInfo == nil {
						t.Errorf("want transportInfo and no transportId: %s", rec.Body)
					}
					l := si.Links
					if l == nil || l.Self.Href != servicePath("app-a", id) {
						t.Fatalf("_links = %+v, want self.href %s", l, servicePath("app-a", id))
					}
					if tc.wantLiveness > 0 {
						lp := livenessPath("app-a", id)
						if l.Self.Liveness != lp || l.Liveness == nil || l.Liveness.Href != lp {
							t.Errorf("_links = %s, want self.liveness and liveness.href %s", js(l), lp)
						}
					} else if l.Self.Liveness != "" || l.Liveness != nil {
						t.Errorf("_links = %s: liveness links without liveness", js(l))
					}
					e.sync(t)

					// The resource is where Location says, with the same body.
					get := e.do(t, "GET", servicePath("app-a", id), "app-a", "")
					if get.Code != http.StatusOK || get.Header().Get("ETag") != `"1"` {
						t.Fatalf("GET: %d ETag %q %s", get.Code, get.Header().Get("ETag"), get.Body)
					}
					if !jsonEqual(get.Body.Bytes(), rec.Body.Bytes()) {
						t.Errorf("GET body %s\nPOST body %s", get.Body, rec.Body)
					}
				})
			}
		})
	}
}

func TestRegisterPlatformTransport(t *testing.T) {
	e := newEnv(t, modeStore, envOptions{})
	rec := e.do(t, "GET", base+"/transports", "app-a", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /transports: %d %s", rec.Code, rec.Body)
	}
	ts := decode[[]mec.TransportInfo](t, rec)
	if len(ts) != 1 || ts[0].ID != services.PlatformTransportID || ts[0].Type != "REST_HTTP" ||
		ts[0].Security == nil || ts[0].Security.OAuth2Info == nil || ts[0].Security.OAuth2Info.TokenEndpoint == "" {
		t.Fatalf("transports = %s", rec.Body)
	}

	body := info("by-id", func(si *mec.ServiceInfo) { si.TransportInfo = nil; si.TransportID = services.PlatformTransportID })
	rec = e.do(t, "POST", servicesPath("app-a"), "app-a", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST with transportId: %d %s", rec.Code, rec.Body)
	}
	si := decode[mec.ServiceInfo](t, rec)
	if si.TransportInfo == nil || !reflect.DeepEqual(*si.TransportInfo, ts[0]) {
		t.Errorf("transportInfo = %s, want the platform's %s", js(si.TransportInfo), js(ts[0]))
	}

	body = info("by-bad-id", func(si *mec.ServiceInfo) { si.TransportInfo = nil; si.TransportID = "nope" })
	problemtest.Want(t, e.do(t, "POST", servicesPath("app-a"), "app-a", body), servicesPath("app-a"), http.StatusBadRequest, "transportId")
}

func TestDiscovery(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			ids := map[string]string{
				"rni-a": e.register(t, "app-a", info("rni", category("cat-rni"))),
				"loc-a": e.register(t, "app-a", info("loc", category("cat-loc"), remote("MEC_SYSTEM"))),
				"rni-b": e.register(t, "app-b", info("rni", category("cat-rni"), remote("ZONE"))),
				"wai-b": e.register(t, "app-b", info("wai", func(si *mec.ServiceInfo) { si.State = "INACTIVE" })),
			}
			tests := []struct {
				name  string
				path  string
				want  []string // service keys; nil with field set: a 400
				field string
				// caller is the app asking; "": app-c, which has no services.
				caller string
				// forbidden: a 403.
				forbidden bool
			}{
				{name: "all", path: "/services", want: []string{"rni-a", "loc-a", "rni-b", "wai-b"}},
				{name: "by name", path: "/services?ser_name=rni", want: []string{"rni-a", "rni-b"}},
				{name: "by names repeated", path: "/services?ser_name=rni&ser_name=wai", want: []string{"rni-a", "rni-b", "wai-b"}},
				{name: "by names comma-separated", path: "/services?ser_name=rni,wai", want: []string{"rni-a", "rni-b", "wai-b"}},
				{name: "by name twice", path: "/services?ser_name=rni&ser_name=rni", want: []string{"rni-a", "rni-b"}},
				{name: "unknown name", path: "/services?ser_name=none", want: []string{}},
				{name: "by instance id", path: "/services?ser_instance_id={loc-a}", want: []string{"loc-a"}},
				{name: "by instance ids", path: "/services?ser_instance_id={loc-a},{wai-b}&ser_instance_id={loc-a}", want: []string{"loc-a", "wai-b"}},
				{name: "unknown instance id", path: "/services?ser_instance_id=nope", want: []string{}},
				{name: "by category", path: "/services?ser_category_id=cat-rni", want: []string{"rni-a", "rni-b"}},
				{name: "is_local=true", path: "/services?is_local=true", want: []string{"rni-a", "loc-a", "rni-b", "wai-b"}},
				{name: "is_local=false", path: "/services?is_local=false", want: []string{}},
				{name: "consumed_local_only=true", path: "/services?consumed_local_only=true", want: []string{"rni-a", "loc-a", "rni-b", "wai-b"}},
				{name: "consumed_local_only=false", path: "/services?consumed_local_only=false", want: []string{"loc-a", "rni-b"}},
				{name: "scope MEC_HOST is the default", path: "/services?scope_of_locality=MEC_HOST", want: []string{"rni-a", "wai-b"}},
				{name: "scope ZONE", path: "/services?scope_of_locality=ZONE", want: []string{"rni-b"}},
				{name: "scope and remote", path: "/services?scope_of_locality=MEC_SYSTEM&consumed_local_only=false", want: []string{"loc-a"}},
				{name: "name and locality", path: "/services?ser_name=rni&consumed_local_only=false", want: []string{"rni-b"}},
				{name: "one app's services", path: "/applications/app-b/services", caller: "app-b", want: []string{"rni-b", "wai-b"}},
				{name: "one app's services by name", path: "/applications/app-b/services?ser_name=rni", caller: "app-b", want: []string{"rni-b"}},
				{name: "one app's services by another app's id", path: "/applications/app-b/services?ser_instance_id={rni-a}", caller: "app-b", want: []string{}},
				{name: "app without services", path: "/applications/app-c/services", want: []string{}},
				{name: "another app's services", path: "/applications/app-b/services", forbidden: true},
				{name: "another app's services by name", path: "/applications/app-b/services?ser_name=rni", forbidden: true},
				{name: "another app's services with a bad query", path: "/applications/app-b/services?ser_names=rni", forbidden: true},

				{name: "name and instance id", path: "/services?ser_name=rni&ser_instance_id={rni-a}", field: "ser_instance_id"},
				{name: "name and category", path: "/services?ser_name=rni&ser_category_id=cat-rni", field: "ser_instance_id"},
				{name: "unknown parameter", path: "/services?ser_names=rni", field: "ser_names"},
				{name: "unknown parameter beside a known one", path: "/services?ser_name=rni&limit=1", field: "limit"},
				{name: "empty name", path: "/services?ser_name=", field: "ser_name"},
				{name: "empty names", path: "/services?ser_name=,,", field: "ser_name"},
				{name: "is_local not a boolean", path: "/services?is_local=maybe", field: "is_local"},
				{name: "is_local twice", path: "/services?is_local=true&is_local=false", field: "is_local"},
				{name: "consumed_local_only not a boolean", path: "/services?consumed_local_only=yes", field: "consumed_local_only"},
				{name: "unknown scope", path: "/services?scope_of_locality=WORLD", field: "scope_of_locality"},
				{name: "malformed query", path: "/services?ser_name=%zz", field: "query"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					path := base + tc.path
					for k, id := range ids {
						path = strings.ReplaceAll(path, "{"+k+"}", id)
					}
					caller := tc.caller
					if caller == "" {
						caller = "app-c"
					}
					rec := e.do(t, "GET", path, caller, "")
					if tc.forbidden {
						d := problemtest.Want(t, rec, path, http.StatusForbidden, "")
						if !strings.Contains(d.Detail, `"app-b"`) {
							t.Errorf("detail %q does not name the appInstanceId", d.Detail)
						}
						return
					}
					if tc.field != "" {
						problemtest.Want(t, rec, path, http.StatusBadRequest, tc.field)
						return
					}
					if rec.Code != http.StatusOK {
						t.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
					list := decode[[]mec.ServiceInfo](t, rec)
					var got, want []string
					for _, si := range list {
						got = append(got, si.SerInstanceID)
					}
					for _, k := range tc.want {
						want = append(want, ids[k])
					}
					slices.Sort(want)
					if !slices.IsSorted(got) {
						t.Errorf("services not ordered by serInstanceId: %v", got)
					}
					if !slices.Equal(got, want) {
						t.Errorf("got %v, want %v (%v)", names(ids, got), tc.want, rec.Body)
					}
				})
			}

			// The state is the record's, also in discovery.
			rec := e.do(t, "GET", base+"/services?ser_name=wai", "app-a", "")
			if l := decode[[]mec.ServiceInfo](t, rec); len(l) != 1 || l[0].State != "INACTIVE" {
				t.Errorf("wai: %s", rec.Body)
			}
		})
	}
}

func names(ids map[string]string, got []string) []string {
	var out []string
	for _, g := range got {
		name := g
		for k, id := range ids {
			if id == g {
				name = k
			}
		}
		out = append(out, name)
	}
	return out
}

func TestGetService(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			id := e.register(t, "app-a", info("rni"))
			tests := []struct {
				name, path, app string
				status          int
			}{
				{"any app reads it", base + "/services/" + id, "app-b", http.StatusOK},
				{"owner reads it under its app", servicePath("app-a", id), "app-a", http.StatusOK},
				{"unknown service", base + "/services/nope", "app-a", http.StatusNotFound},
				{"unknown service under an app", servicePath("app-a", "nope"), "app-a", http.StatusNotFound},
				{"under another app", servicePath("app-b", id), "app-b", http.StatusNotFound},
				{"unknown path", base + "/nothing/here", "app-a", http.StatusNotFound},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					rec := e.do(t, "GET", tc.path, tc.app, "")
					if tc.status != http.StatusOK {
						problemtest.Want(t, rec, tc.path, tc.status, "")
						return
					}
					if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"1"` {
						t.Fatalf("%d ETag %q: %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
					}
					if si := decode[mec.ServiceInfo](t, rec); si.SerInstanceID != id || si.SerName != "rni" || si.State != "ACTIVE" {
						t.Errorf("body %s", rec.Body)
					}
				})
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			id := e.register(t, "app-a", info("rni", category("cat-1")))
			other := e.register(t, "app-b", info("other"))
			self := servicePath("app-a", id)

			put := func(t *testing.T, path, app, body string, header ...string) *httptest.ResponseRecorder {
				t.Helper()
				rec := e.do(t, "PUT", path, app, body, header...)
				e.sync(t)
				return rec
			}
			get := func(t *testing.T) (mec.ServiceInfo, string) {
				t.Helper()
				rec := e.do(t, "GET", self, "app-a", "")
				if rec.Code != http.StatusOK {
					t.Fatalf("GET: %d %s", rec.Code, rec.Body)
				}
				return decode[mec.ServiceInfo](t, rec), rec.Header().Get("ETag")
			}

			// A conditional PUT with the current ETag replaces the service.
			rec := put(t, self, "app-a", info("rni", category("cat-2"), func(si *mec.ServiceInfo) { si.Version = "2.0.0" }), "If-Match", `"1"`)
			if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"2"` {
				t.Fatalf("PUT: %d ETag %q %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
			}
			if si := decode[mec.ServiceInfo](t, rec); si.Version != "2.0.0" || si.SerInstanceID != id || si.SerCategory.ID != "cat-2" {
				t.Errorf("PUT body %s", rec.Body)
			}
			if si, tag := get(t); si.Version != "2.0.0" || tag != `"2"` {
				t.Errorf("after PUT: version %q ETag %q", si.Version, tag)
			}
			// The indexes follow the change.
			if l := decode[[]mec.ServiceInfo](t, e.do(t, "GET", base+"/services?ser_category_id=cat-2", "app-a", "")); len(l) != 1 || l[0].SerInstanceID != id {
				t.Errorf("by new category: %+v", l)
			}
			if l := decode[[]mec.ServiceInfo](t, e.do(t, "GET", base+"/services?ser_category_id=cat-1", "app-a", "")); len(l) != 0 {
				t.Errorf("by old category: %+v", l)
			}

			refused := []struct {
				name, path, app, body string
				header                []string
				status                int
				field                 string
			}{
				{name: "stale If-Match", path: self, app: "app-a", body: info("rni", func(si *mec.ServiceInfo) { si.Version = "3" }),
					header: []string{"If-Match", `"1"`}, status: http.StatusPreconditionFailed},
				{name: "weak stale If-Match", path: self, app: "app-a", body: info("rni"), header: []string{"If-Match", `W/"1"`}, status: http.StatusPreconditionFailed},
				{name: "If-Match of no revision", path: self, app: "app-a", body: info("rni"), header: []string{"If-Match", `"abc"`}, status: http.StatusPreconditionFailed},
				{name: "another app's appInstanceId", path: servicePath("app-b", other), app: "app-a", body: info("mine"), status: http.StatusForbidden},
				{name: "another app's service under the caller's app", path: servicePath("app-a", other), app: "app-a", body: info("mine"), status: http.StatusNotFound},
				{name: "unknown service", path: servicePath("app-a", "nope"), app: "app-a", body: info("x"), status: http.StatusNotFound},
				{name: "serInstanceId of another service", path: self, app: "app-a",
					body: info("rni", func(si *mec.ServiceInfo) { si.SerInstanceID = other }), status: http.StatusBadRequest, field: "serInstanceId"},
				{name: "bad body", path: self, app: "app-a", body: info("rni", func(si *mec.ServiceInfo) { si.State = "GONE" }), status: http.StatusBadRequest, field: "state"},
				{name: "no Authorization", path: self, body: info("rni"), status: http.StatusUnauthorized},
			}
			for _, tc := range refused {
				t.Run(tc.name, func(t *testing.T) {
					before := e.snapshot(t)
					problemtest.Want(t, put(t, tc.path, tc.app, tc.body, tc.header...), tc.path, tc.status, tc.field)
					if after := e.snapshot(t); after != before {
						t.Errorf("refused PUT changed the store:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
			if si, tag := get(t); si.Version != "2.0.0" || tag != `"2"` {
				t.Errorf("after refused PUTs: version %q ETag %q", si.Version, tag)
			}

			// Unconditional, "*" and a matching weak tag all apply; the state
			// of the body is the record's new state.
			for i, h := range [][]string{nil, {"If-Match", "*"}, {"If-Match", `W/"4"`}} {
				rec := put(t, self, "app-a", info("rni", func(si *mec.ServiceInfo) { si.State = "INACTIVE"; si.Version = fmt.Sprint(10 + i) }), h...)
				if want := fmt.Sprintf(`"%d"`, 3+i); rec.Code != http.StatusOK || rec.Header().Get("ETag") != want {
					t.Fatalf("PUT %v: %d ETag %q, want %s; %s", h, rec.Code, rec.Header().Get("ETag"), want, rec.Body)
				}
			}
			if si, tag := get(t); si.State != "INACTIVE" || si.Version != "12" || tag != `"5"` {
				t.Errorf("after PUTs: state %q version %q ETag %q", si.State, si.Version, tag)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			id := e.register(t, "app-a", info("rni"))
			other := e.register(t, "app-b", info("other"))
			self := servicePath("app-a", id)

			refused := []struct {
				name, path string
				status     int
			}{
				{"another app's appInstanceId", servicePath("app-b", other), http.StatusForbidden},
				{"another app's service under the caller's app", servicePath("app-a", other), http.StatusNotFound},
				{"unknown service", servicePath("app-a", "nope"), http.StatusNotFound},
			}
			for _, tc := range refused {
				t.Run(tc.name, func(t *testing.T) {
					before := e.snapshot(t)
					problemtest.Want(t, e.do(t, "DELETE", tc.path, "app-a", ""), tc.path, tc.status, "")
					if after := e.snapshot(t); after != before {
						t.Errorf("refused DELETE changed the store:\nbefore %s\nafter  %s", before, after)
					}
				})
			}

			if rec := e.do(t, "DELETE", self, "app-a", ""); rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
				t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
			}
			e.sync(t)
			problemtest.Want(t, e.do(t, "GET", self, "app-a", ""), self, http.StatusNotFound, "")
			problemtest.Want(t, e.do(t, "GET", base+"/services/"+id, "app-a", ""), base+"/services/"+id, http.StatusNotFound, "")
			problemtest.Want(t, e.do(t, "DELETE", self, "app-a", ""), self, http.StatusNotFound, "")
			if l := decode[[]mec.ServiceInfo](t, e.do(t, "GET", base+"/services", "app-a", "")); len(l) != 1 || l[0].SerInstanceID != other {
				t.Errorf("after DELETE: %+v", l)
			}
		})
	}
}

// TestOtherAppInstance: an app reads and changes nothing under another
// app's appInstanceId, whatever the method: a 403 (issue 13, item 10).
func TestOtherAppInstance(t *testing.T) {
	e := newEnv(t, modeStore, envOptions{})
	id := e.register(t, "app-b", info("theirs", liveness(10)))
	tests := []struct {
		name, method, path, body string
	}{
		{"POST", "POST", servicesPath("app-b"), info("mine")},
		{"PUT", "PUT", servicePath("app-b", id), info("mine")},
		{"DELETE", "DELETE", servicePath("app-b", id), ""},
		{"heartbeat PATCH", "PATCH", livenessPath("app-b", id), `{"state":"ACTIVE"}`},
		{"heartbeat PUT", "PUT", livenessPath("app-b", id), `{"state":"ACTIVE"}`},
		{"GET services", "GET", servicesPath("app-b"), ""},
		{"GET service", "GET", servicePath("app-b", id), ""},
		{"GET unknown service", "GET", servicePath("app-b", "nope"), ""},
		{"GET liveness", "GET", livenessPath("app-b", id), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(t)
			rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
			d := problemtest.Want(t, rec, tc.path, http.StatusForbidden, "")
			if tc.name == "POST" {
				problemtest.Golden(t, "forbidden", rec.Body.Bytes())
			}
			if !strings.Contains(d.Detail, `"app-b"`) {
				t.Errorf("detail %q does not name the appInstanceId", d.Detail)
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode, envOptions{})
			id := e.register(t, "app-a", info("beating", liveness(10)))
			still := e.register(t, "app-a", info("still"))
			lp := livenessPath("app-a", id)
			registered := e.clock.Now()

			readLiveness := func(t *testing.T) mec.ServiceLivenessInfo {
				t.Helper()
				rec := e.do(t, "GET", lp, "app-a", "")
				if rec.Code != http.StatusOK {
					t.Fatalf("GET liveness: %d %s", rec.Code, rec.Body)
				}
				return decode[mec.ServiceLivenessInfo](t, rec)
			}
			stamp := func(tm time.Time) mec.TimeStamp {
				return mec.TimeStamp{Seconds: tm.Unix(), NanoSeconds: int64(tm.Nanosecond())}
			}
			if got, want := readLiveness(t), (mec.ServiceLivenessInfo{State: "ACTIVE", TimeStamp: stamp(registered), Interval: 10}); got != want {
				t.Fatalf("liveness = %+v, want %+v", got, want)
			}

			beats := []struct{ name, method, body string }{
				{"PATCH", "PATCH", `{"state":"ACTIVE"}`},
				{"PUT", "PUT", `{"state":"ACTIVE"}`},
				{"wrapped", "PATCH", `{"ServiceLivenessUpdate":{"state":"ACTIVE"}}`},
			}
			for i, tc := range beats {
				t.Run(tc.name, func(t *testing.T) {
					e.clock.Advance(time.Duration(i+1) * 1500 * time.Millisecond)
					now := e.clock.Now()
					rec := e.do(t, tc.method, lp, "app-a", tc.body)
					if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
						t.Fatalf("heartbeat: %d %s", rec.Code, rec.Body)
					}
					if got := readLiveness(t); got.TimeStamp != stamp(now) || got.State != "ACTIVE" || got.Interval != 10 {
						t.Errorf("liveness = %+v, want timeStamp %+v", got, stamp(now))
					}
					deadline, err := e.st.LivenessDeadline(context.Background(), id)
					if err != nil || !deadline.After(now.Add(10*time.Second)) {
						t.Errorf("deadline %v (%v), want after %v", deadline, err, now.Add(10*time.Second))
					}
				})
			}

			refused := []struct {
				name, method, path, body string
				status                   int
				field                    string
			}{
				{name: "state INACTIVE", method: "PATCH", path: lp, body: `{"state":"INACTIVE"}`, status: http.StatusBadRequest, field: "state"},
				{name: "no state", method: "PATCH", path: lp, body: `{}`, status: http.StatusBadRequest, field: "state"},
				{name: "state not a string", method: "PUT", path: lp, body: `{"state":1}`, status: http.StatusBadRequest, field: "state"},
				{name: "malformed", method: "PATCH", path: lp, body: `{"state":`, status: http.StatusBadRequest, field: "body"},
				{name: "empty body", method: "PATCH", path: lp, body: ``, status: http.StatusBadRequest, field: "body"},
				{name: "service without liveness", method: "PATCH", path: livenessPath("app-a", still), body: `{"state":"ACTIVE"}`, status: http.StatusNotFound},
				{name: "unknown service", method: "PATCH", path: livenessPath("app-a", "nope"), body: `{"state":"ACTIVE"}`, status: http.StatusNotFound},
				{name: "unknown service by PUT", method: "PUT", path: livenessPath("app-a", "nope"), body: `{"state":"ACTIVE"}`, status: http.StatusNotFound},
				{name: "GET liveness of a service without it", method: "GET", path: livenessPath("app-a", still), status: http.StatusNotFound},
				{name: "GET liveness of an unknown service", method: "GET", path: livenessPath("app-a", "nope"), status: http.StatusNotFound},
				{name: "GET liveness under another app", method: "GET", path: livenessPath("app-b", id), status: http.StatusForbidden},
			}
			for _, tc := range refused {
				t.Run(tc.name, func(t *testing.T) {
					e.clock.Advance(time.Second)
					before := e.snapshot(t)
					problemtest.Want(t, e.do(t, tc.method, tc.path, "app-a", tc.body), tc.path, tc.status, tc.field)
					if after := e.snapshot(t); after != before {
						t.Errorf("refused heartbeat changed the store:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, modeStore, envOptions{})
	path := servicesPath("app-a")
	big := `{"serName":"` + strings.Repeat("x", services.MaxBody) + `"}`
	tests := []struct {
		name, body string
		status     int
		field      string
		golden     string
	}{
		{name: "malformed JSON", body: `{"serName":"x",`, status: http.StatusBadRequest, field: "body"},
		{name: "not an object", body: `[1]`, status: http.StatusBadRequest, field: "body"},
		{name: "trailing data", body: info("x") + `}`, status: http.StatusBadRequest, field: "body"},
		{name: "empty body", body: ``, status: http.StatusBadRequest, field: "body"},
		{name: "missing serName", body: `{"version":"1","state":"ACTIVE","serializer":"JSON","transportId":"` + services.PlatformTransportID + `"}`,
			status: http.StatusBadRequest, field: "serName", golden: "missing_ser_name"},
		{name: "serName not findable by ser_name", body: info("a,b"), status: http.StatusBadRequest, field: "serName"},
		{name: "wrong state", body: info("x", func(si *mec.ServiceInfo) { si.State = "UP" }), status: http.StatusBadRequest, field: "state"},
		{name: "wrong serializer", body: info("x", func(si *mec.ServiceInfo) { si.Serializer = "CSV" }), status: http.StatusBadRequest, field: "serializer"},
		{name: "wrong transport type", body: info("x", func(si *mec.ServiceInfo) { si.TransportInfo.Type = "HTTP" }), status: http.StatusBadRequest, field: "transportInfo.type"},
		{name: "wrong grant type", body: info("x", func(si *mec.ServiceInfo) {
			si.TransportInfo.Security = &mec.SecurityInfo{OAuth2Info: &mec.OAuth2Info{GrantTypes: []string{"PASSWORD"}, TokenEndpoint: "/t"}}
		}), status: http.StatusBadRequest, field: "transportInfo.security.oAuth2Info.grantTypes[0]"},
		{name: "port not a number", body: strings.Replace(info("x"), `"port":30005`, `"port":"x"`, 1), status: http.StatusBadRequest, field: "transportInfo.endpoint.addresses.port"},
		{name: "state not a string", body: strings.Replace(info("x"), `"state":"ACTIVE"`, `"state":5`, 1), status: http.StatusBadRequest, field: "state"},
		{name: "body over 64 KiB", body: big, status: http.StatusRequestEntityTooLarge, golden: "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []struct{ method, path string }{{"POST", path}, {"PUT", servicePath("app-a", "some-id")}} {
				rec := e.do(t, p.method, p.path, "app-a", tc.body)
				problemtest.Want(t, rec, p.path, tc.status, tc.field)
				if tc.golden != "" && p.method == "POST" {
					problemtest.Golden(t, tc.golden, rec.Body.Bytes())
				}
			}
			if s := e.snapshot(t); s != "" {
				t.Errorf("refused request stored: %s", s)
			}
		})
	}
}

func TestAuthAndMethods(t *testing.T) {
	e := newEnv(t, modeStore, envOptions{})
	id := e.register(t, "app-a", info("rni", liveness(5)))
	tests := []struct {
		name, method, path, app string
		status                  int
		allow                   string
		golden                  string
	}{
		{name: "discovery without Authorization", method: "GET", path: base + "/services", status: http.StatusUnauthorized, golden: "unauthorized"},
		{name: "POST without Authorization", method: "POST", path: servicesPath("app-a"), status: http.StatusUnauthorized},
		{name: "transports without Authorization", method: "GET", path: base + "/transports", status: http.StatusUnauthorized},
		{name: "heartbeat without Authorization", method: "PATCH", path: livenessPath("app-a", id), status: http.StatusUnauthorized},
		{name: "POST /transports", method: "POST", path: base + "/transports", app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET", golden: "method_not_allowed"},
		{name: "DELETE /services", method: "DELETE", path: base + "/services", app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET"},
		{name: "PUT /services/{id}", method: "PUT", path: base + "/services/" + id, app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET"},
		{name: "DELETE an app's services", method: "DELETE", path: servicesPath("app-a"), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET, POST"},
		{name: "PATCH a service", method: "PATCH", path: servicePath("app-a", id), app: "app-a", status: http.StatusMethodNotAllowed, allow: "DELETE, GET, PUT"},
		{name: "POST liveness", method: "POST", path: livenessPath("app-a", id), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET, PATCH, PUT"},
		{name: "wrong method without Authorization", method: "DELETE", path: base + "/transports", status: http.StatusMethodNotAllowed, allow: "GET"},
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
}

// TestStoreUnavailable stops Redis under the handler: writes and reads
// answer 503 with Retry-After, and a cache that can no longer follow the
// change stream stops answering once MaxStaleness has passed.
func TestStoreUnavailable(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			r := testenv.NewRedis(t, testenv.RedisOptions{})
			e := newEnv(t, mode, envOptions{redis: r, maxStaleness: 200 * time.Millisecond})
			id := e.register(t, "app-a", info("rni", liveness(10)))
			if rec := e.do(t, "GET", base+"/services", "app-a", ""); rec.Code != http.StatusOK {
				t.Fatalf("discovery before the outage: %d %s", rec.Code, rec.Body)
			}

			r.Stop()
			if e.cache != nil {
				waitUntil(t, "the cache goes stale", func() bool { return !e.cache.Fresh() })
			}
			tests := []struct {
				name, method, path, body string
				golden                   string
			}{
				{name: "register", method: "POST", path: servicesPath("app-a"), body: info("new")},
				{name: "discovery", method: "GET", path: base + "/services", golden: "unavailable"},
				{name: "discovery by name", method: "GET", path: base + "/services?ser_name=rni"},
				{name: "one service", method: "GET", path: base + "/services/" + id},
				{name: "update", method: "PUT", path: servicePath("app-a", id), body: info("rni")},
				{name: "delete", method: "DELETE", path: servicePath("app-a", id)},
				{name: "heartbeat", method: "PATCH", path: livenessPath("app-a", id), body: `{"state":"ACTIVE"}`},
				{name: "liveness", method: "GET", path: livenessPath("app-a", id)},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
					problemtest.Want(t, rec, tc.path, http.StatusServiceUnavailable, "")
					if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
						t.Errorf("Retry-After = %q", ra)
					}
					if tc.golden != "" {
						problemtest.Golden(t, tc.golden, rec.Body.Bytes())
					}
				})
			}
		})
	}
}

// TestCacheStaleWhenStreamStalls: Redis stops answering without closing
// the connection (CLIENT PAUSE), so the cache sees no error, only silence.
// Once MaxStaleness has passed the cache no longer answers discovery, and
// the read goes to Redis, which fails: 503, not the cached list forever.
func TestCacheStaleWhenStreamStalls(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	e := newEnv(t, modeCache, envOptions{redis: r, maxStaleness: 200 * time.Millisecond})
	e.register(t, "app-a", info("rni"))
	if l := decode[[]mec.ServiceInfo](t, e.do(t, "GET", base+"/services", "app-a", "")); len(l) != 1 {
		t.Fatalf("discovery before the stall: %+v", l)
	}

	pauser := r.Client(t)
	if err := pauser.Do(context.Background(), "CLIENT", "PAUSE", "60000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	defer r.Stop() // ends the pause and the cache's blocked read before cleanup waits for it
	waitUntil(t, "the cache goes stale", func() bool { return !e.cache.Fresh() })
	rec := e.do(t, "GET", base+"/services", "app-a", "")
	problemtest.Want(t, rec, base+"/services", http.StatusServiceUnavailable, "")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }
