package lcm_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/lcm"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
)

const admin = "lcm-admin-token-0123456789"

var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func setup(t *testing.T) (*store.Store, http.Handler) {
	t.Helper()
	st := srv.Store(t, store.Options{EncryptionKey: make([]byte, 32)})
	a, err := auth.NewAdmin(admin)
	if err != nil {
		t.Fatal(err)
	}
	return st, lcm.New(lcm.Deps{Store: st, Admin: a})
}

// call sends one request as the admin; header holds name, value pairs.
func call(h http.Handler, method, path, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

const appdPath = "/mepcfg/app_lcm/v1/applications/app-1/appd_configuration"

const goodAppD = `{"appTrafficRule":[{"trafficRuleId":"t1","filterType":"FLOW","priority":1,
 "trafficFilter":[{"srcAddress":["10.0.0.0/24"],"dstPort":["80","8000-8080"],"protocol":["TCP"]}],
 "action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}}],
 "appDNSRule":[{"dnsRuleId":"d1","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"192.0.2.10","ttl":30}],
 "appSupportMp1":true,"appName":"demo"}`

func TestAppDConfiguration(t *testing.T) {
	st, h := setup(t)
	ctx := context.Background()
	if w := call(h, "GET", appdPath, ""); w.Code != 404 {
		t.Fatalf("get before create: %d", w.Code)
	}
	w := call(h, "POST", appdPath, goodAppD)
	if w.Code != 201 || w.Header().Get("ETag") != `"1"` {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `"state":"ACTIVE"`) {
		t.Fatalf("state not defaulted to ACTIVE: %s", w.Body)
	}
	problemtest.Want(t, call(h, "POST", appdPath, goodAppD), appdPath, http.StatusConflict, "")
	rules, _ := st.ListRules(ctx, store.RuleDNS, "app-1")
	if len(rules) != 1 || rules[0].ID != "d1" || rules[0].State != "ACTIVE" {
		t.Fatalf("stored DNS rules: %+v", rules)
	}
	replaced := strings.Replace(goodAppD, `"ttl":30}`, `"ttl":30,"state":"INACTIVE"}`, 1)
	if w := call(h, "PUT", appdPath, replaced); w.Code != 200 || w.Header().Get("ETag") != `"2"` {
		t.Fatalf("replace: %d %s", w.Code, w.Body)
	}
	if r, _ := st.GetRule(ctx, store.RuleDNS, "app-1", "d1"); r.State != "INACTIVE" {
		t.Fatalf("replace did not reach the rule: %+v", r)
	}
	for _, tc := range []struct{ name, body, field string }{
		{"bad action", strings.Replace(goodAppD, "FORWARD_DECAPSULATED", "TELEPORT", 1), "appTrafficRule[0].action"},
		{"bad filter type", strings.Replace(goodAppD, `"FLOW"`, `"STREAM"`, 1), "appTrafficRule[0].filterType"},
		{"bad address", strings.Replace(goodAppD, "10.0.0.0/24", "ten.0.0.0", 1), "appTrafficRule[0].trafficFilter[0].srcAddress[0]"},
		{"bad port", strings.Replace(goodAppD, `"8000-8080"`, `"80000"`, 1), "appTrafficRule[0].trafficFilter[0].dstPort[1]"},
		{"forward without interface", strings.Replace(goodAppD, `,"dstInterface":{"interfaceType":"IP","dstIpAddress":"10.1.1.1"}`, "", 1), "appTrafficRule[0].dstInterface"},
		{"v6 address for v4", strings.Replace(goodAppD, "192.0.2.10", "2001:db8::1", 1), "appDNSRule[0].ipAddress"},
		{"bad domain", strings.Replace(goodAppD, "www.example.com", "bad domain", 1), "appDNSRule[0].domainName"},
		{"duplicate id", strings.Replace(goodAppD, `"appDNSRule":[`, `"appDNSRule":[{"dnsRuleId":"d1","domainName":"a.example","ipAddressType":"IP_V4","ipAddress":"192.0.2.1"},`, 1), "appDNSRule[1].dnsRuleId"},
		{"wrong type", strings.Replace(goodAppD, `"priority":1`, `"priority":"high"`, 1), "appTrafficRule.priority"},
		// A configuration that names no rules would remove them all.
		{"null", `null`, "body"},
		{"empty object", `{}`, "appTrafficRule"},
		{"only the name", `{"appName":"demo","appSupportMp1":true}`, "appTrafficRule"},
		{"no DNS rules member", `{"appTrafficRule":[],"appName":"demo"}`, "appDNSRule"},
		{"null DNS rules", `{"appTrafficRule":[],"appDNSRule":null}`, "appDNSRule"},
		{"null rule", strings.Replace(goodAppD, `"appDNSRule":[`, `"appDNSRule":[null,`, 1), "appDNSRule[0]"},
		{"null filter", strings.Replace(goodAppD, `"trafficFilter":[`, `"trafficFilter":[null,`, 1), "appTrafficRule[0].trafficFilter[0]"},
		{"null port", strings.Replace(goodAppD, `"dstPort":[`, `"dstPort":[null,`, 1), "appTrafficRule[0].trafficFilter[0].dstPort[0]"},
		// Text encoding/json would change or keep.
		{"appName invalid UTF-8", strings.Replace(goodAppD, `"appName":"demo"`, "\"appName\":\"de\xffmo\"", 1), "appName"},
		{"appName with NUL", strings.Replace(goodAppD, `"appName":"demo"`, `"appName":"de\u0000mo"`, 1), "appName"},
		{"appName with CR LF", strings.Replace(goodAppD, `"appName":"demo"`, `"appName":"de\r\nmo"`, 1), "appName"},
		{"appName too long", strings.Replace(goodAppD, `"appName":"demo"`, `"appName":"`+strings.Repeat("a", 257)+`"`, 1), "appName"},
		{"dnsRuleId lone surrogate", strings.Replace(goodAppD, `"d1"`, `"d\udc001"`, 1), "appDNSRule[0].dnsRuleId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := st.GetAppD(ctx, "app-1")
			problemtest.Want(t, call(h, "PUT", appdPath, tc.body), appdPath, 400, tc.field)
			if after, _ := st.GetAppD(ctx, "app-1"); after.Rev != before.Rev {
				t.Fatal("a refused PUT changed the configuration")
			}
		})
	}
	// A body that is not application/json: 415, nothing changes.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"} {
		t.Run("PUT as "+ct, func(t *testing.T) {
			before, _ := st.GetAppD(ctx, "app-1")
			problemtest.Want(t, call(h, "PUT", appdPath, goodAppD, "Content-Type", ct), appdPath, http.StatusUnsupportedMediaType, "Content-Type")
			if after, _ := st.GetAppD(ctx, "app-1"); after.Rev != before.Rev {
				t.Fatal("a refused PUT changed the configuration")
			}
		})
	}
	if w := call(h, "PUT", appdPath, replaced, "Content-Type", "application/json; charset=utf-8"); w.Code != 200 {
		t.Fatalf("replace with a charset: %d %s", w.Code, w.Body)
	}
	// [] is how a configuration says "no rules".
	if w := call(h, "PUT", appdPath, `{"appTrafficRule":[],"appDNSRule":[],"appName":"demo"}`); w.Code != 200 {
		t.Fatalf("replace with no rules: %d %s", w.Code, w.Body)
	}
	if rules, _ := st.ListRules(ctx, store.RuleDNS, "app-1"); len(rules) != 0 {
		t.Fatalf("an explicit empty configuration kept %+v", rules)
	}
	// Only the admin.
	req := httptest.NewRequest("GET", appdPath, nil)
	req.Header.Set("Authorization", "Bearer not-the-admin-token")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	problemtest.Want(t, rec, appdPath, 401, "")
	if w := call(h, "DELETE", appdPath, ""); w.Code != 204 {
		t.Fatalf("delete: %d", w.Code)
	}
	if rules, _ := st.ListRules(ctx, store.RuleTraffic, "app-1"); len(rules) != 0 {
		t.Fatal("rules survived the delete")
	}
	problemtest.Want(t, call(h, "PATCH", appdPath, ""), appdPath, 405, "")
}

func TestTerminateFlow(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		subscribe bool
		confirm   bool
		graceful  string
		want      string
	}{
		{"no subscription: no wait", false, false, `{"gracefulTimeout":60}`, `"confirmed":false`},
		{"confirmed before the timeout", true, true, `{"gracefulTimeout":60}`, `"confirmed":true`},
		{"timeout", true, false, `{"gracefulTimeout":1}`, `"confirmed":false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h := setup(t)
			path := "/mepcfg/app_lcm/v1/applications/app-t/terminate"
			_, _, err := st.CreateService(ctx, store.ServiceRecord{ID: "svc", AppInstanceID: "app-t", Name: "n", State: "ACTIVE", Info: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			if tc.subscribe {
				st.CreateSubscription(ctx, store.Subscription{ID: "ts", AppInstanceID: "app-t", Type: store.SubAppTermination, CallbackReference: "http://10.0.0.1/x"})
			}
			if tc.confirm {
				go func() {
					for {
						if _, err := st.ConfirmTermination(ctx, "app-t"); err == nil {
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			start := time.Now()
			w := call(h, "POST", path, tc.graceful)
			if w.Code != 200 || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("terminate: %d %s", w.Code, w.Body)
			}
			if !tc.subscribe && time.Since(start) > 30*time.Second {
				t.Fatal("waited without a subscriber")
			}
			if _, err := st.GetService(ctx, "svc"); err == nil {
				t.Fatal("service survived the termination")
			}
			if subs, _ := st.TerminationSubscriptions(ctx, "app-t"); len(subs) != 0 {
				t.Fatal("subscription survived the termination")
			}
		})
	}
	st, h := setup(t)
	term := "/mepcfg/app_lcm/v1/applications/app-x/terminate"
	problemtest.Want(t, call(h, "POST", term, `{"gracefulTimeout":-1}`), term, 400, "gracefulTimeout")
	problemtest.Want(t, call(h, "POST", term, `{"gracefulTimeout":301}`), term, 400, "gracefulTimeout")
	problemtest.Want(t, call(h, "POST", term, `{"gracefulTimeout":9223372036854775807}`), term, 400, "gracefulTimeout")
	problemtest.Want(t, call(h, "POST", term, `{"gracefulTimeout":10}`, "Content-Type", "application/x-www-form-urlencoded"), term, http.StatusUnsupportedMediaType, "Content-Type")
	if _, err := st.GetTermination(ctx, "app-x"); err == nil {
		t.Fatal("a refused terminate started a termination")
	}
}
