package mepagent_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/kmep-io/kmep/longrunning/mepagent"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func service(name string, interval int) mepagent.ServiceInfo {
	return mepagent.ServiceInfo{SerName: name, Version: "1.0", State: "ACTIVE", Serializer: "JSON",
		TransportInfo: &mepagent.TransportInfo{ID: "t1", Name: "REST", Type: "REST_HTTP", Protocol: "HTTP", Version: "2.0",
			Endpoint: &mepagent.EndPointInfo{Addresses: []mepagent.Address{{Host: "10.0.0.7", Port: 30005}}}},
		LivenessInterval: interval}
}

func withServices(base string, s ...mepagent.ServiceInfo) mepagent.Config {
	return mepagent.Config{BaseURL: base, Info: mepagent.AppInstanceInfo{ServiceInfoPosts: s}}
}

func TestTokenRenewedAt80PercentOfItsLifetime(t *testing.T) {
	f, base := newFakePlatform(t)
	f.expiresIn = 1
	start := time.Now()
	ag := startAgent(t, mepagent.Config{BaseURL: base})
	eventually(t, 10*time.Second, "three tokens", func() bool {
		n := 0
		f.snapshot(func(f *fakePlatform) { n = f.tokensIssued })
		return n >= 3
	})
	// Renewed at 0.8 s each: the third token cannot come before 1.6 s
	// (a lower bound only: a slow machine makes it later, never earlier).
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("three tokens after %v: renewed too early", el)
	}
	status, body := get(t, ag.api+mepagent.TokenPath)
	var tok mepagent.Token
	if status != 200 || json.Unmarshal(body, &tok) != nil || !strings.HasPrefix(tok.AccessToken, "tok-") ||
		tok.TokenType != "Bearer" || tok.ExpiresIn > 1 {
		t.Fatalf("GET token: %d %s", status, body)
	}
}

func TestTokenAPIBeforeTheFirstToken(t *testing.T) {
	f, base := newFakePlatform(t)
	down := true
	f.tokenFn = func(int) int {
		if down {
			return 503
		}
		return 0
	}
	ag := startAgent(t, mepagent.Config{BaseURL: base})
	time.Sleep(100 * time.Millisecond)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{mepagent.TokenPath, 412},
		{mepagent.EndpointPath + "any", 503},
		{"/healthz", 200},
		{"/mep-agent/v1/nothing", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			status, body := get(t, ag.api+tc.path)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
		})
	}
	f.snapshot(func(*fakePlatform) { down = false })
	eventually(t, 5*time.Second, "a token", func() bool {
		status, _ := get(t, ag.api+mepagent.TokenPath)
		return status == 200
	})
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup installs the platform's misbehaviour.
		setup func(f *fakePlatform)
		// registers and minTokens are what the platform sees in the end.
		registers, minTokens int
		// settled says the outcome is final (nothing more will happen).
		registered bool
		log        string
	}{
		{name: "503 on registration, then success",
			setup:     func(f *fakePlatform) { f.registerFn = failFirst(3, 503) },
			registers: 4, minTokens: 1, registered: true},
		{name: "platform down for the token, then success",
			setup:     func(f *fakePlatform) { f.tokenFn = failFirst(3, 502) },
			registers: 1, minTokens: 1, registered: true},
		{name: "401 renews the token",
			setup:     func(f *fakePlatform) { f.registerFn = failFirst(1, 401) },
			registers: 2, minTokens: 2, registered: true},
		{name: "400 is not retried",
			setup:     func(f *fakePlatform) { f.registerFn = func(int) int { return 400 } },
			registers: 1, minTokens: 1, registered: false, log: "not retrying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, base := newFakePlatform(t)
			tc.setup(f)
			ag := startAgent(t, withServices(base, service("svc", 0)))
			eventually(t, 5*time.Second, "the registrations", func() bool {
				n := 0
				f.snapshot(func(f *fakePlatform) { n = f.registers })
				return n >= tc.registers
			})
			// Ten more backoff periods: no further attempt may come.
			time.Sleep(500 * time.Millisecond)
			f.snapshot(func(f *fakePlatform) {
				if f.registers != tc.registers || f.tokensIssued < tc.minTokens || (len(f.services) == 1) != tc.registered {
					t.Fatalf("registers %d (want %d), tokens %d (want >= %d), services %d",
						f.registers, tc.registers, f.tokensIssued, tc.minTokens, len(f.services))
				}
				// Every attempt of the one registration carries its one key,
				// so a retry finds what an attempt whose answer was lost made.
				if keys := slices.Compact(slices.Clone(f.keys)); len(keys) != 1 || keys[0] == "" {
					t.Fatalf("Idempotency-Keys of the attempts: %q, want one key for all", f.keys)
				}
			})
			if !strings.Contains(ag.logs.String(), tc.log) {
				t.Fatalf("logs lack %q", tc.log)
			}
		})
	}
}

func TestHeartbeats(t *testing.T) {
	beats := func(f *fakePlatform, id string) int {
		n := 0
		f.snapshot(func(f *fakePlatform) { n = f.heartbeats[id] })
		return n
	}
	t.Run("flow at the interval", func(t *testing.T) {
		t.Parallel()
		f, base := newFakePlatform(t)
		startAgent(t, withServices(base, service("svc", 1), service("quiet", 0)))
		eventually(t, 5*time.Second, "two heartbeats", func() bool { return beats(f, "svc-1")+beats(f, "svc-2") >= 2 })
		f.snapshot(func(f *fakePlatform) {
			if len(f.heartbeats) != 1 {
				t.Fatalf("a service without livenessInterval was heartbeated: %v", f.heartbeats)
			}
		})
	})
	t.Run("404 registers again", func(t *testing.T) {
		t.Parallel()
		f, base := newFakePlatform(t)
		ag := startAgent(t, withServices(base, service("svc", 1)))
		eventually(t, 5*time.Second, "a heartbeat", func() bool { return beats(f, "svc-1") >= 1 })
		f.lose("svc-1")
		eventually(t, 5*time.Second, "a heartbeat of the new registration", func() bool { return beats(f, "svc-2") >= 1 })
		f.snapshot(func(f *fakePlatform) {
			if f.registers != 2 || len(f.services) != 1 {
				t.Fatalf("registers %d, services %v", f.registers, f.services)
			}
		})
		if !strings.Contains(ag.logs.String(), "lost the service") {
			t.Fatal("the re-registration is not logged")
		}
	})
	t.Run("401 renews the token", func(t *testing.T) {
		t.Parallel()
		f, base := newFakePlatform(t)
		startAgent(t, withServices(base, service("svc", 1)))
		eventually(t, 5*time.Second, "a heartbeat", func() bool { return beats(f, "svc-1") >= 1 })
		f.revokeTokens()
		eventually(t, 5*time.Second, "heartbeats with a new token", func() bool { return beats(f, "svc-1") >= 3 })
		f.snapshot(func(f *fakePlatform) {
			if f.tokensIssued < 2 || f.registers != 1 {
				t.Fatalf("tokens %d, registers %d", f.tokensIssued, f.registers)
			}
		})
	})
	t.Run("503 does not stop them", func(t *testing.T) {
		t.Parallel()
		f, base := newFakePlatform(t)
		f.heartbeatFn = func(n int) int {
			if n >= 2 && n <= 4 {
				return 503
			}
			return 0
		}
		startAgent(t, withServices(base, service("svc", 1)))
		eventually(t, 8*time.Second, "heartbeats after the outage", func() bool { return beats(f, "svc-1") >= 6 })
		f.snapshot(func(f *fakePlatform) {
			if f.registers != 1 {
				t.Fatalf("registers %d", f.registers)
			}
		})
	})
}

func TestDeregisterOnStop(t *testing.T) {
	for _, tc := range []struct {
		deregister bool
		deleted    []string
	}{{true, []string{"svc-1"}}, {false, nil}} {
		t.Run(fmt.Sprint(tc.deregister), func(t *testing.T) {
			f, base := newFakePlatform(t)
			cfg := withServices(base, service("svc", 0))
			cfg.DeregisterOnStop = tc.deregister
			ag := startAgent(t, cfg)
			eventually(t, 5*time.Second, "the registration", func() bool {
				n := 0
				f.snapshot(func(f *fakePlatform) { n = len(f.services) })
				return n == 1
			})
			if err := ag.stop(); err != nil {
				t.Fatal(err)
			}
			f.snapshot(func(f *fakePlatform) {
				if !slices.Equal(f.deleted, tc.deleted) {
					t.Fatalf("deleted %v, want %v", f.deleted, tc.deleted)
				}
			})
		})
	}
}

func TestEndpoint(t *testing.T) {
	f, base := newFakePlatform(t)
	inactive, active := service("camera", 0), service("camera", 0)
	inactive.State = "INACTIVE"
	inactive.TransportInfo.Endpoint = &mepagent.EndPointInfo{URIs: []string{"http://old:1"}}
	active.TransportInfo.Endpoint = &mepagent.EndPointInfo{Addresses: []mepagent.Address{{Host: "cam.default", Port: 8080}}}
	ag := startAgent(t, withServices(base, inactive, active))
	eventually(t, 5*time.Second, "the registrations", func() bool {
		n := 0
		f.snapshot(func(f *fakePlatform) { n = len(f.services) })
		return n == 2
	})
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"camera", 200, `{"addresses":[{"host":"cam.default","port":8080}]}`},
		{"nothing", 404, ""},
		{"a,b", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, ag.api+mepagent.EndpointPath+tc.name)
			if status != tc.status || (tc.body != "" && string(body) != tc.body) {
				t.Fatalf("%d %s", status, body)
			}
		})
	}
}

func TestSubscriptionsAreCreatedOnce(t *testing.T) {
	f, base := newFakePlatform(t)
	f.addSub(`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://app:1/a",
		"_links":{"self":{"href":"/x"}},"filteringCriteria":{"serNames":["camera"],"isLocal":false}}`)
	cfg := mepagent.Config{BaseURL: base, Info: mepagent.AppInstanceInfo{SerAvailabilityNotificationSubscriptions: []mepagent.Subscription{
		{CallbackReference: "http://app:1/a", FilteringCriteria: &mepagent.FilteringCriteria{SerNames: []string{"camera"}, SerInstanceIDs: []string{}}},
		{SubscriptionType: "SerAvailabilityNotificationSubscription", CallbackReference: "http://app:1/b"},
	}}}
	count := func() (created, total int) {
		f.snapshot(func(f *fakePlatform) { created, total = f.subsCreated, len(f.subs) })
		return
	}
	for run := range 2 {
		ag := startAgent(t, cfg)
		eventually(t, 5*time.Second, "the subscriptions", func() bool { _, n := count(); return n == 2 })
		time.Sleep(100 * time.Millisecond)
		if err := ag.stop(); err != nil {
			t.Fatal(err)
		}
		if created, total := count(); created != 1 || total != 2 {
			t.Fatalf("run %d: created %d, total %d: an equal subscription was not adopted", run, created, total)
		}
	}
}

func TestParseAppInstanceInfo(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("testdata", "app_instance_info.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		yaml          string
		services      int
		subscriptions int
		unknown       []string
		err           string
	}{
		{name: "EdgeGallery sample", yaml: string(sample), services: 2, subscriptions: 1, unknown: []string{
			"deployedBy (line 5)",
			"serviceInfoPosts[0].transportInfo.color (line 32)",
			"serviceInfoPosts[1]._links (line 59)",
			"serAvailabilityNotificationSubscriptions[0].filteringCriteria.notes (line 81)",
		}},
		{name: "empty file"},
		{name: "only a comment", yaml: "# nothing\n"},
		{name: "no services", yaml: "serviceInfoPosts: []\n"},
		{name: "not a mapping", yaml: "- a\n- b\n", err: "mapping"},
		{name: "wrong type", yaml: "serviceInfoPosts:\n  - serName: [a]\n", err: "line 2"},
		{name: "not YAML", yaml: "serviceInfoPosts: [\n", err: "app_instance_info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, unknown, err := mepagent.ParseAppInstanceInfo([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(info.ServiceInfoPosts) != tc.services || len(info.SerAvailabilityNotificationSubscriptions) != tc.subscriptions ||
				!slices.Equal(unknown, tc.unknown) {
				t.Fatalf("services %d, subscriptions %d, unknown %q", len(info.ServiceInfoPosts),
					len(info.SerAvailabilityNotificationSubscriptions), unknown)
			}
		})
	}
}

// The sample file's services reach the platform as MEC 011 ServiceInfo
// bodies (testdata/register_bodies.golden.json).
func TestRegistrationBodies(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("testdata", "app_instance_info.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := mepagent.ParseAppInstanceInfo(sample)
	if err != nil {
		t.Fatal(err)
	}
	info.SerAvailabilityNotificationSubscriptions = nil
	f, base := newFakePlatform(t)
	startAgent(t, mepagent.Config{BaseURL: base, Info: info})
	var bodies []json.RawMessage
	eventually(t, 5*time.Second, "the registrations", func() bool {
		f.snapshot(func(f *fakePlatform) {
			bodies = bodies[:0]
			for _, b := range f.registered {
				bodies = append(bodies, b)
			}
		})
		return len(bodies) == 2
	})
	slices.SortFunc(bodies, func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
	got, _ := json.MarshalIndent(bodies, "", "  ")
	got = append(got, '\n')
	golden := filepath.Join("testdata", "register_bodies.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("registration bodies differ from %s (run with -update to accept):\n%s", golden, got)
	}
}

func TestNew(t *testing.T) {
	ok := mepagent.Config{BaseURL: "http://127.0.0.1:8080", AppInstanceID: "app-1", AccessKey: "AK", SecretKey: []byte("sk")}
	for _, tc := range []struct {
		name string
		edit func(c *mepagent.Config)
		err  string
	}{
		{"valid", func(*mepagent.Config) {}, ""},
		{"https with a trailing slash", func(c *mepagent.Config) { c.BaseURL = "https://mep:8443/" }, ""},
		{"no base URL", func(c *mepagent.Config) { c.BaseURL = "" }, "BaseURL"},
		{"not http", func(c *mepagent.Config) { c.BaseURL = "ftp://mep" }, "BaseURL"},
		{"no host", func(c *mepagent.Config) { c.BaseURL = "http://" }, "BaseURL"},
		{"no app instance", func(c *mepagent.Config) { c.AppInstanceID = "" }, "AppInstanceID"},
		{"app instance with a slash", func(c *mepagent.Config) { c.AppInstanceID = "a/b" }, "AppInstanceID"},
		{"no AK", func(c *mepagent.Config) { c.AccessKey = "" }, "AccessKey"},
		{"no SK", func(c *mepagent.Config) { c.SecretKey = nil }, "SecretKey"},
		{"unencodable implSpecificInfo", func(c *mepagent.Config) {
			s := service("x", 0)
			s.TransportInfo.ImplSpecificInfo = map[string]any{"f": func() {}}
			c.Info.ServiceInfoPosts = []mepagent.ServiceInfo{s}
		}, "serviceInfoPosts[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := mepagent.New(cfg, mepagent.Deps{})
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// Every call to the platform is a client span whose traceparent it
// carries (the platform's functions continue that trace); the spans name
// the method and host, never the token, the AK/SK signature or the path's
// query.
func TestCallsCarryTraceContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	f, base := newFakePlatform(t)
	ag := startAgentWithDeps(t, withServices(base, service("svc", 1)),
		mepagent.Deps{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	beat := func() bool {
		n := 0
		f.snapshot(func(f *fakePlatform) { n = f.heartbeats["svc-1"] })
		return n >= 1
	}
	eventually(t, 5*time.Second, "a heartbeat", beat)
	// Once Run has returned, every call's span has ended.
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		sc := s.SpanContext()
		spans["00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-"+sc.TraceFlags().String()] = s
	}
	var headers []string
	f.snapshot(func(f *fakePlatform) { headers = append(headers, f.traceparents...) })
	if len(headers) < 3 { // the token, the registration, a heartbeat
		t.Fatalf("%d requests, want at least 3", len(headers))
	}
	for i, h := range headers {
		s, ok := spans[h]
		if !ok {
			t.Fatalf("request %d carried traceparent %q, the context of none of the %d client spans", i, h, len(spans))
		}
		if s.SpanKind() != oteltrace.SpanKindClient || s.Parent().IsValid() {
			t.Errorf("request %d: span %q kind %v parent %v, want a root client span", i, s.Name(), s.SpanKind(), s.Parent())
		}
		for _, kv := range s.Attributes() {
			if v := kv.Value.Emit(); strings.Contains(v, "tok-") || strings.Contains(v, fakeAK) || strings.Contains(v, fakeSK) {
				t.Errorf("span attribute %s = %q holds a credential", kv.Key, v)
			}
		}
	}
}
