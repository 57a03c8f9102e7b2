package subscriptions_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// adminToken is the platform admin's token in these tests.
const adminToken = "admin-token-0123456789abcdef"

// TestAdminReads: the platform admin reads every app's subscriptions of
// both kinds (200) but creates and deletes none (403, nothing changes);
// apps still read only their own.
func TestAdminReads(t *testing.T) {
	admin, err := auth.NewAdmin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	st := srv.Store(t, store.Options{})
	e := &env{st: st, h: subscriptions.New(subscriptions.Deps{Store: st, Callbacks: &fakeCallbacks{},
		Authenticate: resttest.Authenticate, AdminRead: admin.Check, Log: slog.New(slog.DiscardHandler)})}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			rec := e.do(t, "POST", k.list("app-1"), "app-1", k.body("http://cb.example/app-1"))
			if rec.Code != 201 {
				t.Fatalf("create: %d %s", rec.Code, rec.Body)
			}
			loc := rec.Header().Get("Location")
			id := loc[strings.LastIndex(loc, "/")+1:]
			for _, tc := range []struct {
				name, method, path, as, body string
				status                       int
				contains                     string
			}{
				{"admin lists", "GET", k.list("app-1"), adminToken, "", 200, id},
				{"admin reads one", "GET", k.one("app-1", id), adminToken, "", 200, "http://cb.example/app-1"},
				{"admin may not create", "POST", k.list("app-1"), adminToken, k.body("http://cb.example/admin"), 403, "writes are the owning app instance's"},
				{"admin may not delete", "DELETE", k.one("app-1", id), adminToken, "", 403, ""},
				{"another app still may not list", "GET", k.list("app-1"), "app-2", "", 403, ""},
				{"another app still may not read", "GET", k.one("app-1", id), "app-2", "", 403, ""},
				{"no token", "GET", k.list("app-1"), "", "", 401, ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					rec := e.do(t, tc.method, tc.path, tc.as, tc.body)
					if rec.Code != tc.status {
						t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.status)
					}
					if !strings.Contains(rec.Body.String(), tc.contains) {
						t.Errorf("body %s does not contain %s", rec.Body, tc.contains)
					}
				})
			}
			subs, err := st.ListSubscriptions(context.Background(), "app-1", k.typ)
			if err != nil || len(subs) != 1 || subs[0].ID != id {
				t.Errorf("app-1's %s subscriptions after the admin's refused writes: %+v, %v; want only %s", k.typ, subs, err, id)
			}
		})
	}
}
