package services_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// adminToken is the platform admin's token in these tests.
const adminToken = "admin-token-0123456789abcdef"

// TestAdminReads: the platform admin reads discovery and every app's
// services (200) but writes none (403, nothing changes); apps still read
// only their own.
func TestAdminReads(t *testing.T) {
	admin, err := auth.NewAdmin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	st := srv.Store(t, store.Options{})
	e := &env{st: st, clock: &clock{}, h: services.New(services.Deps{Store: st, Authenticate: resttest.Authenticate,
		AdminRead: admin.Check, Log: slog.New(slog.DiscardHandler)})}
	id := e.register(t, "app-1", info("svc-a", liveness(5)))
	e.register(t, "app-2", info("svc-b"))

	for _, tc := range []struct {
		name, method, path, as, body string
		status                       int
		contains                     string
	}{
		{"admin discovers every service", "GET", base + "/services", adminToken, "", 200, `"svc-b"`},
		{"admin reads one service", "GET", base + "/services/" + id, adminToken, "", 200, `"svc-a"`},
		{"admin lists an app's services", "GET", servicesPath("app-1"), adminToken, "", 200, `"svc-a"`},
		{"admin reads an app's service", "GET", servicePath("app-1", id), adminToken, "", 200, `"svc-a"`},
		{"admin reads an app's liveness", "GET", livenessPath("app-1", id), adminToken, "", 200, `"interval":5`},
		{"admin reads transports", "GET", base + "/transports", adminToken, "", 200, `REST_HTTP`},
		{"admin may not register", "POST", servicesPath("app-1"), adminToken, info("svc-x"), 403, "writes are the owning app instance's"},
		{"admin may not update", "PUT", servicePath("app-1", id), adminToken, info("svc-x"), 403, ""},
		{"admin may not deregister", "DELETE", servicePath("app-1", id), adminToken, "", 403, ""},
		{"admin may not heartbeat", "PATCH", livenessPath("app-1", id), adminToken, `{"state":"ACTIVE"}`, 403, ""},
		{"another app still may not list app-1's", "GET", servicesPath("app-1"), "app-2", "", 403, ""},
		{"another app still may not read app-1's", "GET", servicePath("app-1", id), "app-2", "", 403, ""},
		{"the owner reads its own", "GET", servicePath("app-1", id), "app-1", "", 200, `"svc-a"`},
		{"no token", "GET", base + "/services", "", "", 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, tc.as, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.status)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body %s does not contain %s", rec.Body, tc.contains)
			}
			if tc.status >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", rec.Header().Get("Content-Type"))
			}
		})
	}
	// The refused writes changed nothing.
	rec, err := st.GetService(context.Background(), id)
	if err != nil || rec.Name != "svc-a" || rec.Rev != 1 {
		t.Errorf("after the admin's refused writes: %+v, %v; want svc-a at rev 1", rec, err)
	}
	all, err := st.AllServices(context.Background())
	if err != nil || len(all) != 2 {
		t.Errorf("services after the admin's refused POST: %d, %v; want 2", len(all), err)
	}
	if r := e.do(t, "GET", base+"/services", adminToken, ""); r.Code != http.StatusOK {
		t.Errorf("admin discovery after the writes: %d", r.Code)
	}
}
