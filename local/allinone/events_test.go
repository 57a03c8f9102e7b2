package allinone_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
)

// inbox is a subscriber's callback server that records notifications.
type inbox struct {
	mu    sync.Mutex
	got   []map[string]any
	added chan struct{}
	reply func(n map[string]any) int // status to answer; nil: 204
}

func newInbox() *inbox { return &inbox{added: make(chan struct{}, 100)} }

func (b *inbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n map[string]any
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &n)
	status := http.StatusNoContent
	if b.reply != nil {
		status = b.reply(n)
	}
	if status < 300 {
		b.mu.Lock()
		b.got = append(b.got, n)
		b.mu.Unlock()
		b.added <- struct{}{}
	}
	w.WriteHeader(status)
}

// wait returns the first notification for which match is true.
func (b *inbox) wait(t *testing.T, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		for _, n := range b.got {
			if match(n) {
				b.mu.Unlock()
				return n
			}
		}
		b.mu.Unlock()
		select {
		case <-b.added:
		case <-deadline:
			t.Fatalf("no matching notification within %v; got %v", timeout, b.got)
		}
	}
}

func serviceChange(name, change string) func(map[string]any) bool {
	return func(n map[string]any) bool {
		refs, _ := n["serviceReferences"].([]any)
		for _, r := range refs {
			m, _ := r.(map[string]any)
			if m["serName"] == name && m["changeType"] == change {
				return n["notificationType"] == "SerAvailabilityNotification"
			}
		}
		return false
	}
}

const svcBody = `{"serName":"%s","version":"1.0","state":"ACTIVE","serializer":"JSON",
"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",
"endpoint":{"addresses":[{"host":"10.0.0.5","port":8080}]},"security":{}}}`

// A service change reaches a subscriber's callback through the whole
// pipeline: store change stream → relay → embedded broker (manifests'
// Triggers) → notify → callback; and an app's termination notifies it,
// waits for its confirmation and removes its services (REMOVED reaches the
// other app's subscription).
func TestNotificationsEndToEnd(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8"})
	c := client{t, base}
	c.provision("prod", "AKPROD", "secret-key-prod")
	c.provision("cons", "AKCONS", "secret-key-cons")
	prod, cons := c.token("AKPROD", "secret-key-prod"), c.token("AKCONS", "secret-key-cons")

	consInbox := newInbox()
	consSrv := httptest.NewServer(consInbox)
	defer consSrv.Close()
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/cons/subscriptions", cons,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+consSrv.URL+`/cb","filteringCriteria":{"serNames":["e2e-svc"]}}`)
	c.expect(res, b, http.StatusCreated)
	// A forbidden callback is refused with the field named.
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/cons/subscriptions", cons,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://169.254.169.254/latest"}`)
	c.expect(res, b, http.StatusBadRequest)
	if !strings.Contains(string(b), `"field":"callbackReference"`) {
		t.Fatalf("refused callback: %s", b)
	}

	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/prod/services", prod, strings.Replace(svcBody, "%s", "e2e-svc", 1))
	c.expect(res, b, http.StatusCreated)
	consInbox.wait(t, 10*time.Second, serviceChange("e2e-svc", "ADDED"))

	// The producer subscribes to its own termination and confirms it.
	prodInbox := newInbox()
	prodInbox.reply = func(n map[string]any) int {
		if n["notificationType"] == "AppTerminationNotification" {
			go c.do("POST", "/mep/mec_app_support/v1/applications/prod/confirm_termination", prod, `{"operationAction":"TERMINATING"}`)
		}
		return http.StatusNoContent
	}
	prodSrv := httptest.NewServer(prodInbox)
	defer prodSrv.Close()
	res, b = c.do("POST", "/mep/mec_app_support/v1/applications/prod/subscriptions", prod,
		`{"subscriptionType":"AppTerminationNotificationSubscription","callbackReference":"`+prodSrv.URL+`/term","appInstanceId":"prod"}`)
	c.expect(res, b, http.StatusCreated)

	res, b = c.do("POST", "/mepcfg/app_lcm/v1/applications/prod/terminate", admin, `{"gracefulTimeout":20}`)
	c.expect(res, b, http.StatusOK)
	if !strings.Contains(string(b), `"confirmed":true`) {
		t.Fatalf("termination not confirmed: %s", b)
	}
	term := prodInbox.wait(t, time.Second, func(n map[string]any) bool { return n["notificationType"] == "AppTerminationNotification" })
	if term["operationAction"] != "TERMINATING" || term["maxGracefulTimeout"] != float64(20) {
		t.Fatalf("termination notification: %v", term)
	}
	consInbox.wait(t, 10*time.Second, serviceChange("e2e-svc", "REMOVED"))
	// The producer's credentials are gone.
	res, b = c.do("GET", "/mep/appMng/v1/applications/prod/confs", admin, "")
	c.expect(res, b, http.StatusNotFound)
}

// A subscriber that is down for a while still gets every notification once
// it is back: notify's retries give up, the broker retries the event per
// the Trigger's delivery (exponential from 0.5 s), and notify's done
// markers keep delivered callbacks from getting it twice.
func TestSubscriberDownThenBack(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8"})
	c := client{t, base}
	c.provision("p", "AKP1", "secret-key-p1")
	c.provision("s", "AKS1", "secret-key-s1")
	prod, sub := c.token("AKP1", "secret-key-p1"), c.token("AKS1", "secret-key-s1")

	// Reserve the callback's address, then take it down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/s/subscriptions", sub,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://`+addr+`/cb"}`)
	c.expect(res, b, http.StatusCreated)
	names := []string{"down-1", "down-2", "down-3"}
	for _, n := range names {
		res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/p/services", prod, strings.Replace(svcBody, "%s", n, 1))
		c.expect(res, b, http.StatusCreated)
	}
	outage := 3 * time.Second // KMEP_TEST_OUTAGE=30s runs the 30 s scenario
	if v := os.Getenv("KMEP_TEST_OUTAGE"); v != "" {
		if outage, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(outage) // the subscriber stays down
	box := newInbox()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: box}
	go srv.Serve(ln)
	defer srv.Close()
	for _, n := range names {
		box.wait(t, outage+60*time.Second, serviceChange(n, "ADDED"))
	}
}

func serviceState(name, state string) func(map[string]any) bool {
	return func(n map[string]any) bool {
		refs, _ := n["serviceReferences"].([]any)
		for _, r := range refs {
			m, _ := r.(map[string]any)
			if m["serName"] == name && m["changeType"] == "STATE_CHANGED" && m["state"] == state {
				return true
			}
		}
		return false
	}
}

// A service that misses its heartbeat is SUSPENDED by the in-process
// reaper (subscribers get STATE_CHANGED), and a heartbeat restores it.
func TestMissedHeartbeatSuspends(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8"})
	c := client{t, base}
	c.provision("hb", "AKHB1", "secret-key-hb1")
	c.provision("watch", "AKW1", "secret-key-w1")
	prod, watch := c.token("AKHB1", "secret-key-hb1"), c.token("AKW1", "secret-key-w1")
	box := newInbox()
	srv := httptest.NewServer(box)
	defer srv.Close()
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/watch/subscriptions", watch,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+srv.URL+`/cb","filteringCriteria":{"serNames":["hb-svc"]}}`)
	c.expect(res, b, http.StatusCreated)
	body := strings.Replace(strings.Replace(svcBody, "%s", "hb-svc", 1), `"serializer":"JSON",`, `"serializer":"JSON","livenessInterval":1,`, 1)
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/hb/services", prod, body)
	c.expect(res, b, http.StatusCreated)
	loc := res.Header.Get("Location")
	path := loc[strings.Index(loc, "/mep/"):]
	box.wait(t, 10*time.Second, serviceState("hb-svc", "SUSPENDED"))
	res, b = c.do("GET", path, prod, "")
	c.expect(res, b, 200)
	if !strings.Contains(string(b), `"state":"SUSPENDED"`) {
		t.Fatalf("service after a missed heartbeat: %s", b)
	}
	res, b = c.do("PATCH", path+"/liveness", prod, `{"state":"ACTIVE"}`)
	c.expect(res, b, http.StatusNoContent)
	box.wait(t, 10*time.Second, serviceState("hb-svc", "ACTIVE"))
}
