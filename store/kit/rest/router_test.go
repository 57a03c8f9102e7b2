package rest_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/store/kit/rest"
)

// bearer is the fake authenticator: "Bearer <app>" is app <app>. It counts
// its calls.
type bearer struct{ calls atomic.Int64 }

func (b *bearer) authenticate(r *http.Request) (string, error) {
	b.calls.Add(1)
	app, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || app == "" {
		return "", problem.Unauthorized("missing bearer token")
	}
	return app, nil
}

// echo answers 200 with the method and the caller.
func echo(w http.ResponseWriter, r *http.Request) error {
	_, err := io.WriteString(w, r.Method+" "+rest.Caller(r))
	return err
}

// own answers 200 with the path's appInstanceId when it is the caller's.
func own(w http.ResponseWriter, r *http.Request) error {
	app, err := rest.Own(r)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "own "+app)
	return err
}

func TestRouter(t *testing.T) {
	tests := []struct {
		name, method, path, app string
		status                  int
		body                    string // for a 2xx
		field                   string // for a ProblemDetails
		allow                   string
		authenticated           bool
	}{
		{name: "listed method", method: "GET", path: "/api/things", app: "a1", status: 200, body: "GET a1", authenticated: true},
		{name: "other listed method", method: "DELETE", path: "/api/things", app: "a1", status: 200, body: "DELETE a1", authenticated: true},
		{name: "no credentials", method: "GET", path: "/api/things", status: 401, authenticated: true},
		{name: "method not allowed, before authentication", method: "PATCH", path: "/api/things", status: 405, allow: "DELETE, GET, PUT"},
		{name: "HEAD is not GET", method: "HEAD", path: "/api/things", app: "a1", status: 405, allow: "DELETE, GET, PUT"},
		{name: "own path", method: "GET", path: "/api/apps/a1", app: "a1", status: 200, body: "own a1", authenticated: true},
		{name: "another app's path", method: "GET", path: "/api/apps/a2", app: "a1", status: 403, authenticated: true},
		{name: "unknown path", method: "GET", path: "/api/nothing", app: "a1", status: 404},
		{name: "unknown path without credentials", method: "POST", path: "/api/things/x/y", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bearer
			rt := rest.NewRouter(slog.New(slog.DiscardHandler), b.authenticate)
			rt.Handle("/api/things", map[string]problem.HandlerFunc{"PUT": echo, "GET": echo, "DELETE": echo})
			rt.Handle("/api/apps/{appInstanceId}", map[string]problem.HandlerFunc{"GET": own})
			rt.NotFound("/api/")

			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.app != "" {
				req.Header.Set("Authorization", "Bearer "+tc.app)
			}
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, req)

			if tc.status < 300 {
				if rec.Code != tc.status || rec.Body.String() != tc.body {
					t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body, tc.status, tc.body)
				}
			} else {
				problemtest.Want(t, rec, tc.path, tc.status, tc.field)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if got := b.calls.Load() > 0; got != tc.authenticated {
				t.Errorf("authenticated = %v, want %v", got, tc.authenticated)
			}
		})
	}
}

// A Router over Unauthenticated lets every request through with no caller.
func TestRouterUnauthenticated(t *testing.T) {
	rt := rest.NewRouter(nil, rest.Unauthenticated)
	rt.Handle("/open", map[string]problem.HandlerFunc{"POST": echo})
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("POST", "/open", nil))
	if rec.Code != 200 || rec.Body.String() != "POST " {
		t.Fatalf("got %d %q, want 200 %q", rec.Code, rec.Body, "POST ")
	}
}

// A Router without an authenticate function would be an open API.
func TestNewRouterRequiresAuthenticate(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewRouter(nil authenticate) did not panic")
		}
	}()
	rest.NewRouter(nil, nil)
}

// The Router copies the methods: changing the map afterwards changes nothing.
func TestRouterCopiesMethods(t *testing.T) {
	rt := rest.NewRouter(nil, rest.Unauthenticated)
	m := map[string]problem.HandlerFunc{"GET": echo}
	rt.Handle("/x", m)
	m["POST"] = echo
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("POST", "/x", nil))
	problemtest.Want(t, rec, "/x", 405, "")
	if got := rec.Header().Get("Allow"); got != "GET" {
		t.Errorf("Allow = %q, want GET", got)
	}
}

func TestCheckCaller(t *testing.T) {
	tests := []struct {
		name, caller, app string
		ok                bool
	}{
		{"the caller", "a1", "a1", true},
		{"another app", "a1", "a2", false},
		{"no caller", "", "a1", false},
		{"empty app of an anonymous caller", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got error
			rt := rest.NewRouter(nil, func(*http.Request) (string, error) { return tc.caller, nil })
			rt.Handle("/", map[string]problem.HandlerFunc{"GET": func(_ http.ResponseWriter, r *http.Request) error {
				got = rest.CheckCaller(r, tc.app)
				return nil
			}})
			rt.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			if tc.ok != (got == nil) {
				t.Fatalf("CheckCaller(%q) with caller %q = %v, want ok %v", tc.app, tc.caller, got, tc.ok)
			}
			if got != nil && problem.From(got).Status != http.StatusForbidden {
				t.Errorf("status %d, want 403", problem.From(got).Status)
			}
		})
	}
}

// Outside a Router a request has no caller.
func TestCallerOutsideRouter(t *testing.T) {
	if got := rest.Caller(httptest.NewRequest("GET", "/", nil)); got != "" {
		t.Fatalf("Caller = %q, want empty", got)
	}
}

func TestRouterAdminReads(t *testing.T) {
	const adminToken = "Bearer the-admin-token"
	var b bearer
	rt := rest.NewRouter(nil, b.authenticate)
	rt.AdminReads(func(r *http.Request) error {
		if r.Header.Get("Authorization") != adminToken {
			return problem.Unauthorized("invalid admin token")
		}
		return nil
	})
	whoami := func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.WriteString(w, r.Method+" caller="+rest.Caller(r)+" admin="+map[bool]string{true: "yes", false: "no"}[rest.IsAdmin(r)])
		return err
	}
	rt.Handle("/api/things", map[string]problem.HandlerFunc{"GET": whoami, "POST": whoami, "PUT": whoami, "DELETE": whoami})
	rt.Handle("/api/apps/{appInstanceId}", map[string]problem.HandlerFunc{"GET": own, "PUT": own})
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
		body                     string
	}{
		{"admin reads", "GET", "/api/things", adminToken, 200, "GET caller= admin=yes"},
		{"admin reads any app's", "GET", "/api/apps/a1", adminToken, 200, "own a1"},
		{"admin may not create", "POST", "/api/things", adminToken, 403, ""},
		{"admin may not replace", "PUT", "/api/apps/a1", adminToken, 403, ""},
		{"admin may not delete", "DELETE", "/api/things", adminToken, 403, ""},
		{"app reads as itself", "GET", "/api/things", "Bearer a1", 200, "GET caller=a1 admin=no"},
		{"app writes as itself", "PUT", "/api/apps/a1", "Bearer a1", 200, "own a1"},
		{"app reads only its own", "GET", "/api/apps/a1", "Bearer a2", 403, ""},
		{"wrong admin token is an app token", "GET", "/api/things", "Bearer the-admin-tokeN", 200, "GET caller=the-admin-tokeN admin=no"},
		{"no credentials", "GET", "/api/things", "", 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			rt.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.status)
			}
			if tc.status == 200 && w.Body.String() != tc.body {
				t.Errorf("body = %q, want %q", w.Body, tc.body)
			}
			if tc.status >= 400 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
				t.Errorf("Content-Type = %q, want a ProblemDetails", w.Header().Get("Content-Type"))
			}
		})
	}
}
