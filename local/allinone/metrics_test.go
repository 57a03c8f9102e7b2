package allinone_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/kit/aksk"
)

// scrape is one GET /metrics, parsed.
type scrape struct {
	fams map[string]*dto.MetricFamily
	text string
}

func getMetrics(t *testing.T, base string) scrape {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, b)
	}
	return scrape{fams: fams, text: string(b)}
}

// value sums the series of name whose labels include labels (name=value
// pairs): a counter's or gauge's value, a histogram's count.
func (s scrape) value(name string, labels ...string) float64 {
	var sum float64
	f := s.fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// After a registration, a heartbeat, a refused token request and a
// notification, the all-in-one's /metrics shows each counter moved by
// exactly what happened, under route templates, naming no app.
func TestMetricsCountWhatHappened(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, _ := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8"})
	c := client{t, base}
	const prodApp, consApp = "metrics-prod-7f3a", "metrics-cons-9b2c"
	c.provision(prodApp, "AKMETRICSPROD", "secret-key-metrics-prod")
	c.provision(consApp, "AKMETRICSCONS", "secret-key-metrics-cons")
	prod, cons := c.token("AKMETRICSPROD", "secret-key-metrics-prod"), c.token("AKMETRICSCONS", "secret-key-metrics-cons")
	inbox := newInbox()
	srv := httptest.NewServer(inbox)
	defer srv.Close()
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/"+consApp+"/subscriptions", cons,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+srv.URL+`/cb","filteringCriteria":{"serNames":["metrics-svc"]}}`)
	c.expect(res, b, http.StatusCreated)

	before := getMetrics(t, base)
	if got := before.value("kmep_token_issued_total"); got != 2 {
		t.Errorf("kmep_token_issued_total = %v, want 2", got)
	}

	// A token request signed with the wrong secret: refused, bad signature.
	req, _ := http.NewRequest("POST", base+"/mep/token", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/json")
	if err := aksk.Sign(req, nil, "AKMETRICSPROD", []byte("not-the-secret"), []string{"content-type", "host", "x-sdk-date"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	tres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tres.Body.Close()
	if tres.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", tres.StatusCode)
	}
	// A registration with liveness, and one heartbeat.
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/"+prodApp+"/services", prod, fmt.Sprintf(egService, "metrics-svc"))
	c.expect(res, b, http.StatusCreated)
	loc := res.Header.Get("Location")
	sid := loc[strings.LastIndex(loc, "/")+1:]
	res, b = c.do("PATCH", "/mep/mec_service_mgmt/v1/applications/"+prodApp+"/services/"+sid+"/liveness", prod, `{"state":"ACTIVE"}`)
	c.expect(res, b, http.StatusNoContent)
	inbox.wait(t, 10*time.Second, serviceChange("metrics-svc", "ADDED"))

	const services = "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services"
	var after scrape
	// notify counts an event once its Handle returns, just after the
	// callback answered, and the broker once notify has answered it.
	waitUntil(t, 5*time.Second, "the delivery counted", func() bool {
		after = getMetrics(t, base)
		moved := func(name, outcome string) bool {
			return after.value(name, "outcome", outcome) > before.value(name, "outcome", outcome)
		}
		return moved("kmep_notify_deliveries_total", "delivered") && moved("kmep_broker_deliveries_total", "delivered")
	})
	for _, tc := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"kmep_services_registrations_total", nil, 1},
		{"kmep_services_heartbeats_total", nil, 1},
		{"kmep_token_refusals_total", []string{"reason", "bad_signature"}, 1},
		{"kmep_token_refusals_total", []string{"reason", "replay"}, 0},
		{"kmep_token_issued_total", nil, 0},
		{"kmep_token_lockouts_total", nil, 0},
		{"kmep_notify_deliveries_total", []string{"outcome", "delivered"}, 1},
		{"kmep_notify_deliveries_total", []string{"outcome", "failed"}, 0},
		{"kmep_notify_callback_duration_seconds", nil, 1},
		{"kmep_relay_published_total", nil, 1},
		{"kmep_relay_lag_seconds", nil, 1},
		{"kmep_broker_deliveries_total", []string{"outcome", "delivered"}, 1},
		{"kmep_http_requests_total", []string{"route", services, "method", "POST", "code", "201"}, 1},
		{"kmep_http_requests_total", []string{"route", "/mep/token", "code", "401"}, 1},
		{"kmep_http_request_duration_seconds", []string{"route", services, "method", "POST"}, 1},
		{"kmep_http_requests_total", []string{"route", services + "/{serviceId}/liveness", "method", "PATCH", "code", "204"}, 1},
	} {
		if d := after.value(tc.name, tc.labels...) - before.value(tc.name, tc.labels...); d != tc.delta {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, d, tc.delta)
		}
	}
	if got := after.value("kmep_services", "state", "ACTIVE"); got != 1 {
		t.Errorf(`kmep_services{state="ACTIVE"} = %v, want 1`, got)
	}
	if got := after.value("kmep_discovery_cache_staleness_seconds"); got < 0 || got > 5 {
		t.Errorf("kmep_discovery_cache_staleness_seconds = %v, want a few seconds at most", got)
	}
	for _, secret := range []string{prodApp, consApp, sid, "AKMETRICS", "secret-key", admin, prod, cons} {
		if strings.Contains(after.text, secret) {
			t.Errorf("/metrics shows %q", secret)
		}
	}
}
