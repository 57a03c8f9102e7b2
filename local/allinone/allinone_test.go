package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/kit/aksk"
)

const admin = "admin-token-for-tests-0123456789"

// platform starts the all-in-one on a loopback port and returns its base URL.
func platform(t *testing.T, cfg allinone.Config) (string, *testenv.LogBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	cfg.Listener = ln
	if cfg.DNSAddr == "" {
		cfg.DNSAddr = "127.0.0.1:0"
	}
	cfg.DataDir = t.TempDir()
	cfg.AdminToken = admin
	cfg.Log = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- allinone.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return base, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("platform not healthy: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, bearer string, body string, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, b
}

func (c client) expect(res *http.Response, body []byte, status int) {
	c.t.Helper()
	if res.StatusCode != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, status, body)
	}
	if status >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
		c.t.Fatalf("%s: error without ProblemDetails: %q", res.Request.URL.Path, res.Header.Get("Content-Type"))
	}
}

// token gets a JWT the way EdgeGallery's mep-agent does: Content-Type,
// x-sdk-date and Host signed, empty body.
func (c client) token(ak, sk string) string {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/mep/token", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Host", req.Host)
	if err := aksk.Sign(req, nil, ak, []byte(sk), []string{"content-type", "host", "x-sdk-date"}, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.TokenType != "Bearer" || out.ExpiresIn != 3600 {
		c.t.Fatalf("token: %d %s", res.StatusCode, b)
	}
	return out.AccessToken
}

func (c client) provision(app, ak, sk string) {
	c.t.Helper()
	res, b := c.do("PUT", "/mep/appMng/v1/applications/"+app+"/confs", admin,
		`{"authInfo":{"credentials":{"accessKeyId":"`+ak+`","secretKey":"`+sk+`"}},"appInfo":{"appName":"demo","requiredServices":[]}}`)
	c.expect(res, b, http.StatusCreated)
	if bytes.Contains(b, []byte(sk)) {
		c.t.Fatal("confs answer contains the secret key")
	}
}

// egService is a registration as EdgeGallery's mep-agent marshals it.
const egService = `{"serName":"%s","serCategory":{"href":"","id":"","name":"","version":""},"version":"1.0.1","state":"ACTIVE",
"transportId":"","transportInfo":{"id":"t1","name":"REST","description":"","type":"REST_HTTP","protocol":"HTTP","version":"2.0",
"endpoint":{"addresses":[{"host":"10.0.0.7","port":30005}]},"security":{"oAuth2Info":{"grantTypes":null,"tokenEndpoint":""}},"implSpecificInfo":{}},
"serializer":"JSON","scopeOfLocality":"","consumedLocalOnly":false,"isLocal":false,"livenessInterval":10,"_links":{"self":{"liveness":""}}}`

func TestWalkthrough(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	base, logs := platform(t, allinone.Config{RedisURL: r.URL()})
	c := client{t, base}

	if first := strings.SplitN(logs.String(), "\n", 2)[0]; !strings.Contains(first, "store: external Redis") {
		t.Fatalf("first log line does not announce the store: %s", first)
	}
	c.provision("app-1", "AKAPP1", "secret-key-app-1")
	c.provision("app-2", "AKAPP2", "secret-key-app-2")
	tok1, tok2 := c.token("AKAPP1", "secret-key-app-1"), c.token("AKAPP2", "secret-key-app-2")

	// Register as EdgeGallery's mep-agent does.
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", tok1, strings.Replace(egService, "%s", "eg-svc", 1))
	c.expect(res, b, http.StatusCreated)
	var created struct {
		SerInstanceID string `json:"serInstanceId"`
		Links         struct {
			Self struct{ Href, Liveness string } `json:"self"`
		} `json:"_links"`
	}
	if err := json.Unmarshal(b, &created); err != nil || created.SerInstanceID == "" || created.Links.Self.Liveness == "" {
		t.Fatalf("register answer: %s", b)
	}
	if loc := res.Header.Get("Location"); !strings.HasSuffix(loc, created.Links.Self.Href) {
		t.Fatalf("Location %q vs self %q", loc, created.Links.Self.Href)
	}

	// Another app discovers it.
	res, b = c.do("GET", "/mep/mec_service_mgmt/v1/services?ser_name=eg-svc", tok2, "")
	c.expect(res, b, 200)
	if !bytes.Contains(b, []byte(created.SerInstanceID)) {
		t.Fatalf("discovery misses the service: %s", b)
	}
	// Heartbeat the EdgeGallery way (PUT on _links.self.liveness) and the ETSI way (PATCH).
	for _, m := range []string{"PUT", "PATCH"} {
		res, b = c.do(m, created.Links.Self.Liveness, tok1, `{"state":"ACTIVE"}`)
		c.expect(res, b, http.StatusNoContent)
	}
	res, b = c.do("GET", created.Links.Self.Liveness, tok1, "")
	c.expect(res, b, 200)
	if !bytes.Contains(b, []byte(`"interval":10`)) {
		t.Fatalf("liveness: %s", b)
	}

	// Bad input and foreign apps.
	for _, tc := range []struct {
		name, method, path, bearer, body string
		status                           int
	}{
		{"no token", "GET", "/mep/mec_service_mgmt/v1/services", "", "", 401},
		{"forged token", "GET", "/mep/mec_service_mgmt/v1/services", tok1[:len(tok1)-4] + "AAAA", "", 401},
		{"admin token reads discovery", "GET", "/mep/mec_service_mgmt/v1/services", admin, "", 200},
		{"admin token is not an app token for writes", "POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", admin, strings.Replace(egService, "%s", "x", 1), 403},
		{"app token is not an admin token", "GET", "/mep/appMng/v1/applications/app-1/confs", tok1, "", 401},
		{"foreign app register", "POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", tok2, strings.Replace(egService, "%s", "x", 1), 403},
		{"foreign app delete", "DELETE", created.Links.Self.Href, tok2, "", 403},
		{"foreign heartbeat", "PATCH", created.Links.Self.Liveness, tok2, `{"state":"ACTIVE"}`, 403},
		{"bad heartbeat state", "PATCH", created.Links.Self.Liveness, tok1, `{"state":"INACTIVE"}`, 400},
		{"two filters", "GET", "/mep/mec_service_mgmt/v1/services?ser_name=a&ser_instance_id=b", tok1, "", 400},
		{"unknown parameter", "GET", "/mep/mec_service_mgmt/v1/services?foo=1", tok1, "", 400},
		{"wrong enum", "POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", tok1, strings.Replace(strings.Replace(egService, "%s", "x", 1), `"JSON"`, `"YAML"`, 1), 400},
		{"too large", "POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", tok1, `{"serName":"` + strings.Repeat("a", 70<<10) + `"}`, 413},
		{"stale if-match", "PUT", created.Links.Self.Href, tok1, strings.Replace(egService, "%s", "eg-svc", 1), 412},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client{t, base}
			res, b := c.do(tc.method, tc.path, tc.bearer, tc.body, "If-Match", `"99"`)
			c.expect(res, b, tc.status)
		})
	}
	// The service is untouched by the refused calls.
	res, b = c.do("GET", created.Links.Self.Href, tok1, "")
	c.expect(res, b, 200)
	if res.Header.Get("ETag") != `"1"` {
		t.Fatalf("refused calls changed the service: ETag %s", res.Header.Get("ETag"))
	}

	// Redis goes away: 503 with Retry-After, and nothing half-written after it comes back.
	r.Stop()
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/app-1/services", tok1, strings.Replace(egService, "%s", "during-outage", 1))
	c.expect(res, b, http.StatusServiceUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, b = c.do("GET", "/mep/mec_service_mgmt/v1/services", tok2, "")
		if res.StatusCode == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.expect(res, b, 200)
	if bytes.Contains(b, []byte("during-outage")) || !bytes.Contains(b, []byte(created.SerInstanceID)) {
		t.Fatalf("after the outage: %s", b)
	}

	res, b = c.do("DELETE", created.Links.Self.Href, tok1, "")
	c.expect(res, b, http.StatusNoContent)
	res, b = c.do("GET", "/mep/mec_service_mgmt/v1/services/"+created.SerInstanceID, tok2, "")
	c.expect(res, b, http.StatusNotFound)
}

// Without REDIS_URL and without redis-server, the embedded store serves the
// same walkthrough, and says so loudly first.
func TestEmbeddedStore(t *testing.T) {
	base, logs := platform(t, allinone.Config{NoRedisServer: true})
	if first := strings.SplitN(logs.String(), "\n", 2)[0]; !strings.Contains(first, "EMBEDDED") {
		t.Fatalf("first log line: %s", first)
	}
	c := client{t, base}
	c.provision("app-e", "AKEMB", "secret-key-embedded")
	tok := c.token("AKEMB", "secret-key-embedded")
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/app-e/services", tok, strings.Replace(egService, "%s", "emb", 1))
	c.expect(res, b, http.StatusCreated)
	res, b = c.do("GET", "/mep/mec_service_mgmt/v1/services?ser_name=emb", tok, "")
	c.expect(res, b, 200)
	if !bytes.Contains(b, []byte(`"serName":"emb"`)) {
		t.Fatalf("embedded discovery: %s", b)
	}
	// Lockout works on the embedded store's Lua too.
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("POST", base+"/mep/token", nil)
		_ = aksk.Sign(req, nil, "AKEMB", []byte("wrong-secret"), []string{"host", "x-sdk-date"}, time.Now())
		res, _ := http.DefaultClient.Do(req)
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Fatalf("bad signature %d: %d", i, res.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", base+"/mep/token", nil)
	_ = aksk.Sign(req, nil, "AKEMB", []byte("secret-key-embedded"), []string{"host", "x-sdk-date"}, time.Now())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("locked AK: %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
}
