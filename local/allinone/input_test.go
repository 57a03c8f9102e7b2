package allinone_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
)

// TestInputRefusedNotStored drives the all-in-one over HTTP with what
// encoding/json would have stored altered or that names nothing: each is a
// 4xx ProblemDetails naming the field, and what was stored before is still
// there, unchanged.
func TestInputRefusedNotStored(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL()})
	c := client{t, base}
	const confs = "/mep/appMng/v1/applications/app-in/confs"
	conf := func(sk, appName string) string {
		return `{"authInfo":{"credentials":{"accessKeyId":"AKIN","secretKey":"` + sk + `"}},"appInfo":{"appName":"` + appName + `","requiredServices":[]}}`
	}
	c.provision("app-in", "AKIN", "secret-key-in")
	tok := c.token("AKIN", "secret-key-in")
	json := []string{"Content-Type", "application/json"}

	services := "/mep/mec_service_mgmt/v1/applications/app-in/services"
	svc := strings.Replace(egService, "%s", "in-svc", 1)
	res, b := c.do("POST", services, tok, svc, json...)
	c.expect(res, b, http.StatusCreated)
	const appd = "/mepcfg/app_lcm/v1/applications/app-in/appd_configuration"
	rules := `{"appName":"in","appSupportMp1":true,"appTrafficRule":[],"appDNSRule":[{"dnsRuleId":"d1","domainName":"in.example","ipAddressType":"IP_V4","ipAddress":"10.0.0.5","ttl":30}]}`
	res, b = c.do("POST", appd, admin, rules, json...)
	c.expect(res, b, http.StatusCreated)

	for _, tc := range []struct {
		name, method, path, bearer, body, field string
		header                                  []string
		status                                  int
	}{
		{"secretKey invalid UTF-8", "PUT", confs, admin, conf("secret-\xff\xfe-key", "demo"), "authInfo.credentials.secretKey", json, 400},
		{"secretKey lone surrogate", "PUT", confs, admin, conf(`secret-\ud800-key`, "demo"), "authInfo.credentials.secretKey", json, 400},
		{"appName with NUL", "PUT", confs, admin, conf("secret-key-in-2", `de\u0000mo`), "appInfo.appName", json, 400},
		{"appName with CR LF", "PUT", confs, admin, conf("secret-key-in-2", `de\r\nmo`), "appInfo.appName", json, 400},
		{"null required service", "PUT", confs, admin, strings.Replace(conf("secret-key-in-2", "demo"), `"requiredServices":[]`, `"requiredServices":[null]`, 1), "appInfo.requiredServices[0]", json, 400},
		{"confs as text/plain", "PUT", confs, admin, conf("secret-key-in-2", "demo"), "Content-Type", []string{"Content-Type", "text/plain"}, 415},
		{"serName with NUL", "POST", services, tok, strings.Replace(svc, `"in-svc"`, `"in\u0000svc"`, 1), "serName", json, 400},
		{"serName with CR LF", "POST", services, tok, strings.Replace(svc, `"in-svc"`, `"in\r\nsvc"`, 1), "serName", json, 400},
		{"serName invalid UTF-8", "POST", services, tok, strings.Replace(svc, `"in-svc"`, "\"in\xc3svc\"", 1), "serName", json, 400},
		{"version with a control", "POST", services, tok, strings.Replace(svc, `"1.0.1"`, `"1.0\u001b1"`, 1), "version", json, 400},
		{"host with NUL", "POST", services, tok, strings.Replace(svc, `"10.0.0.7"`, `"10.0.0.7\u0000"`, 1), "transportInfo.endpoint.addresses[0].host", json, 400},
		{"livenessInterval max int64", "POST", services, tok, strings.Replace(svc, `"livenessInterval":10`, `"livenessInterval":9223372036854775807`, 1), "livenessInterval", json, 400},
		{"null address", "POST", services, tok, strings.Replace(svc, `"addresses":[`, `"addresses":[null,`, 1), "transportInfo.endpoint.addresses[0]", json, 400},
		{"registration as a form", "POST", services, tok, svc, "Content-Type", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"appd null", "PUT", appd, admin, `null`, "body", json, 400},
		{"appd empty", "PUT", appd, admin, `{}`, "appTrafficRule", json, 400},
		{"appd null rule", "PUT", appd, admin, strings.Replace(rules, `"appDNSRule":[`, `"appDNSRule":[null,`, 1), "appDNSRule[0]", json, 400},
		{"appd appName with NUL", "PUT", appd, admin, strings.Replace(rules, `"appName":"in"`, `"appName":"i\u0000n"`, 1), "appName", json, 400},
		{"v3 registration without endpoint", "POST", "/mep/mec_app_support/v1/registrations", tok, `{"appName":"in","appInstanceId":"app-in","isInsByMec":false}`, "endpoint", json, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client{t, base}
			res, b := c.do(tc.method, tc.path, tc.bearer, tc.body, tc.header...)
			c.expect(res, b, tc.status)
			if !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
				t.Fatalf("ProblemDetails does not name %s: %s", tc.field, b)
			}
		})
	}

	// Nothing changed: the old secret key still signs, the app still has
	// its one service, its rules and no registration. (A second apart: a
	// signed request is accepted once, and x-sdk-date counts seconds.)
	time.Sleep(1100 * time.Millisecond)
	c.token("AKIN", "secret-key-in")
	res, b = c.do("GET", services, tok, "")
	c.expect(res, b, http.StatusOK)
	if strings.Count(string(b), `"serInstanceId"`) != 1 {
		t.Fatalf("services after the refusals: %s", b)
	}
	res, b = c.do("GET", appd, admin, "")
	c.expect(res, b, http.StatusOK)
	if res.Header.Get("ETag") != `"1"` || !strings.Contains(string(b), `"dnsRuleId":"d1"`) {
		t.Fatalf("appd_configuration after the refusals: ETag %s %s", res.Header.Get("ETag"), b)
	}
	res, b = c.do("GET", "/mep/mec_app_support/v1/registrations/app-in", tok, "")
	c.expect(res, b, http.StatusNotFound)
}
