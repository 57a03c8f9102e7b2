package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/kit/server"
)

const (
	adminToken = "admin-token-0123456789abcdef"
	base       = services.BasePath
)

func servicesPath(app string) string { return base + "/applications/" + app + "/services" }

func serviceInfo(name string) string {
	return `{"serName":"` + name + `","version":"1.0.0","state":"ACTIVE","serializer":"JSON","livenessInterval":60,` +
		`"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2.0",` +
		`"endpoint":{"addresses":[{"host":"10.0.0.1","port":30005}]}}}`
}

// The binary as main wires it, with KMEP_ADMIN_TOKEN set: the platform
// admin reads discovery and every app instance's services (200) and writes
// none (403); no token or a wrong one is a 401; an app's token still reads
// only its own app instance's services.
func TestAdminReadsThroughTheBinary(t *testing.T) {
	f := testenv.NewFunction(t, testenv.FunctionOptions{Env: map[string]string{"KMEP_ADMIN_TOKEN": adminToken},
		Ready: base + "/services"}, run)
	app1, app2 := f.Token(t, "app-1"), f.Token(t, "app-2")
	code, body := f.Do(t, "POST", servicesPath("app-1"), app1, serviceInfo("svc-a"))
	if code != 201 {
		t.Fatalf("app-1 registers: %d %s", code, body)
	}
	var si struct{ SerInstanceID string }
	if err := json.Unmarshal([]byte(body), &si); err != nil || si.SerInstanceID == "" {
		t.Fatalf("registration answer %s: %v", body, err)
	}
	one := servicesPath("app-1") + "/" + si.SerInstanceID

	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		contains                        string
	}{
		{"admin discovers", "GET", base + "/services", adminToken, "", 200, `"svc-a"`},
		{"admin reads a service", "GET", base + "/services/" + si.SerInstanceID, adminToken, "", 200, `"svc-a"`},
		{"admin lists an app's services", "GET", servicesPath("app-1"), adminToken, "", 200, `"svc-a"`},
		{"admin reads an app's service", "GET", one, adminToken, "", 200, `"svc-a"`},
		{"admin reads a liveness", "GET", one + "/liveness", adminToken, "", 200, `"interval":60`},
		{"admin may not register", "POST", servicesPath("app-1"), adminToken, serviceInfo("svc-x"), 403, "writes are the owning app instance's"},
		{"admin may not update", "PUT", one, adminToken, serviceInfo("svc-x"), 403, ""},
		{"admin may not heartbeat", "PATCH", one + "/liveness", adminToken, `{"state":"ACTIVE"}`, 403, ""},
		{"admin may not deregister", "DELETE", one, adminToken, "", 403, ""},
		{"no token", "GET", base + "/services", "", "", 401, ""},
		{"a wrong admin token", "GET", servicesPath("app-1"), "not-the-admin-token-0123456789", "", 401, ""},
		{"a wrong token may not write", "DELETE", one, "not-the-admin-token-0123456789", "", 401, ""},
		{"another app may not list app-1's", "GET", servicesPath("app-1"), app2, "", 403, ""},
		{"another app may not read app-1's", "GET", one, app2, "", 403, ""},
		{"the owner reads its own", "GET", one, app1, "", 200, `"svc-a"`},
		{"an app discovers", "GET", base + "/services", app2, "", 200, `"svc-a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.Do(t, tc.method, tc.path, tc.token, tc.body)
			if code != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("%s %s = %d %s, want %d with %q", tc.method, tc.path, code, body, tc.status, tc.contains)
			}
		})
	}
	if code, body := f.Do(t, "GET", one, app1, ""); code != 200 || !strings.Contains(body, `"svc-a"`) {
		t.Errorf("after the admin's refused writes: %d %s, want svc-a unchanged", code, body)
	}
}

// Without KMEP_ADMIN_TOKEN the binary serves apps as before, and no token
// reads as the admin.
func TestNoAdminReadsWithoutTheToken(t *testing.T) {
	f := testenv.NewFunction(t, testenv.FunctionOptions{Ready: base + "/services"}, run)
	if code, body := f.Do(t, "GET", base+"/services", adminToken, ""); code != 401 {
		t.Errorf("GET discovery with an admin-like token: %d %s, want 401", code, body)
	}
	if code, body := f.Do(t, "GET", base+"/services", f.Token(t, "app-1"), ""); code != 200 {
		t.Errorf("GET discovery as an app: %d %s, want 200", code, body)
	}
}

// A KMEP_ADMIN_TOKEN that is no admin token stops the binary, naming the
// variable.
func TestRunRefusesAShortAdminToken(t *testing.T) {
	t.Setenv("KMEP_ADMIN_TOKEN", "short")
	var cfg config
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), slog.New(slog.DiscardHandler), cfg)
	if err == nil || !strings.Contains(err.Error(), "KMEP_ADMIN_TOKEN") {
		t.Fatalf("run = %v, want an error naming KMEP_ADMIN_TOKEN", err)
	}
}
