package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/server"
)

const (
	adminToken = "admin-token-0123456789abcdef"
	base       = appsupport.BasePath
	traffic    = `{"trafficRuleId":"zeta","filterType":"FLOW","priority":1,"trafficFilter":[{"dstPort":["80"]}],"action":"DROP","state":"ACTIVE"}`
	dns        = `{"dnsRuleId":"www","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"146.241.7.3","ttl":300,"state":"ACTIVE"}`
)

func rules(app, coll string) string { return base + "/applications/" + app + "/" + coll }

// The binary as main wires it, with KMEP_ADMIN_TOKEN set: the platform
// admin reads every app instance's traffic and DNS rules and registration
// (200) and changes none (403); no token or a wrong one is a 401; an app's
// token still reads only its own app instance's resources.
func TestAdminReadsThroughTheBinary(t *testing.T) {
	f := testenv.NewFunction(t, testenv.FunctionOptions{Env: map[string]string{"KMEP_ADMIN_TOKEN": adminToken},
		Ready: rules("ready-probe", "traffic_rules")}, run)
	ctx := context.Background()
	if _, err := f.Store.CreateAppD(ctx, store.AppD{AppInstanceID: "app-1", AppName: "app-1", AppSupportMp1: true,
		Traffic: []store.Rule{{ID: "zeta", State: "ACTIVE", Body: []byte(traffic)}},
		DNS:     []store.Rule{{ID: "www", State: "ACTIVE", Body: []byte(dns)}}}); err != nil {
		t.Fatal(err)
	}
	app1, app2 := f.Token(t, "app-1"), f.Token(t, "app-2")
	if code, ans := f.Do(t, "POST", base+"/registrations", app1, `{"appName":"app-1","appInstanceId":"app-1","isInsByMec":true}`); code != 201 {
		t.Fatalf("app-1 registers: %d %s", code, ans)
	}
	before, err := f.Store.LastChangeID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "not-the-admin-token-0123456789"
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		contains                        string
	}{
		{"admin lists traffic rules", "GET", rules("app-1", "traffic_rules"), adminToken, "", 200, `"zeta"`},
		{"admin reads a traffic rule", "GET", rules("app-1", "traffic_rules") + "/zeta", adminToken, "", 200, `"DROP"`},
		{"admin lists DNS rules", "GET", rules("app-1", "dns_rules"), adminToken, "", 200, `"www.example.com"`},
		{"admin reads a DNS rule", "GET", rules("app-1", "dns_rules") + "/www", adminToken, "", 200, `"www.example.com"`},
		{"admin reads a registration", "GET", base + "/registrations/app-1", adminToken, "", 200, `"app-1"`},
		{"admin may not change a traffic rule", "PUT", rules("app-1", "traffic_rules") + "/zeta", adminToken, traffic, 403, "writes are the owning app instance's"},
		{"admin may not change a DNS rule", "PUT", rules("app-1", "dns_rules") + "/www", adminToken, dns, 403, ""},
		{"admin may not register", "POST", base + "/registrations", adminToken, `{"appName":"x","appInstanceId":"x"}`, 403, ""},
		{"admin may not deregister", "DELETE", base + "/registrations/app-1", adminToken, "", 403, ""},
		{"admin may not confirm ready", "POST", base + "/applications/app-1/confirm_ready", adminToken, `{"indication":"READY"}`, 403, ""},
		{"no token", "GET", rules("app-1", "traffic_rules"), "", "", 401, ""},
		{"a wrong admin token", "GET", rules("app-1", "dns_rules"), wrong, "", 401, ""},
		{"a wrong token may not deregister", "DELETE", base + "/registrations/app-1", wrong, "", 401, ""},
		{"another app may not list", "GET", rules("app-1", "traffic_rules"), app2, "", 403, ""},
		{"another app may not read", "GET", rules("app-1", "dns_rules") + "/www", app2, "", 403, ""},
		{"the owner reads its own", "GET", rules("app-1", "traffic_rules") + "/zeta", app1, "", 200, `"DROP"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ans := f.Do(t, tc.method, tc.path, tc.token, tc.body)
			if code != tc.status || !strings.Contains(ans, tc.contains) {
				t.Fatalf("%s %s = %d %s, want %d with %q", tc.method, tc.path, code, ans, tc.status, tc.contains)
			}
		})
	}
	if after, err := f.Store.LastChangeID(ctx); err != nil || after != before {
		t.Errorf("the refused writes changed the store: last change %s (%v), was %s", after, err, before)
	}
}

// Without KMEP_ADMIN_TOKEN no token reads as the admin.
func TestNoAdminReadsWithoutTheToken(t *testing.T) {
	f := testenv.NewFunction(t, testenv.FunctionOptions{Ready: rules("ready-probe", "traffic_rules")}, run)
	if code, ans := f.Do(t, "GET", rules("app-1", "traffic_rules"), adminToken, ""); code != 401 {
		t.Errorf("GET with an admin-like token: %d %s, want 401", code, ans)
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
