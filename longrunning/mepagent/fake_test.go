package mepagent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/mepagent"
	"github.com/kmep-io/kmep/store/kit/aksk"
)

const (
	fakeApp = "app-1"
	fakeAK  = "AKFAKE"
	fakeSK  = "secret-key-fake"
)

// fakePlatform is a hand-written Mp1 platform: the token endpoint (which
// verifies the AK/SK signature), service registration, liveness, discovery
// and subscriptions of one app instance. The ...Fn hooks, given the
// 1-based count of the calls so far, return a status to answer instead of
// the normal behaviour (0: behave normally).
type fakePlatform struct {
	t *testing.T

	mu          sync.Mutex
	expiresIn   int
	tokenFn     func(n int) int
	registerFn  func(n int) int
	heartbeatFn func(n int) int

	tokenRequests int
	tokensIssued  int
	valid         map[string]bool // tokens the platform accepts
	registers     int
	registered    [][]byte          // bodies of every registration request
	keys          []string          // Idempotency-Key of every registration request
	services      map[string][]byte // id → ServiceInfo answered
	heartbeats    map[string]int
	deleted       []string
	subsCreated   int
	subs          map[string][]byte // id → subscription answered
	nextID        int
	traceparents  []string // the traceparent header of every request
}

func newFakePlatform(t *testing.T) (*fakePlatform, string) {
	f := &fakePlatform{t: t, expiresIn: 3600, valid: map[string]bool{}, services: map[string][]byte{},
		heartbeats: map[string]int{}, subs: map[string][]byte{}}
	mux := http.NewServeMux()
	svc := "/mep/mec_service_mgmt/v1"
	mux.HandleFunc("POST /mep/token", f.token)
	mux.HandleFunc("POST "+svc+"/applications/{app}/services", f.auth(f.register))
	mux.HandleFunc("PATCH "+svc+"/applications/{app}/services/{id}/liveness", f.auth(f.heartbeat))
	mux.HandleFunc("DELETE "+svc+"/applications/{app}/services/{id}", f.auth(f.remove))
	mux.HandleFunc("GET "+svc+"/services", f.auth(f.discover))
	mux.HandleFunc("GET "+svc+"/applications/{app}/subscriptions", f.auth(f.listSubs))
	mux.HandleFunc("POST "+svc+"/applications/{app}/subscriptions", f.auth(f.createSub))
	mux.HandleFunc("GET "+svc+"/applications/{app}/subscriptions/{id}", f.auth(f.getSub))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakePlatform) lock() func() { f.mu.Lock(); return f.mu.Unlock }

func writeProblem(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/problem+json")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "0")
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status":%d,"detail":"fake %d"}`, status, status)
}

func (f *fakePlatform) token(w http.ResponseWriter, r *http.Request) {
	defer f.lock()()
	f.traceparents = append(f.traceparents, r.Header.Get("traceparent"))
	f.tokenRequests++
	if f.tokenFn != nil {
		if st := f.tokenFn(f.tokenRequests); st != 0 {
			writeProblem(w, st)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	a, err := aksk.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil || a.AccessKey != fakeAK || aksk.Verify(r, body, []byte(fakeSK), a) != nil ||
		r.Header.Get("Content-Type") != "application/json" || strings.Join(a.SignedHeaders, ";") != "content-type;host;x-sdk-date" {
		f.t.Errorf("token request not signed as EdgeGallery signs it: %v %+v", err, a)
		writeProblem(w, http.StatusUnauthorized)
		return
	}
	f.tokensIssued++
	tok := fmt.Sprintf("tok-%d", f.tokensIssued)
	f.valid[tok] = true
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d}`, tok, f.expiresIn)
}

// auth checks the bearer token (and the app instance of the path) and
// calls next with the lock held.
func (f *fakePlatform) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer f.lock()()
		f.traceparents = append(f.traceparents, r.Header.Get("traceparent"))
		if !f.valid[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
			writeProblem(w, http.StatusUnauthorized)
			return
		}
		if app := r.PathValue("app"); app != "" && app != fakeApp {
			writeProblem(w, http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// revokeTokens makes the platform refuse every token issued so far.
func (f *fakePlatform) revokeTokens() {
	defer f.lock()()
	f.valid = map[string]bool{}
}

func (f *fakePlatform) register(w http.ResponseWriter, r *http.Request) {
	f.registers++
	body, _ := io.ReadAll(r.Body)
	f.registered = append(f.registered, body)
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	if f.registerFn != nil {
		if st := f.registerFn(f.registers); st != 0 {
			writeProblem(w, st)
			return
		}
	}
	var si map[string]any
	if err := json.Unmarshal(body, &si); err != nil {
		writeProblem(w, http.StatusBadRequest)
		return
	}
	f.nextID++
	id := fmt.Sprintf("svc-%d", f.nextID)
	self := "/mep/mec_service_mgmt/v1/applications/" + fakeApp + "/services/" + id
	si["serInstanceId"] = id
	links := map[string]any{"self": map[string]any{"href": self}}
	if iv, _ := si["livenessInterval"].(float64); iv > 0 {
		links["self"].(map[string]any)["liveness"] = self + "/liveness"
		links["liveness"] = map[string]any{"href": self + "/liveness"}
	}
	si["_links"] = links
	out, _ := json.Marshal(si)
	f.services[id] = out
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "http://"+r.Host+self)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(out)
}

func (f *fakePlatform) heartbeat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, _ := io.ReadAll(r.Body)
	if string(b) != `{"state":"ACTIVE"}` {
		writeProblem(w, http.StatusBadRequest)
		return
	}
	if _, ok := f.services[id]; !ok {
		writeProblem(w, http.StatusNotFound)
		return
	}
	f.heartbeats[id]++
	if f.heartbeatFn != nil {
		if st := f.heartbeatFn(f.heartbeats[id]); st != 0 {
			writeProblem(w, st)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakePlatform) remove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := f.services[id]; !ok {
		writeProblem(w, http.StatusNotFound)
		return
	}
	delete(f.services, id)
	f.deleted = append(f.deleted, id)
	w.WriteHeader(http.StatusNoContent)
}

// lose forgets a service, as a platform that lost its data would.
func (f *fakePlatform) lose(id string) {
	defer f.lock()()
	delete(f.services, id)
}

func (f *fakePlatform) discover(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("ser_name")
	var out []json.RawMessage
	for i := 1; i <= f.nextID; i++ {
		b, ok := f.services[fmt.Sprintf("svc-%d", i)]
		var si struct{ SerName string }
		if ok && json.Unmarshal(b, &si) == nil && si.SerName == name {
			out = append(out, b)
		}
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakePlatform) subPath(id string) string {
	return "/mep/mec_service_mgmt/v1/applications/" + fakeApp + "/subscriptions/" + id
}

func (f *fakePlatform) listSubs(w http.ResponseWriter, r *http.Request) {
	var links []map[string]string
	for id := range f.subs {
		links = append(links, map[string]string{"href": f.subPath(id), "rel": "SerAvailabilityNotificationSubscription"})
	}
	out, _ := json.Marshal(map[string]any{"_links": map[string]any{"self": map[string]string{"href": r.URL.Path}, "subscriptions": links}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// addSub stores a subscription as if the app had created it earlier.
func (f *fakePlatform) addSub(body string) {
	defer f.lock()()
	f.nextID++
	f.subs[fmt.Sprintf("sub-%d", f.nextID)] = []byte(body)
}

func (f *fakePlatform) createSub(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var s map[string]any
	if json.Unmarshal(b, &s) != nil || s["subscriptionType"] != "SerAvailabilityNotificationSubscription" || s["callbackReference"] == "" {
		writeProblem(w, http.StatusBadRequest)
		return
	}
	f.subsCreated++
	f.nextID++
	id := fmt.Sprintf("sub-%d", f.nextID)
	s["_links"] = map[string]any{"self": map[string]string{"href": f.subPath(id)}}
	out, _ := json.Marshal(s)
	f.subs[id] = out
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(out)
}

func (f *fakePlatform) getSub(w http.ResponseWriter, r *http.Request) {
	b, ok := f.subs[r.PathValue("id")]
	if !ok {
		writeProblem(w, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// failFirst is a hook that answers status to the first k calls.
func failFirst(k, status int) func(n int) int {
	return func(n int) int {
		if n <= k {
			return status
		}
		return 0
	}
}

// snapshot runs fn with the lock held.
func (f *fakePlatform) snapshot(fn func(f *fakePlatform)) {
	defer f.lock()()
	fn(f)
}

// running is an Agent started by startAgent.
type running struct {
	api  string // base URL of the agent's API
	logs *testenv.LogBuffer
	stop func() error
}

// startAgent runs an agent on a loopback port with fast backoff; stop
// (also called at cleanup) cancels it and returns what Run returned.
func startAgent(t *testing.T, cfg mepagent.Config) running {
	t.Helper()
	return startAgentWithMetrics(t, cfg, nil)
}

// startAgentWithMetrics is startAgent with the agent's metrics registered
// into reg (nil: none).
func startAgentWithMetrics(t *testing.T, cfg mepagent.Config, reg prometheus.Registerer) running {
	t.Helper()
	return startAgentWithDeps(t, cfg, mepagent.Deps{Metrics: reg})
}

// startAgentWithDeps is startAgent with deps (Log: the running's logs).
func startAgentWithDeps(t *testing.T, cfg mepagent.Config, deps mepagent.Deps) running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	if cfg.AppInstanceID == "" {
		cfg.AppInstanceID = fakeApp
	}
	if cfg.AccessKey == "" {
		cfg.AccessKey, cfg.SecretKey = fakeAK, []byte(fakeSK)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	logs := &testenv.LogBuffer{}
	deps.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := mepagent.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = fmt.Errorf("Run did not return after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	return running{api: "http://" + ln.Addr().String(), logs: logs, stop: stop}
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get answers a GET on the agent's API.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}
