package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/subscriptions"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/server"
)

const adminToken = "admin-token-0123456789abcdef"

// The binary as main wires it, with KMEP_ADMIN_TOKEN set: the platform
// admin reads every app instance's subscriptions of both kinds (200) and
// creates and deletes none (403); no token or a wrong one is a 401; an
// app's token still reads only its own app instance's subscriptions.
func TestAdminReadsThroughTheBinary(t *testing.T) {
	f := testenv.NewFunction(t, testenv.FunctionOptions{Env: map[string]string{"KMEP_ADMIN_TOKEN": adminToken},
		Ready: subscriptions.ServiceMgmtPath + "/applications/ready-probe/subscriptions"}, run)
	app1, app2 := f.Token(t, "app-1"), f.Token(t, "app-2")
	for _, k := range []struct{ name, base, typ string }{
		{"service availability", subscriptions.ServiceMgmtPath, store.SubServiceAvailability},
		{"app termination", subscriptions.AppSupportPath, store.SubAppTermination},
	} {
		t.Run(k.name, func(t *testing.T) {
			list := k.base + "/applications/app-1/subscriptions"
			body := func(cb string) string {
				return `{"subscriptionType":"` + k.typ + `","callbackReference":"` + cb + `"}`
			}
			code, ans := f.Do(t, "POST", list, app1, body("http://10.0.0.5/app-1"))
			if code != 201 {
				t.Fatalf("app-1 subscribes: %d %s", code, ans)
			}
			subs, err := f.Store.ListSubscriptions(context.Background(), "app-1", k.typ)
			if err != nil || len(subs) != 1 {
				t.Fatalf("app-1's subscriptions: %+v, %v", subs, err)
			}
			one := list + "/" + subs[0].ID
			for _, tc := range []struct {
				name, method, path, token, body string
				status                          int
				contains                        string
			}{
				{"admin lists", "GET", list, adminToken, "", 200, subs[0].ID},
				{"admin reads one", "GET", one, adminToken, "", 200, "http://10.0.0.5/app-1"},
				{"admin may not create", "POST", list, adminToken, body("http://10.0.0.5/admin"), 403, "writes are the owning app instance's"},
				{"admin may not delete", "DELETE", one, adminToken, "", 403, ""},
				{"no token", "GET", list, "", "", 401, ""},
				{"a wrong admin token", "GET", one, "not-the-admin-token-0123456789", "", 401, ""},
				{"a wrong token may not delete", "DELETE", one, "not-the-admin-token-0123456789", "", 401, ""},
				{"another app may not list", "GET", list, app2, "", 403, ""},
				{"another app may not read", "GET", one, app2, "", 403, ""},
				{"the owner reads its own", "GET", one, app1, "", 200, "http://10.0.0.5/app-1"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					code, ans := f.Do(t, tc.method, tc.path, tc.token, tc.body)
					if code != tc.status || !strings.Contains(ans, tc.contains) {
						t.Fatalf("%s %s = %d %s, want %d with %q", tc.method, tc.path, code, ans, tc.status, tc.contains)
					}
				})
			}
			after, err := f.Store.ListSubscriptions(context.Background(), "app-1", k.typ)
			if err != nil || len(after) != 1 || after[0].ID != subs[0].ID {
				t.Errorf("after the refused writes: %+v, %v; want only %s", after, err, subs[0].ID)
			}
		})
	}
}

// Without KMEP_ADMIN_TOKEN no token reads as the admin.
func TestNoAdminReadsWithoutTheToken(t *testing.T) {
	list := subscriptions.ServiceMgmtPath + "/applications/app-1/subscriptions"
	f := testenv.NewFunction(t, testenv.FunctionOptions{Ready: list}, run)
	if code, ans := f.Do(t, "GET", list, adminToken, ""); code != 401 {
		t.Errorf("GET with an admin-like token: %d %s, want 401", code, ans)
	}
	if code, ans := f.Do(t, "GET", list, f.Token(t, "app-1"), ""); code != 200 {
		t.Errorf("GET as the app: %d %s, want 200", code, ans)
	}
}

// A KMEP_ADMIN_TOKEN that is no admin token stops the binary before it
// serves, naming the variable.
func TestRunRefusesAShortAdminToken(t *testing.T) {
	t.Setenv("KMEP_ADMIN_TOKEN", "short")
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), slog.New(slog.DiscardHandler), cfg)
	if err == nil || !strings.Contains(err.Error(), "KMEP_ADMIN_TOKEN") {
		t.Fatalf("run = %v, want an error naming KMEP_ADMIN_TOKEN", err)
	}
}

// A malformed KMEP_CALLBACK_DENY stops the binary before it serves,
// naming the variable.
func TestRunRefusesMalformedCallbackDeny(t *testing.T) {
	t.Setenv("KMEP_CALLBACK_DENY", "10.0.0.0/33")
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), slog.New(slog.DiscardHandler), cfg)
	if err == nil || !strings.Contains(err.Error(), "KMEP_CALLBACK_DENY") {
		t.Fatalf("run = %v, want an error naming KMEP_CALLBACK_DENY", err)
	}
}
