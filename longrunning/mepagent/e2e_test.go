package mepagent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/mepagent"
	"github.com/kmep-io/kmep/store/kit/aksk"
)

const e2eAdmin = "admin-token-for-mepagent-tests-0123"

// e2eInfo is the app's app_instance_info.yaml, in EdgeGallery's format.
const e2eInfo = `serviceInfoPosts:
  - serName: e2e-camera
    serCategory:
      href: /example/catalogue1
      id: cat-video
      name: Video
      version: v1
    version: 1.0.1
    state: ACTIVE
    transportId: ""
    transportInfo:
      id: 33b13d69-79ff-4d4f-bb61-eb7d81f59b44
      name: REST
      description: REST API
      type: REST_HTTP
      protocol: HTTP
      version: '2.0'
      endpoint:
        addresses:
          - host: camera.default
            port: 32115
      security:
        oAuth2Info:
          grantTypes: []
          tokenEndpoint: ""
      implSpecificInfo: {}
    serializer: JSON
    scopeOfLocality: MEC_HOST
    consumedLocalOnly: false
    isLocal: true
    livenessInterval: 1
serAvailabilityNotificationSubscriptions:
  - subscriptionType: SerAvailabilityNotificationSubscription
    callbackReference: CALLBACK
    links:
      self:
        href: /mecSerMgmtApi/example
    filteringCriteria:
      serNames:
        - e2e-camera
      states: []
      isLocal: true
`

// e2e calls the real platform.
type e2e struct {
	t    *testing.T
	base string
}

func (c e2e) do(method, path, bearer, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (c e2e) provision(app, ak, sk string) {
	c.t.Helper()
	status, b := c.do("PUT", "/mep/appMng/v1/applications/"+app+"/confs", e2eAdmin,
		`{"authInfo":{"credentials":{"accessKeyId":"`+ak+`","secretKey":"`+sk+`"}},"appInfo":{"appName":"`+app+`","requiredServices":[]}}`)
	if status != http.StatusCreated && status != http.StatusOK {
		c.t.Fatalf("provision %s: %d %s", app, status, b)
	}
}

func (c e2e) token(ak, sk string) string {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/mep/token", nil)
	req.Header.Set("Content-Type", "application/json")
	if err := aksk.Sign(req, nil, ak, []byte(sk), []string{"content-type", "host", "x-sdk-date"}, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var tok mepagent.Token
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || res.StatusCode != 200 {
		c.t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	return tok.AccessToken
}

// startPlatform runs the all-in-one platform over a real redis-server.
func startPlatform(t *testing.T, redis testenv.RedisOptions) (string, *testenv.Redis) {
	t.Helper()
	r := testenv.NewRedis(t, redis)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- allinone.Run(ctx, allinone.Config{Listener: ln, DataDir: t.TempDir(), RedisURL: r.URL(),
			AdminToken: e2eAdmin, CallbackAllow: "127.0.0.0/8", Log: slog.New(slog.NewJSONHandler(logs, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("platform: %v", err)
		}
		if t.Failed() {
			t.Logf("platform logs:\n%s", logs.String())
		}
	})
	base := "http://" + ln.Addr().String()
	eventually(t, 10*time.Second, "a healthy platform", func() bool {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	return base, r
}

// notifications is the app's callback server.
type notifications struct {
	mu  sync.Mutex
	got []string
}

func (n *notifications) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	n.mu.Lock()
	n.got = append(n.got, string(b))
	n.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (n *notifications) has(s ...string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, g := range n.got {
		all := true
		for _, x := range s {
			all = all && strings.Contains(g, x)
		}
		if all {
			return true
		}
	}
	return false
}

// The agent against the real all-in-one platform: it registers the app's
// service, which another app discovers; heartbeats flow; the agent's API
// answers the endpoint; the subscription exists; and when the agent stops
// the service is gone at once, and the app's subscription hears REMOVED.
func TestEndToEnd(t *testing.T) {
	base, _ := startPlatform(t, testenv.RedisOptions{})
	c := e2e{t, base}
	c.provision("app-agent", "AKAGENT", "secret-key-agent")
	c.provision("app-other", "AKOTHER", "secret-key-other")
	other := c.token("AKOTHER", "secret-key-other")

	inbox := &notifications{}
	cb := httptest.NewServer(inbox)
	defer cb.Close()
	path := filepath.Join(t.TempDir(), "app_instance_info.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(e2eInfo, "CALLBACK", cb.URL+"/notify", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, unknown, err := mepagent.ParseAppInstanceInfo(data)
	if err != nil || len(unknown) != 0 {
		t.Fatalf("parse: %v %v", err, unknown)
	}
	ag := startAgent(t, mepagent.Config{BaseURL: base, AppInstanceID: "app-agent", AccessKey: "AKAGENT",
		SecretKey: []byte("secret-key-agent"), Info: info, DeregisterOnStop: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})

	// Another app discovers the service.
	var found []struct {
		SerInstanceID string `json:"serInstanceId"`
		State         string `json:"state"`
	}
	eventually(t, 10*time.Second, "the service in discovery", func() bool {
		status, b := c.do("GET", "/mep/mec_service_mgmt/v1/services?ser_name=e2e-camera", other, "")
		return status == 200 && json.Unmarshal(b, &found) == nil && len(found) == 1
	})
	id := found[0].SerInstanceID
	if found[0].State != "ACTIVE" {
		t.Fatalf("discovered %+v", found[0])
	}

	// The app's token, from the agent.
	status, b := get(t, ag.api+mepagent.TokenPath)
	var tok mepagent.Token
	if status != 200 || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("agent token: %d %s", status, b)
	}

	// Heartbeats move the liveness timestamp forward.
	liveness := func() time.Time {
		status, b := c.do("GET", "/mep/mec_service_mgmt/v1/applications/app-agent/services/"+id+"/liveness", tok.AccessToken, "")
		var l struct {
			State     string `json:"state"`
			TimeStamp struct {
				Seconds     int64 `json:"seconds"`
				NanoSeconds int64 `json:"nanoSeconds"`
			} `json:"timeStamp"`
			Interval int `json:"interval"`
		}
		if status != 200 || json.Unmarshal(b, &l) != nil || l.Interval != 1 || l.State != "ACTIVE" {
			t.Fatalf("liveness: %d %s", status, b)
		}
		return time.Unix(l.TimeStamp.Seconds, l.TimeStamp.NanoSeconds)
	}
	t0 := liveness()
	time.Sleep(2 * time.Second)
	if t1 := liveness(); !t1.After(t0) {
		t.Fatalf("liveness timestamp did not move in 2 s: %v then %v", t0, t1)
	}

	// The agent answers the endpoint.
	status, b = get(t, ag.api+mepagent.EndpointPath+"e2e-camera")
	if status != 200 || string(b) != `{"addresses":[{"host":"camera.default","port":32115}]}` {
		t.Fatalf("endpoint: %d %s", status, b)
	}
	if status, b = get(t, ag.api+mepagent.EndpointPath+"no-such-service"); status != 404 {
		t.Fatalf("endpoint of nothing: %d %s", status, b)
	}

	// The subscription exists.
	var list struct {
		Links struct {
			Subscriptions []struct{ Href string } `json:"subscriptions"`
		} `json:"_links"`
	}
	eventually(t, 10*time.Second, "the subscription", func() bool {
		status, b := c.do("GET", "/mep/mec_service_mgmt/v1/applications/app-agent/subscriptions", tok.AccessToken, "")
		return status == 200 && json.Unmarshal(b, &list) == nil && len(list.Links.Subscriptions) == 1
	})
	status, b = c.do("GET", list.Links.Subscriptions[0].Href, tok.AccessToken, "")
	if status != 200 || !strings.Contains(string(b), cb.URL+"/notify") || !strings.Contains(string(b), `"e2e-camera"`) {
		t.Fatalf("subscription: %d %s", status, b)
	}

	// Stopping the agent deregisters the service at once.
	if err := ag.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if status, b = c.do("GET", "/mep/mec_service_mgmt/v1/services/"+id, other, ""); status != http.StatusNotFound {
		t.Fatalf("after stop: %d %s", status, b)
	}
	eventually(t, 10*time.Second, "the REMOVED notification", func() bool {
		return inbox.has(`"SerAvailabilityNotification"`, `"REMOVED"`, id)
	})
	if !strings.Contains(ag.logs.String(), "service deregistered") {
		t.Fatalf("deregistration not logged:\n%s", ag.logs.String())
	}
}

// Redis going away behind the platform looks like 503s to the agent: it
// waits for its token, then registers; heartbeats resume after an outage.
func TestEndToEndRedisOutages(t *testing.T) {
	base, r := startPlatform(t, testenv.RedisOptions{AOF: true})
	c := e2e{t, base}
	c.provision("app-agent", "AKAGENT", "secret-key-agent")
	c.provision("app-other", "AKOTHER", "secret-key-other")
	other := c.token("AKOTHER", "secret-key-other")
	info, _, err := mepagent.ParseAppInstanceInfo([]byte(strings.Replace(e2eInfo, "CALLBACK", "http://127.0.0.1:9/notify", 1)))
	if err != nil {
		t.Fatal(err)
	}

	r.Stop()
	ag := startAgent(t, mepagent.Config{BaseURL: base, AppInstanceID: "app-agent", AccessKey: "AKAGENT",
		SecretKey: []byte("secret-key-agent"), Info: info, DeregisterOnStop: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	time.Sleep(time.Second)
	if status, b := get(t, ag.api+mepagent.TokenPath); status != http.StatusPreconditionFailed {
		t.Fatalf("token while the platform's store is down: %d %s", status, b)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	var found []struct {
		SerInstanceID string `json:"serInstanceId"`
	}
	eventually(t, 15*time.Second, "the service in discovery", func() bool {
		status, b := c.do("GET", "/mep/mec_service_mgmt/v1/services?ser_name=e2e-camera", other, "")
		return status == 200 && json.Unmarshal(b, &found) == nil && len(found) == 1
	})
	_, b := get(t, ag.api+mepagent.TokenPath)
	var tok mepagent.Token
	if err := json.Unmarshal(b, &tok); err != nil {
		t.Fatal(err)
	}
	livenessPath := "/mep/mec_service_mgmt/v1/applications/app-agent/services/" + found[0].SerInstanceID + "/liveness"
	beat := func() (time.Time, string) {
		status, b := c.do("GET", livenessPath, tok.AccessToken, "")
		var l struct {
			State     string `json:"state"`
			TimeStamp struct {
				Seconds     int64 `json:"seconds"`
				NanoSeconds int64 `json:"nanoSeconds"`
			} `json:"timeStamp"`
		}
		if status != 200 || json.Unmarshal(b, &l) != nil {
			return time.Time{}, ""
		}
		return time.Unix(l.TimeStamp.Seconds, l.TimeStamp.NanoSeconds), l.State
	}
	before, _ := beat()

	r.Stop()
	time.Sleep(1500 * time.Millisecond)
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	outageEnd := time.Now()
	eventually(t, 15*time.Second, "heartbeats after the outage", func() bool {
		at, state := beat()
		return state == "ACTIVE" && at.After(before) && at.After(outageEnd)
	})
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	if status, b := c.do("GET", "/mep/mec_service_mgmt/v1/services/"+found[0].SerInstanceID, other, ""); status != http.StatusNotFound {
		t.Fatalf("after stop: %d %s", status, b)
	}
}
