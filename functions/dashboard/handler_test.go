package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/kmep-io/kmep/functions/dashboard"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
)

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

const adminToken = "admin-token-0123456789abcdef"

// sender is a fake broker: it keeps what it was sent and answers err (nil: ACK).
type sender struct {
	mu   sync.Mutex
	sent []cloudevents.Event
	err  error
}

var _ dashboard.Sender = (*sender)(nil)

func (s *sender) Send(_ context.Context, e cloudevents.Event) protocol.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.sent = append(s.sent, e)
	return protocol.ResultACK
}

type env struct {
	h    http.Handler
	st   *store.Store
	sent *sender
	stop chan struct{}
}

// appAuth is a fake app verifier: "Bearer app-jwt-<app>" is app <app>.
func appAuth(r *http.Request) (string, error) {
	app, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer app-jwt-")
	if !ok {
		return "", problem.Unauthorized("invalid token")
	}
	return app, nil
}

func newEnv(t *testing.T, withSender bool) *env {
	t.Helper()
	admin, err := auth.NewAdmin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	st := srv.Store(t, store.Options{})
	e := &env{st: st, sent: &sender{}, stop: make(chan struct{})}
	d := dashboard.Deps{Store: st, Admin: admin, App: appAuth, Stop: e.stop, KeepAlive: 200 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)}
	if withSender {
		d.Sender = e.sent
	}
	e.h = dashboard.New(d)
	t.Cleanup(func() { close(e.stop) })
	return e
}

func (e *env) do(t *testing.T, method, path, bearer string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// deadEvent is a dead-lettered kmep event as the deadletter trigger
// records it (with Knative's error extensions).
func deadEvent(t *testing.T, id string) []byte {
	t.Helper()
	ev := cloudevents.NewEvent()
	ev.SetID(id)
	ev.SetType("dev.kmep.service.changed.v1")
	ev.SetSource("kmep")
	ev.SetExtension("knativeerrorcode", 500)
	ev.SetExtension("knativeerrordest", "http://notify")
	_ = ev.SetData("application/json", map[string]string{"x": "y"})
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"id": id, "type": ev.Type(), "errorCode": 500, "event": json.RawMessage(raw)})
	return b
}

func TestAuth(t *testing.T) {
	e := newEnv(t, true)
	paths := []string{"/apps", "/instances", "/rule_statuses", "/mesh_peers", "/dead_letters", "/dead_letters/1-0", "/events"}
	for _, p := range paths {
		for _, tc := range []struct {
			name, bearer string
			status       int
		}{
			{"no token", "", 401},
			{"garbage token", "not-the-admin-token", 401},
			{"app token", "app-jwt-app-1", 403},
		} {
			t.Run(p+"/"+tc.name, func(t *testing.T) {
				w := e.do(t, "GET", dashboard.BasePath+p, tc.bearer)
				if w.Code != tc.status || w.Header().Get("Content-Type") != "application/problem+json" {
					t.Errorf("GET %s = %d %q %s, want a %d ProblemDetails", p, w.Code, w.Header().Get("Content-Type"), w.Body, tc.status)
				}
				if strings.Contains(w.Body.String(), "[") {
					t.Errorf("refusal carries data: %s", w.Body)
				}
			})
		}
	}
	if w := e.do(t, "POST", dashboard.BasePath+"/dead_letters/1-0/redeliver", "app-jwt-app-1"); w.Code != 403 {
		t.Errorf("redeliver with an app token = %d, want 403", w.Code)
	}
	// The page itself carries no data: the login form, with or without a token.
	w := e.do(t, "GET", "/", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="login"`) || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("GET / = %d %s", w.Code, w.Body)
	}
	for _, f := range []string{"app.js", "style.css"} {
		if w := e.do(t, "GET", dashboard.UIPath+f, ""); w.Code != 200 || w.Body.Len() == 0 {
			t.Errorf("GET %s = %d", f, w.Code)
		}
	}
	if w := e.do(t, "GET", "/elsewhere", ""); w.Code != 404 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /elsewhere = %d %q, want a 404 ProblemDetails", w.Code, w.Header().Get("Content-Type"))
	}
	if w := e.do(t, "DELETE", dashboard.BasePath+"/apps", adminToken); w.Code != 405 {
		t.Errorf("DELETE apps = %d, want 405", w.Code)
	}
}

func TestReads(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	// Empty platform: empty arrays, not null.
	for _, p := range []string{"/apps", "/instances", "/mesh_peers", "/dead_letters"} {
		if w := e.do(t, "GET", dashboard.BasePath+p, adminToken); w.Code != 200 || strings.TrimSpace(w.Body.String()) != "[]" {
			t.Errorf("GET %s on an empty platform = %d %s, want []", p, w.Code, w.Body)
		}
	}
	if err := e.st.PutMeshPeer(ctx, store.MeshPeer{ID: "12D3KooWpeer", Node: "node-a", Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if w := e.do(t, "GET", dashboard.BasePath+"/mesh_peers", adminToken); w.Code != 200 || !strings.Contains(w.Body.String(), `"node-a"`) {
		t.Errorf("mesh peers = %d %s", w.Code, w.Body)
	}
	if w := e.do(t, "GET", dashboard.BasePath+"/rule_statuses", adminToken); w.Code != 200 || !strings.Contains(w.Body.String(), `"upf":"upf"`) {
		t.Errorf("rule statuses = %d %s", w.Code, w.Body)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "limit=1&limit=2", "limit=-1"} {
		w := e.do(t, "GET", dashboard.BasePath+"/dead_letters?"+q, adminToken)
		var p struct{ Field string }
		_ = json.Unmarshal(w.Body.Bytes(), &p)
		if w.Code != 400 || p.Field != "limit" {
			t.Errorf("dead_letters?%s = %d %s, want a 400 naming limit", q, w.Code, w.Body)
		}
	}
}

func TestAppsShowAKNeverSK(t *testing.T) {
	admin, _ := auth.NewAdmin(adminToken)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	st := srv.Store(t, store.Options{EncryptionKey: key})
	h := dashboard.New(dashboard.Deps{Store: st, Admin: admin, Log: slog.New(slog.DiscardHandler)})
	if _, err := st.PutAppConf(context.Background(), store.AppConf{AppInstanceID: "app-1", AccessKeyID: "AK-ONE", SecretKey: []byte("SECRET-SK-VALUE"), AppName: "one"}); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", dashboard.BasePath+"/apps", nil)
	r.Header.Set("Authorization", "Bearer "+adminToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"accessKeyId":"AK-ONE"`) {
		t.Fatalf("apps = %d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "SECRET-SK-VALUE") || strings.Contains(strings.ToLower(w.Body.String()), "secret") {
		t.Errorf("apps carries the secret key: %s", w.Body)
	}
}

func TestRedeliver(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	if err := e.st.RecordDeadLetter(ctx, "ev-1", deadEvent(t, "ev-1")); err != nil {
		t.Fatal(err)
	}
	if err := e.st.RecordDeadLetter(ctx, "bad", []byte(`{"id":"bad"}`)); err != nil {
		t.Fatal(err)
	}
	dls, err := e.st.ListDeadLetters(ctx, 10)
	if err != nil || len(dls) != 2 {
		t.Fatal(dls, err)
	}
	good, bad := dls[1].StreamID, dls[0].StreamID
	w := e.do(t, "GET", dashboard.BasePath+"/dead_letters", adminToken)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"id":"`+good+`"`) || !strings.Contains(w.Body.String(), `"errorCode":500`) {
		t.Fatalf("dead letters = %d %s", w.Code, w.Body)
	}
	if w := e.do(t, "GET", dashboard.BasePath+"/dead_letters/"+good, adminToken); w.Code != 200 || !strings.Contains(w.Body.String(), `"eventId":"ev-1"`) {
		t.Errorf("one dead letter = %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		name, id string
		status   int
	}{
		{"not a stream id", "nope", 400},
		{"unknown", "1-1", 404},
		{"no event in the record", bad, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(t, "POST", dashboard.BasePath+"/dead_letters/"+tc.id+"/redeliver", adminToken)
			if w.Code != tc.status || w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("redeliver %s = %d %s, want %d", tc.id, w.Code, w.Body, tc.status)
			}
		})
	}
	if len(e.sent.sent) != 0 {
		t.Fatalf("refused redeliveries sent %d events", len(e.sent.sent))
	}
	// The broker refuses: 502, the dead letter stays.
	e.sent.err = errors.New("broker full")
	if w := e.do(t, "POST", dashboard.BasePath+"/dead_letters/"+good+"/redeliver", adminToken); w.Code != 502 {
		t.Errorf("redeliver to a refusing broker = %d %s, want 502", w.Code, w.Body)
	}
	if _, err := e.st.GetDeadLetter(ctx, good); err != nil {
		t.Errorf("dead letter gone after a refused redelivery: %v", err)
	}
	e.sent.err = nil
	w = e.do(t, "POST", dashboard.BasePath+"/dead_letters/"+good+"/redeliver", adminToken)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"eventId":"ev-1"`) {
		t.Fatalf("redeliver = %d %s", w.Code, w.Body)
	}
	if len(e.sent.sent) != 1 {
		t.Fatalf("sent %d events, want 1", len(e.sent.sent))
	}
	ev := e.sent.sent[0]
	if ev.ID() != "ev-1" || ev.Type() != "dev.kmep.service.changed.v1" || string(ev.Data()) != `{"x":"y"}` {
		t.Errorf("sent %s", ev)
	}
	for _, k := range []string{"knativeerrorcode", "knativeerrordest"} {
		if _, ok := ev.Extensions()[k]; ok {
			t.Errorf("redelivered event still carries %s", k)
		}
	}
	if _, err := e.st.GetDeadLetter(ctx, good); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("dead letter after its redelivery: %v, want removed", err)
	}
	if w := e.do(t, "POST", dashboard.BasePath+"/dead_letters/"+good+"/redeliver", adminToken); w.Code != 404 {
		t.Errorf("second redelivery = %d, want 404", w.Code)
	}
	// Without a broker: 501.
	nb := newEnv(t, false)
	if w := nb.do(t, "POST", dashboard.BasePath+"/dead_letters/1-0/redeliver", adminToken); w.Code != 501 {
		t.Errorf("redeliver without a broker = %d, want 501", w.Code)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t, true)
	ts := httptest.NewServer(e.h)
	defer ts.Close()
	ctx := context.Background()
	// A change before the stream is opened is not sent (the stream starts now).
	if _, _, err := e.st.CreateService(ctx, store.ServiceRecord{ID: "s-old", AppInstanceID: "app-1", Name: "old", State: store.StateActive, Info: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", ts.URL+dashboard.BasePath+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before a line %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-deadline:
				t.Fatalf("no line %q within 10 s", prefix)
			}
		}
	}
	next(": changes after")
	next(": keep-alive") // idle: a comment each KeepAlive
	_, sid, err := e.st.CreateService(ctx, store.ServiceRecord{ID: "s-new", AppInstanceID: "app-1", Name: "new", State: store.StateActive, Info: []byte(`{"secretish":"no"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if id := next("id: "); id != "id: "+sid {
		t.Errorf("event id %q, want %q", id, sid)
	}
	if l := next("event: "); l != "event: change" {
		t.Errorf("%q, want event: change", l)
	}
	data := next("data: ")
	var v map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &v); err != nil {
		t.Fatal(err)
	}
	if v["kind"] != "service" || v["id"] != "s-new" || v["appInstanceId"] != "app-1" || v["state"] != "ACTIVE" {
		t.Errorf("data %s", data)
	}
	if strings.Contains(data, "secretish") {
		t.Errorf("change event carries the record's data: %s", data)
	}
	// Last-Event-ID resumes after the named change.
	req2, _ := http.NewRequest("GET", ts.URL+dashboard.BasePath+"/events", nil)
	req2.Header.Set("Authorization", "Bearer "+adminToken)
	req2.Header.Set("Last-Event-ID", "0-0")
	res2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	got := ""
	for !strings.Contains(got, "s-new") {
		n, err := res2.Body.Read(buf)
		got += string(buf[:n])
		if err != nil {
			t.Fatalf("resumed stream: %v after %q", err, got)
		}
	}
	if !strings.Contains(got, `"id":"s-old"`) {
		t.Errorf("resumed from 0-0 without the first change: %q", got)
	}
	res2.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 0))
}
