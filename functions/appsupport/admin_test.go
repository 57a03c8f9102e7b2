package appsupport_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/store/kit/auth"
)

// adminToken is the platform admin's token in these tests.
const adminToken = "admin-token-0123456789abcdef"

// TestAdminReads: the platform admin reads every app's traffic and DNS
// rules and registration (200) but changes none (403, nothing changes);
// apps still read only their own.
func TestAdminReads(t *testing.T) {
	admin, err := auth.NewAdmin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{deps: func(d *appsupport.Deps) { d.AdminRead = admin.Check }})
	e.seed(t)
	if rec := e.do(t, "POST", base+"/registrations", "app-a", `{"appName":"app-a","appInstanceId":"app-a","isInsByMec":true}`); rec.Code != 201 {
		t.Fatalf("register app-a: %d %s", rec.Code, rec.Body)
	}
	before := e.lastChange(t)
	for _, tc := range []struct {
		name, method, path, as, body string
		status                       int
		contains                     string
	}{
		{"admin lists traffic rules", "GET", rulesPath("app-a", "traffic_rules"), adminToken, "", 200, `"zeta"`},
		{"admin reads a traffic rule", "GET", rulePath("app-b", "traffic_rules", "alpha"), adminToken, "", 200, `"DROP"`},
		{"admin lists DNS rules", "GET", rulesPath("app-b", "dns_rules"), adminToken, "", 200, `"www.example.com"`},
		{"admin reads a DNS rule", "GET", rulePath("app-a", "dns_rules", "api"), adminToken, "", 200, `"api.example.com"`},
		{"admin reads a registration", "GET", base + "/registrations/app-a", adminToken, "", 200, `"app-a"`},
		{"admin may not change a traffic rule", "PUT", rulePath("app-a", "traffic_rules", "zeta"), adminToken, trafficZeta, 403, "writes are the owning app instance's"},
		{"admin may not change a DNS rule", "PUT", rulePath("app-a", "dns_rules", "www"), adminToken, dnsWWW, 403, ""},
		{"admin may not register", "POST", base + "/registrations", adminToken, `{"appName":"x","appInstanceId":"x"}`, 403, ""},
		{"admin may not deregister", "DELETE", base + "/registrations/app-a", adminToken, "", 403, ""},
		{"admin may not confirm ready", "POST", base + "/applications/app-a/confirm_ready", adminToken, `{"indication":"READY"}`, 403, ""},
		{"another app still may not list", "GET", rulesPath("app-a", "traffic_rules"), "app-b", "", 403, ""},
		{"another app still may not read", "GET", rulePath("app-a", "dns_rules", "www"), "app-b", "", 403, ""},
		{"no token", "GET", rulesPath("app-a", "traffic_rules"), "", "", 401, ""},
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
	if after := e.lastChange(t); after != before {
		t.Errorf("the admin's refused writes changed the store: last change %s, was %s", after, before)
	}
	if _, err := e.st.GetRegistration(context.Background(), "app-a"); err != nil {
		t.Errorf("app-a's registration after the admin's refused DELETE: %v", err)
	}
}
