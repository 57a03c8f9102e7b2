package allinone_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
)

// TestCallbackPolicy: the all-in-one refuses callbacks that reach loopback
// through an IPv6 form carrying 127.0.0.1, and those in KMEP_CALLBACK_DENY
// (directly or through NAT64), with a 400 naming callbackReference that
// stores nothing; other private ranges stay allowed.
func TestCallbackPolicy(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackDeny: "10.0.0.0/8"})
	c := client{t, base}
	c.provision("cb", "AKCB", "secret-key-cb")
	tok := c.token("AKCB", "secret-key-cb")
	subs := "/mep/mec_service_mgmt/v1/applications/cb/subscriptions"
	sub := func(cb string) string {
		return `{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"` + cb + `"}`
	}
	for _, cb := range []string{
		"http://[::127.0.0.1]/cb",
		"http://[64:ff9b::127.0.0.1]/cb",
		"http://[64:ff9b:1::7f00:1]/cb",
		"http://[2002:7f00:1::1]/cb",
		"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/cb",
		"http://10.1.2.3:8080/cb",
		"http://[::ffff:10.1.2.3]/cb",
		"http://[64:ff9b::a01:203]/cb",
	} {
		t.Run(cb, func(t *testing.T) {
			c := client{t, base}
			res, b := c.do("POST", subs, tok, sub(cb), "Content-Type", "application/json")
			c.expect(res, b, http.StatusBadRequest)
			if !strings.Contains(string(b), `"field":"callbackReference"`) {
				t.Fatalf("refused callback: %s", b)
			}
		})
	}
	res, b := c.do("POST", subs, tok, sub("http://192.168.7.7:8080/cb"), "Content-Type", "application/json")
	c.expect(res, b, http.StatusCreated)
	res, b = c.do("GET", subs, tok, "")
	c.expect(res, b, http.StatusOK)
	if n := strings.Count(string(b), `"href"`); n != 2 { // the list's self link and one subscription
		t.Fatalf("subscriptions after the refusals: %s", b)
	}
}
