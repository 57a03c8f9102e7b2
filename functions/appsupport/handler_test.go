package appsupport_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/appsupport"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// base is the API root every path below hangs from.
const base = appsupport.BasePath

// srv is the redis-server the tests share; each test has a prefix of its own.
var srv *testenv.Redis

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

// now is the fixed clock of the store and the handler.
var now = time.Date(2026, 6, 23, 10, 15, 0, 123456789, time.UTC)

// env is one handler over its own store prefix.
type env struct {
	h  http.Handler
	st *store.Store
}

type envOptions struct {
	// redis is the server; nil: the shared one.
	redis *testenv.Redis
	// deps are applied to the handler's Deps.
	deps func(*appsupport.Deps)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	r := o.redis
	if r == nil {
		r = srv
	}
	clock := func() time.Time { return now }
	st := r.Store(t, store.Options{Now: clock})
	d := appsupport.Deps{Store: st, Authenticate: resttest.Authenticate, Log: slog.New(slog.DiscardHandler), Now: clock}
	if o.deps != nil {
		o.deps(&d)
	}
	return &env{h: appsupport.New(d), st: st}
}

// do sends one request as app ("" sends no Authorization); header holds
// name, value pairs.
func (e *env) do(t *testing.T, method, path, app, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if app != "" {
		req.Header.Set("Authorization", "Bearer "+app)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// want checks a success answer's status and, when body is not "", its
// JSON body (compared as JSON values).
func want(t *testing.T, rec *httptest.ResponseRecorder, status int, body string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if body == "" {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !jsonEqual(rec.Body.Bytes(), []byte(body)) {
		t.Errorf("body = %s\nwant   %s", rec.Body, body)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// Rules as the platform admin configures them through Mm5.
const (
	trafficZeta  = `{"trafficRuleId":"zeta","filterType":"FLOW","priority":1,"trafficFilter":[{"srcAddress":["192.168.2.0/24","192.168.3.0/24"],"dstAddress":["192.127.4.100/32"],"dstPort":["80"]}],"action":"FORWARD_DECAPSULATED","dstInterface":{"interfaceType":"IP","dstIpAddress":"20.1.1.1"},"state":"ACTIVE"}`
	trafficAlpha = `{"trafficRuleId":"alpha","filterType":"PACKET","priority":7,"trafficFilter":[{"protocol":["UDP"]}],"action":"DROP","state":"INACTIVE"}`
	dnsWWW       = `{"dnsRuleId":"www","domainName":"www.example.com","ipAddressType":"IP_V4","ipAddress":"146.241.7.3","ttl":300,"state":"ACTIVE"}`
	dnsAPI       = `{"dnsRuleId":"api","domainName":"api.example.com","ipAddressType":"IP_V6","ipAddress":"2001:db8::7","state":"INACTIVE"}`
)

// seed configures the rules of app-a and app-b (whose rules have the same
// ids) through the store, as Mm5 does.
func (e *env) seed(t *testing.T) {
	t.Helper()
	for _, app := range []string{"app-a", "app-b"} {
		_, err := e.st.CreateAppD(context.Background(), store.AppD{AppInstanceID: app, AppName: app, AppSupportMp1: true,
			Traffic: []store.Rule{{ID: "zeta", State: "ACTIVE", Body: []byte(trafficZeta)}, {ID: "alpha", State: "INACTIVE", Body: []byte(trafficAlpha)}},
			DNS:     []store.Rule{{ID: "www", State: "ACTIVE", Body: []byte(dnsWWW)}, {ID: "api", State: "INACTIVE", Body: []byte(dnsAPI)}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// lastChange is the newest change-stream id.
func (e *env) lastChange(t *testing.T) string {
	t.Helper()
	id, err := e.st.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// changesSince is every change after id.
func (e *env) changesSince(t *testing.T, id string) []store.Change {
	t.Helper()
	cs, err := e.st.ReadChanges(context.Background(), id, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// set returns body (a JSON object) with member k set to v (raw JSON), or
// removed when v is "".
func set(body, k, v string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		panic(err)
	}
	if v == "" {
		delete(m, k)
	} else {
		m[k] = json.RawMessage(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// kinds are the two rule collections, which behave alike.
var kinds = []struct {
	name, coll, storeKind, changeKind, idField, wrapper string
	first, second                                       string // bodies in configuration order
	firstID                                             string
}{
	{"traffic", "traffic_rules", store.RuleTraffic, store.KindTrafficRule, "trafficRuleId", "TrafficRule", trafficZeta, trafficAlpha, "zeta"},
	{"dns", "dns_rules", store.RuleDNS, store.KindDNSRule, "dnsRuleId", "DnsRule", dnsWWW, dnsAPI, "www"},
}

func rulesPath(app, coll string) string { return base + "/applications/" + app + "/" + coll }

func rulePath(app, coll, id string) string { return rulesPath(app, coll) + "/" + id }

func TestRules(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			want(t, e.do(t, "GET", rulesPath("app-a", k.coll), "app-a", ""), http.StatusOK, `[]`)
			e.seed(t)
			path := rulePath("app-a", k.coll, k.firstID)
			inactive := set(k.first, "state", `"INACTIVE"`)

			t.Run("list in configuration order", func(t *testing.T) {
				want(t, e.do(t, "GET", rulesPath("app-a", k.coll), "app-a", ""), http.StatusOK, "["+k.first+","+k.second+"]")
			})
			t.Run("get", func(t *testing.T) {
				rec := e.do(t, "GET", path, "app-a", "")
				want(t, rec, http.StatusOK, k.first)
				if et := rec.Header().Get("ETag"); et != `"1"` {
					t.Errorf("ETag = %s, want \"1\"", et)
				}
			})
			t.Run("put with a fresh If-Match", func(t *testing.T) {
				rec := e.do(t, "PUT", path, "app-a", inactive, "If-Match", `"1"`)
				want(t, rec, http.StatusOK, inactive)
				if et := rec.Header().Get("ETag"); et != `"2"` {
					t.Errorf("ETag = %s, want \"2\"", et)
				}
				rec = e.do(t, "GET", path, "app-a", "")
				want(t, rec, http.StatusOK, inactive)
				if et := rec.Header().Get("ETag"); et != `"2"` {
					t.Errorf("ETag after the PUT = %s, want \"2\"", et)
				}
				// app-b's rule of the same id is its own.
				want(t, e.do(t, "GET", rulePath("app-b", k.coll, k.firstID), "app-b", ""), http.StatusOK, k.first)
			})
			for _, im := range []string{`"1"`, `W/"1"`, `"abc"`, `"0"`, `"99"`} {
				t.Run("put with a stale If-Match "+im, func(t *testing.T) {
					since := e.lastChange(t)
					rec := e.do(t, "PUT", path, "app-a", k.first, "If-Match", im)
					problemtest.Want(t, rec, path, http.StatusPreconditionFailed, "")
					if im == `"1"` && k.name == "traffic" {
						problemtest.Golden(t, "stale", rec.Body.Bytes())
					}
					rec = e.do(t, "GET", path, "app-a", "")
					want(t, rec, http.StatusOK, inactive)
					if et := rec.Header().Get("ETag"); et != `"2"` {
						t.Errorf("ETag after the refused PUT = %s, want \"2\"", et)
					}
					if cs := e.changesSince(t, since); len(cs) != 0 {
						t.Errorf("refused PUT appended %+v", cs)
					}
				})
			}
			t.Run("put that changes nothing keeps the ETag", func(t *testing.T) {
				since := e.lastChange(t)
				rec := e.do(t, "PUT", path, "app-a", inactive, "If-Match", `W/"2"`)
				want(t, rec, http.StatusOK, inactive)
				if et := rec.Header().Get("ETag"); et != `"2"` {
					t.Errorf("ETag = %s, want \"2\"", et)
				}
				if cs := e.changesSince(t, since); len(cs) != 0 {
					t.Errorf("PUT of the same rule appended %+v", cs)
				}
			})
			t.Run("put without If-Match, in the v3 wrapper", func(t *testing.T) {
				rec := e.do(t, "PUT", path, "app-a", `{"`+k.wrapper+`":`+k.first+`}`)
				want(t, rec, http.StatusOK, k.first)
				if et := rec.Header().Get("ETag"); et != `"3"` {
					t.Errorf("ETag = %s, want \"3\"", et)
				}
			})
			t.Run("unknown rule", func(t *testing.T) {
				p := rulePath("app-a", k.coll, "nope")
				rec := e.do(t, "GET", p, "app-a", "")
				problemtest.Want(t, rec, p, http.StatusNotFound, "")
				if k.name == "traffic" {
					problemtest.Golden(t, "unknown_rule", rec.Body.Bytes())
				}
				body := set(k.first, k.idField, `"nope"`)
				problemtest.Want(t, e.do(t, "PUT", p, "app-a", body), p, http.StatusNotFound, "")
				problemtest.Want(t, e.do(t, "PUT", p, "app-a", body, "If-Match", `"1"`), p, http.StatusNotFound, "")
				problemtest.Want(t, e.do(t, "PUT", p, "app-a", body, "If-Match", `"abc"`), p, http.StatusNotFound, "")
				if _, err := e.st.GetRule(context.Background(), k.storeKind, "app-a", "nope"); err == nil {
					t.Error("a PUT of an unknown rule created it")
				}
			})
		})
	}
}

// TestRuleChangeStream: a rule changed over Mp1 lands in the change stream
// once, for the UPF agent and the DNS to apply.
func TestRuleChangeStream(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.seed(t)
			since := e.lastChange(t)
			body := set(k.first, "state", `"INACTIVE"`)
			want(t, e.do(t, "PUT", rulePath("app-a", k.coll, k.firstID), "app-a", body), http.StatusOK, body)
			cs := e.changesSince(t, since)
			if len(cs) != 1 {
				t.Fatalf("changes = %+v, want one", cs)
			}
			c := cs[0]
			if c.Kind != k.changeKind || c.Type != store.ChangeUpdated || c.AppInstanceID != "app-a" || c.ID != k.firstID ||
				c.State != "INACTIVE" || c.Rev != 2 || !jsonEqual(c.Data, []byte(body)) {
				t.Errorf("change = %+v (data %s), want UPDATED %s app-a/%s INACTIVE rev 2", c, c.Data, k.changeKind, k.firstID)
			}
		})
	}
}

func TestInvalidRules(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed(t)
	tr := trafficZeta
	filter := func(f string) string { return set(tr, "trafficFilter", `[`+f+`]`) }
	dup := set(tr, "action", `"DUPLICATE_DECAPSULATED"`)
	tests := []struct {
		name, kind, body, field, golden string
	}{
		{name: "malformed JSON", kind: "traffic", body: `{"trafficRuleId":`, field: "body"},
		{name: "not an object", kind: "traffic", body: `[1]`, field: "body"},
		{name: "empty body", kind: "traffic", body: ` `, field: "body"},
		{name: "trailing data", kind: "traffic", body: tr + `}`, field: "body"},
		{name: "missing trafficRuleId", kind: "traffic", body: set(tr, "trafficRuleId", ""), field: "trafficRuleId"},
		{name: "another trafficRuleId", kind: "traffic", body: set(tr, "trafficRuleId", `"alpha"`), field: "trafficRuleId"},
		{name: "trafficRuleId not a string", kind: "traffic", body: set(tr, "trafficRuleId", `1`), field: "trafficRuleId"},
		{name: "wrong filterType", kind: "traffic", body: set(tr, "filterType", `"BOTH"`), field: "filterType"},
		{name: "missing filterType", kind: "traffic", body: set(tr, "filterType", ""), field: "filterType"},
		{name: "missing priority", kind: "traffic", body: set(tr, "priority", ""), field: "priority"},
		{name: "priority 256", kind: "traffic", body: set(tr, "priority", `256`), field: "priority"},
		{name: "negative priority", kind: "traffic", body: set(tr, "priority", `-1`), field: "priority"},
		{name: "priority a string", kind: "traffic", body: set(tr, "priority", `"1"`), field: "priority"},
		{name: "priority a fraction", kind: "traffic", body: set(tr, "priority", `1.5`), field: "priority"},
		{name: "missing trafficFilter", kind: "traffic", body: set(tr, "trafficFilter", ""), field: "trafficFilter"},
		{name: "empty trafficFilter", kind: "traffic", body: set(tr, "trafficFilter", `[]`), field: "trafficFilter"},
		{name: "trafficFilter an object", kind: "traffic", body: set(tr, "trafficFilter", `{}`), field: "trafficFilter"},
		{name: "srcAddress not an address", kind: "traffic", body: filter(`{"srcAddress":["10.0.0.0/8","nope"]}`), field: "trafficFilter[0].srcAddress[1]"},
		{name: "srcAddress a string", kind: "traffic", body: filter(`{"srcAddress":"10.0.0.1"}`), field: "trafficFilter.srcAddress"},
		{name: "dstAddress a backwards range", kind: "traffic", body: filter(`{"dstAddress":["10.0.0.9-10.0.0.1"]}`), field: "trafficFilter[0].dstAddress[0]"},
		{name: "dstPort out of range", kind: "traffic", body: filter(`{}, {"dstPort":["70000"]}`), field: "trafficFilter[1].dstPort[0]"},
		{name: "srcPort a number", kind: "traffic", body: filter(`{"srcPort":[80]}`), field: "trafficFilter.srcPort"},
		{name: "empty protocol", kind: "traffic", body: filter(`{"protocol":[""]}`), field: "trafficFilter[0].protocol[0]"},
		{name: "srcTunnelAddress not an address", kind: "traffic", body: filter(`{"srcTunnelAddress":["x"]}`), field: "trafficFilter[0].srcTunnelAddress[0]"},
		{name: "dSCP 64", kind: "traffic", body: filter(`{"dSCP":64}`), field: "trafficFilter[0].dSCP"},
		{name: "qCI a string", kind: "traffic", body: filter(`{"qCI":"1"}`), field: "trafficFilter.qCI"},
		{name: "wrong action", kind: "traffic", body: set(tr, "action", `"FORWARD"`), field: "action", golden: "bad_action"},
		{name: "missing action", kind: "traffic", body: set(tr, "action", ""), field: "action"},
		{name: "FORWARD without dstInterface", kind: "traffic", body: set(tr, "dstInterface", ""), field: "dstInterface"},
		{name: "DROP with dstInterface", kind: "traffic", body: set(tr, "action", `"DROP"`), field: "dstInterface"},
		{name: "DUPLICATE with one dstInterface", kind: "traffic", body: dup, field: "dstInterface"},
		{name: "three dstInterfaces", kind: "traffic", body: set(dup, "dstInterface", `[{"interfaceType":"IP","dstIpAddress":"10.0.0.1"},{"interfaceType":"IP","dstIpAddress":"10.0.0.2"},{"interfaceType":"IP","dstIpAddress":"10.0.0.3"}]`), field: "dstInterface"},
		{name: "dstInterface a number", kind: "traffic", body: set(tr, "dstInterface", `5`), field: "dstInterface"},
		{name: "wrong interfaceType", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"ETH"}`), field: "dstInterface.interfaceType"},
		{name: "IP interface without dstIpAddress", kind: "traffic", body: set(dup, "dstInterface", `[{"interfaceType":"IP","dstIpAddress":"10.0.0.1"},{"interfaceType":"IP"}]`), field: "dstInterface[1].dstIpAddress"},
		{name: "dstIpAddress not an address", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"IP","dstIpAddress":"20.1.1"}`), field: "dstInterface.dstIpAddress"},
		{name: "dstMacAddress not a MAC", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"MAC","dstMacAddress":"02-00"}`), field: "dstInterface.dstMacAddress"},
		{name: "TUNNEL without tunnelInfo", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"TUNNEL"}`), field: "dstInterface.tunnelInfo"},
		{name: "wrong tunnelType", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":"VXLAN"}}`), field: "dstInterface.tunnelInfo.tunnelType"},
		{name: "tunnelType not a string", kind: "traffic", body: set(tr, "dstInterface", `{"interfaceType":"TUNNEL","tunnelInfo":{"tunnelType":1}}`), field: "dstInterface.tunnelInfo.tunnelType"},
		{name: "traffic rule state", kind: "traffic", body: set(tr, "state", `"ON"`), field: "state"},
		{name: "missing traffic rule state", kind: "traffic", body: set(tr, "state", ""), field: "state"},

		{name: "missing dnsRuleId", kind: "dns", body: set(dnsWWW, "dnsRuleId", ""), field: "dnsRuleId"},
		{name: "another dnsRuleId", kind: "dns", body: set(dnsWWW, "dnsRuleId", `"api"`), field: "dnsRuleId"},
		{name: "missing domainName", kind: "dns", body: set(dnsWWW, "domainName", ""), field: "domainName"},
		{name: "domainName not a name", kind: "dns", body: set(dnsWWW, "domainName", `"www example.com"`), field: "domainName"},
		{name: "domainName with an empty label", kind: "dns", body: set(dnsWWW, "domainName", `"www..example.com"`), field: "domainName"},
		{name: "wrong ipAddressType", kind: "dns", body: set(dnsWWW, "ipAddressType", `"IPV4"`), field: "ipAddressType"},
		{name: "missing ipAddressType", kind: "dns", body: set(dnsWWW, "ipAddressType", ""), field: "ipAddressType"},
		{name: "missing ipAddress", kind: "dns", body: set(dnsWWW, "ipAddress", ""), field: "ipAddress"},
		{name: "ipAddress not an address", kind: "dns", body: set(dnsWWW, "ipAddress", `"300.1.1.1"`), field: "ipAddress"},
		{name: "IPv6 address for IP_V4", kind: "dns", body: set(dnsWWW, "ipAddress", `"2001:db8::1"`), field: "ipAddress"},
		{name: "IPv4 address for IP_V6", kind: "dns", body: set(dnsWWW, "ipAddressType", `"IP_V6"`), field: "ipAddress"},
		{name: "negative ttl", kind: "dns", body: set(dnsWWW, "ttl", `-1`), field: "ttl"},
		{name: "ttl a string", kind: "dns", body: set(dnsWWW, "ttl", `"300"`), field: "ttl"},
		{name: "ttl beyond 2^31-1", kind: "dns", body: set(dnsWWW, "ttl", `2147483648`), field: "ttl"},
		{name: "DNS rule state", kind: "dns", body: set(dnsWWW, "state", `"UP"`), field: "state"},
		{name: "DNS rule malformed", kind: "dns", body: `{"dnsRuleId":"www"`, field: "body"},

		// What encoding/json would silently change or keep.
		{name: "null body", kind: "traffic", body: `null`, field: "body"},
		{name: "null in the wrapper", kind: "dns", body: `{"DnsRule":null}`, field: "body"},
		{name: "null trafficFilter item", kind: "traffic", body: filter(`null`), field: "trafficFilter[0]"},
		{name: "null srcAddress item", kind: "traffic", body: filter(`{"srcAddress":["10.0.0.0/8",null]}`), field: "trafficFilter[0].srcAddress[1]"},
		{name: "null dstInterface item", kind: "traffic", body: set(dup, "dstInterface", `[{"interfaceType":"IP","dstIpAddress":"10.0.0.1"},null]`), field: "dstInterface[1]"},
		{name: "invalid UTF-8 in serName", kind: "traffic", body: strings.Replace(tr, `"trafficRuleId":"zeta"`, "\"trafficRuleId\":\"zeta\",\"serName\":\"s\xffvc\"", 1), field: "serName"},
		{name: "lone surrogate in a protocol", kind: "traffic", body: filter(`{"protocol":["TCP\ud800"]}`), field: "trafficFilter[0].protocol[0]"},
		{name: "CR LF in serName", kind: "traffic", body: set(tr, "serName", `"a\r\nb"`), field: "serName"},
		{name: "NUL in a protocol", kind: "traffic", body: filter(`{"protocol":["T\u0000CP"]}`), field: "trafficFilter[0].protocol[0]"},
		{name: "invalid UTF-8 in an unknown member", kind: "dns", body: strings.Replace(dnsWWW, `"ttl":300`, "\"ttl\":300,\"x\":\"\xfe\"", 1), field: "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coll, id, old := "traffic_rules", "zeta", trafficZeta
			if tc.kind == "dns" {
				coll, id, old = "dns_rules", "www", dnsWWW
			}
			path := rulePath("app-a", coll, id)
			since := e.lastChange(t)
			rec := e.do(t, "PUT", path, "app-a", tc.body, "If-Match", `"1"`)
			problemtest.Want(t, rec, path, http.StatusBadRequest, tc.field)
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
			rec = e.do(t, "GET", path, "app-a", "")
			want(t, rec, http.StatusOK, old)
			if et := rec.Header().Get("ETag"); et != `"1"` {
				t.Errorf("ETag after the refused PUT = %s, want \"1\"", et)
			}
			if cs := e.changesSince(t, since); len(cs) != 0 {
				t.Errorf("refused PUT appended %+v", cs)
			}
		})
	}
}

func TestOtherAppInstance(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed(t)
	if rec := e.do(t, "POST", base+"/registrations", "app-b", `{"appName":"b","appInstanceId":"app-b","isInsByMec":true}`); rec.Code != http.StatusCreated {
		t.Fatalf("register app-b: %d %s", rec.Code, rec.Body)
	}
	if _, _, err := e.st.StartTermination(context.Background(), "app-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	since := e.lastChange(t)
	tests := []struct {
		name, method, path, body, golden string
	}{
		{name: "list traffic rules", method: "GET", path: rulesPath("app-b", "traffic_rules"), golden: "forbidden"},
		{name: "get a traffic rule", method: "GET", path: rulePath("app-b", "traffic_rules", "zeta")},
		{name: "put a traffic rule", method: "PUT", path: rulePath("app-b", "traffic_rules", "zeta"), body: set(trafficZeta, "state", `"INACTIVE"`)},
		{name: "list DNS rules", method: "GET", path: rulesPath("app-b", "dns_rules")},
		{name: "get a DNS rule", method: "GET", path: rulePath("app-b", "dns_rules", "www")},
		{name: "put a DNS rule", method: "PUT", path: rulePath("app-b", "dns_rules", "www"), body: set(dnsWWW, "state", `"INACTIVE"`)},
		{name: "confirm ready", method: "POST", path: base + "/applications/app-b/confirm_ready", body: `{"indication":"READY"}`},
		{name: "confirm termination", method: "POST", path: base + "/applications/app-b/confirm_termination", body: `{"operationAction":"TERMINATING"}`},
		{name: "register another app", method: "POST", path: base + "/registrations", body: `{"appName":"b","appInstanceId":"app-b","isInsByMec":true}`},
		{name: "get a registration", method: "GET", path: base + "/registrations/app-b"},
		{name: "put a registration", method: "PUT", path: base + "/registrations/app-b", body: `{"appName":"x","appInstanceId":"app-b","isInsByMec":true}`},
		{name: "put a registration through the own path", method: "PUT", path: base + "/registrations/app-a", body: `{"appName":"x","appInstanceId":"app-b","isInsByMec":true}`},
		{name: "delete a registration", method: "DELETE", path: base + "/registrations/app-b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
			problemtest.Want(t, rec, tc.path, http.StatusForbidden, "")
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
		})
	}
	if cs := e.changesSince(t, since); len(cs) != 0 {
		t.Errorf("refused requests appended %+v", cs)
	}
	if term, err := e.st.GetTermination(context.Background(), "app-b"); err != nil || term.Confirmed {
		t.Errorf("app-b's termination = %+v, %v; want unconfirmed", term, err)
	}
}

// TestRuleIDsStayInTheirApp: the store joins app and rule id with ':' in
// its keys, so "a" + "b:c" and "a:b" + "c" name the same hash. App "a" must
// still not reach app "a:b"'s rule "c" through rule id "b:c".
func TestRuleIDsStayInTheirApp(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The store refuses the app id that could collide with app "a"'s keys...
	victim := set(dnsWWW, "dnsRuleId", `"c"`)
	if _, err := e.st.CreateAppD(context.Background(), store.AppD{AppInstanceID: "a:b", AppName: "victim",
		DNS: []store.Rule{{ID: "c", State: "ACTIVE", Body: []byte(victim)}}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("app id with ':' accepted: %v", err)
	}
	// ...and a rule id with ':' is no rule of app "a".
	since := e.lastChange(t)
	path := rulePath("a", "dns_rules", "b:c")
	problemtest.Want(t, e.do(t, "GET", path, "a", ""), path, http.StatusNotFound, "")
	evil := set(set(dnsWWW, "dnsRuleId", `"b:c"`), "ipAddress", `"192.0.2.66"`)
	problemtest.Want(t, e.do(t, "PUT", path, "a", evil), path, http.StatusNotFound, "")
	if cs := e.changesSince(t, since); len(cs) != 0 {
		t.Errorf("refused PUT appended %+v", cs)
	}
}

func TestTiming(t *testing.T) {
	ntp := []appsupport.NTPServer{{NTPServerAddrType: "IP_ADDRESS", NTPServerAddr: "192.0.2.1", MinPollingInterval: 3,
		MaxPollingInterval: 17, LocalPriority: 1, AuthenticationOption: "NONE", AuthenticationKeyNum: 1}}
	ptp := []appsupport.PTPMaster{{PTPMasterIPAddress: "192.0.2.2", PTPMasterLocalPriority: 1, DelayReqMaxRate: 10}}
	tests := []struct {
		name, path string
		deps       func(*appsupport.Deps)
		want       string
	}{
		{name: "current time", path: "/timing/current_time",
			want: `{"seconds":1782209700,"nanoSeconds":123456789,"timeSourceStatus":"NONTRACEABLE"}`},
		{name: "current time traceable", path: "/timing/current_time", deps: func(d *appsupport.Deps) { d.TimeTraceable = true },
			want: `{"seconds":1782209700,"nanoSeconds":123456789,"timeSourceStatus":"TRACEABLE"}`},
		{name: "timing caps", path: "/timing/timing_caps",
			want: `{"timeStamp":{"seconds":1782209700,"nanoSeconds":123456789}}`},
		{name: "timing caps with NTP and PTP", path: "/timing/timing_caps", deps: func(d *appsupport.Deps) { d.NTPServers, d.PTPMasters = ntp, ptp },
			want: `{"timeStamp":{"seconds":1782209700,"nanoSeconds":123456789},` +
				`"ntpServers":[{"ntpServerAddrType":"IP_ADDRESS","ntpServerAddr":"192.0.2.1","minPollingInterval":3,"maxPollingInterval":17,"localPriority":1,"authenticationOption":"NONE","authenticationKeyNum":1}],` +
				`"ptpMasters":[{"ptpMasterIpAddress":"192.0.2.2","ptpMasterLocalPriority":1,"delayReqMaxRate":10}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{deps: tc.deps})
			want(t, e.do(t, "GET", base+tc.path, "app-a", ""), http.StatusOK, tc.want)
		})
	}
}

func TestConfirmReady(t *testing.T) {
	e := newEnv(t, envOptions{})
	path := base + "/applications/app-a/confirm_ready"
	for _, tc := range []struct{ name, body, field string }{
		{"empty body", "", "indication"},
		{"empty object", `{}`, "indication"},
		{"wrong indication", `{"indication":"GO"}`, "indication"},
		{"indication not a string", `{"indication":1}`, "indication"},
		{"malformed", `{"indication":`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problemtest.Want(t, e.do(t, "POST", path, "app-a", tc.body), path, http.StatusBadRequest, tc.field)
			if _, err := e.st.ReadyAt(context.Background(), "app-a"); err == nil {
				t.Error("a refused confirm_ready was recorded")
			}
		})
	}
	for _, body := range []string{`{"indication":"READY"}`, `{"AppReadyConfirmation":{"indication":"READY"}}`} {
		since := e.lastChange(t)
		want(t, e.do(t, "POST", path, "app-a", body), http.StatusNoContent, "")
		at, err := e.st.ReadyAt(context.Background(), "app-a")
		if err != nil || !at.Equal(now.Truncate(time.Millisecond)) {
			t.Errorf("ReadyAt = %v, %v; want %v", at, err, now)
		}
		if cs := e.changesSince(t, since); len(cs) != 1 || cs[0].Type != store.ChangeReady || cs[0].AppInstanceID != "app-a" {
			t.Errorf("changes = %+v, want one READY of app-a", cs)
		}
	}
}

func TestConfirmTermination(t *testing.T) {
	e := newEnv(t, envOptions{})
	path := base + "/applications/app-a/confirm_termination"
	for _, tc := range []struct{ name, body, field string }{
		{"empty body", "", "operationAction"},
		{"wrong operationAction", `{"operationAction":"STOPPED"}`, "operationAction"},
		{"operationAction not a string", `{"operationAction":true}`, "operationAction"},
		{"not an object", `"TERMINATING"`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problemtest.Want(t, e.do(t, "POST", path, "app-a", tc.body), path, http.StatusBadRequest, tc.field)
		})
	}
	t.Run("no termination in progress", func(t *testing.T) {
		rec := e.do(t, "POST", path, "app-a", `{"operationAction":"TERMINATING"}`)
		problemtest.Want(t, rec, path, http.StatusConflict, "")
		problemtest.Golden(t, "no_termination", rec.Body.Bytes())
	})
	t.Run("termination in progress", func(t *testing.T) {
		if _, _, err := e.st.StartTermination(context.Background(), "app-a", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		since := e.lastChange(t)
		want(t, e.do(t, "POST", path, "app-a", `{"AppTerminationConfirmation":{"operationAction":"TERMINATING"}}`), http.StatusNoContent, "")
		term, err := e.st.GetTermination(context.Background(), "app-a")
		if err != nil || !term.Confirmed {
			t.Errorf("termination = %+v, %v; want confirmed", term, err)
		}
		if cs := e.changesSince(t, since); len(cs) != 1 || cs[0].Type != store.ChangeConfirmed {
			t.Errorf("changes = %+v, want one TERMINATION_CONFIRMED", cs)
		}
		// Confirming again (STOPPING is as valid) changes nothing.
		since = e.lastChange(t)
		want(t, e.do(t, "POST", path, "app-a", `{"operationAction":"STOPPING"}`), http.StatusNoContent, "")
		if cs := e.changesSince(t, since); len(cs) != 0 {
			t.Errorf("second confirmation appended %+v", cs)
		}
	})
}

func TestRegistrations(t *testing.T) {
	e := newEnv(t, envOptions{})
	coll := base + "/registrations"
	path := coll + "/app-a"
	info := `{"appName":"rni-app","appProvider":"kmep","appInstanceId":"app-a","appDId":"d-1","isInsByMec":true,` +
		`"appServiceRequired":[{"serName":"rnis","version":"2.1.1"}],"appFeatureOptional":[{"featureName":"UEIdentity","version":"1"}],` +
		`"appProfile":{"easId":"e1"},"vendorExtension":{"x":[1,2]}}`

	t.Run("get before registering", func(t *testing.T) {
		problemtest.Want(t, e.do(t, "GET", path, "app-a", ""), path, http.StatusNotFound, "")
		problemtest.Want(t, e.do(t, "PUT", path, "app-a", info), path, http.StatusNotFound, "")
		problemtest.Want(t, e.do(t, "DELETE", path, "app-a", ""), path, http.StatusNotFound, "")
	})
	for _, tc := range []struct{ name, body, field string }{
		{"missing appName", `{"appInstanceId":"app-a"}`, "appName"},
		{"empty appName", `{"appName":" ","appInstanceId":"app-a"}`, "appName"},
		{"missing appInstanceId", `{"appName":"x"}`, "appInstanceId"},
		{"appName not a string", `{"appName":1,"appInstanceId":"app-a"}`, "appName"},
		{"isInsByMec not a boolean", `{"appName":"x","appInstanceId":"app-a","isInsByMec":"yes"}`, "isInsByMec"},
		{"appServiceRequired without serName", `{"appName":"x","appInstanceId":"app-a","appServiceRequired":[{"version":"1"}]}`, "appServiceRequired[0].serName"},
		{"appFeatureRequired without version", `{"appName":"x","appInstanceId":"app-a","appFeatureRequired":[{"featureName":"f"}]}`, "appFeatureRequired[0].version"},
		{"not an object", `[]`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problemtest.Want(t, e.do(t, "POST", coll, "app-a", tc.body), coll, http.StatusBadRequest, tc.field)
		})
	}
	t.Run("register", func(t *testing.T) {
		rec := e.do(t, "POST", coll, "app-a", `{"AppInfo":`+info+`}`)
		want(t, rec, http.StatusCreated, info)
		if loc := rec.Header().Get("Location"); loc != "http://example.com"+path {
			t.Errorf("Location = %q", loc)
		}
		if et := rec.Header().Get("ETag"); et != `"1"` {
			t.Errorf("ETag = %s", et)
		}
		rec = e.do(t, "GET", path, "app-a", "")
		want(t, rec, http.StatusOK, info)
		if et := rec.Header().Get("ETag"); et != `"1"` {
			t.Errorf("ETag = %s", et)
		}
	})
	t.Run("register again", func(t *testing.T) {
		problemtest.Want(t, e.do(t, "POST", coll, "app-a", info), coll, http.StatusConflict, "")
		want(t, e.do(t, "GET", path, "app-a", ""), http.StatusOK, info)
	})
	updated := set(info, "appName", `"rni-app-2"`)
	t.Run("update with a stale If-Match", func(t *testing.T) {
		for _, im := range []string{`"2"`, `"x"`} {
			problemtest.Want(t, e.do(t, "PUT", path, "app-a", updated, "If-Match", im), path, http.StatusPreconditionFailed, "")
		}
		rec := e.do(t, "GET", path, "app-a", "")
		want(t, rec, http.StatusOK, info)
		if et := rec.Header().Get("ETag"); et != `"1"` {
			t.Errorf("ETag = %s", et)
		}
	})
	t.Run("update", func(t *testing.T) {
		rec := e.do(t, "PUT", path, "app-a", updated, "If-Match", `"1"`)
		want(t, rec, http.StatusNoContent, "")
		if et := rec.Header().Get("ETag"); et != `"2"` {
			t.Errorf("ETag = %s", et)
		}
		rec = e.do(t, "GET", path, "app-a", "")
		want(t, rec, http.StatusOK, updated)
		if et := rec.Header().Get("ETag"); et != `"2"` {
			t.Errorf("ETag = %s", et)
		}
		problemtest.Want(t, e.do(t, "PUT", path, "app-a", `{"appName":"x"}`), path, http.StatusBadRequest, "appInstanceId")
	})
	t.Run("deregister", func(t *testing.T) {
		want(t, e.do(t, "DELETE", path, "app-a", ""), http.StatusNoContent, "")
		problemtest.Want(t, e.do(t, "GET", path, "app-a", ""), path, http.StatusNotFound, "")
		want(t, e.do(t, "POST", coll, "app-a", info), http.StatusCreated, info)
	})
}

func TestAuthAndMethods(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name, method, path, app string
		status                  int
		allow                   string
		golden                  string
	}{
		{name: "rules without Authorization", method: "GET", path: rulesPath("app-a", "traffic_rules"), status: http.StatusUnauthorized, golden: "unauthorized"},
		{name: "timing without Authorization", method: "GET", path: base + "/timing/current_time", status: http.StatusUnauthorized},
		{name: "register without Authorization", method: "POST", path: base + "/registrations", status: http.StatusUnauthorized},
		{name: "POST traffic rules", method: "POST", path: rulesPath("app-a", "traffic_rules"), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET", golden: "method_not_allowed"},
		{name: "DELETE a DNS rule", method: "DELETE", path: rulePath("app-a", "dns_rules", "x"), app: "app-a", status: http.StatusMethodNotAllowed, allow: "GET, PUT"},
		{name: "GET confirm_ready", method: "GET", path: base + "/applications/app-a/confirm_ready", app: "app-a", status: http.StatusMethodNotAllowed, allow: "POST"},
		{name: "PUT confirm_termination", method: "PUT", path: base + "/applications/app-a/confirm_termination", app: "app-a", status: http.StatusMethodNotAllowed, allow: "POST"},
		{name: "GET registrations", method: "GET", path: base + "/registrations", app: "app-a", status: http.StatusMethodNotAllowed, allow: "POST"},
		{name: "POST a registration", method: "POST", path: base + "/registrations/app-a", app: "app-a", status: http.StatusMethodNotAllowed, allow: "DELETE, GET, PUT"},
		{name: "POST timing caps", method: "POST", path: base + "/timing/timing_caps", status: http.StatusMethodNotAllowed, allow: "GET"},
		{name: "unknown path", method: "GET", path: base + "/applications/app-a/traffic_rule", app: "app-a", status: http.StatusNotFound, golden: "not_found"},
		{name: "subscriptions are not served here", method: "GET", path: base + "/applications/app-a/subscriptions", app: "app-a", status: http.StatusNotFound},
		{name: "below a rule", method: "GET", path: rulePath("app-a", "traffic_rules", "x") + "/y", app: "app-a", status: http.StatusNotFound},
		{name: "the root", method: "GET", path: base + "/", app: "app-a", status: http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, tc.app, "")
			problemtest.Want(t, rec, tc.path, tc.status, "")
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without a WWW-Authenticate challenge")
			}
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
		})
	}
}

// bodyRoutes are the requests that carry a body, with a valid one.
var bodyRoutes = []struct{ name, method, path, body string }{
	{"put a traffic rule", "PUT", rulePath("app-a", "traffic_rules", "zeta"), trafficZeta},
	{"put a DNS rule", "PUT", rulePath("app-a", "dns_rules", "www"), dnsWWW},
	{"confirm ready", "POST", base + "/applications/app-a/confirm_ready", `{"indication":"READY"}`},
	{"confirm termination", "POST", base + "/applications/app-a/confirm_termination", `{"operationAction":"TERMINATING"}`},
	{"register", "POST", base + "/registrations", `{"appName":"a","appInstanceId":"app-a","isInsByMec":true}`},
	{"update the registration", "PUT", base + "/registrations/app-a", `{"appName":"a","appInstanceId":"app-a","isInsByMec":true}`},
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed(t)
	since := e.lastChange(t)
	for i, r := range bodyRoutes {
		t.Run(r.name, func(t *testing.T) {
			// Valid JSON, padded with white space beyond MaxBody.
			body := r.body + strings.Repeat(" ", appsupport.MaxBody)
			rec := e.do(t, r.method, r.path, "app-a", body)
			problemtest.Want(t, rec, r.path, http.StatusRequestEntityTooLarge, "")
			if i == 0 {
				problemtest.Golden(t, "too_large", rec.Body.Bytes())
			}
		})
	}
	if cs := e.changesSince(t, since); len(cs) != 0 {
		t.Errorf("refused requests appended %+v", cs)
	}
}

// TestStoreUnavailable stops Redis under the handler: every call that
// needs the store answers 503 with Retry-After; timing still answers.
func TestStoreUnavailable(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	e := newEnv(t, envOptions{redis: r})
	e.seed(t)
	r.Stop()
	tests := []struct{ name, method, path, body string }{
		{"list traffic rules", "GET", rulesPath("app-a", "traffic_rules"), ""},
		{"get a traffic rule", "GET", rulePath("app-a", "traffic_rules", "zeta"), ""},
		{"list DNS rules", "GET", rulesPath("app-a", "dns_rules"), ""},
		{"get a DNS rule", "GET", rulePath("app-a", "dns_rules", "www"), ""},
		{"get the registration", "GET", base + "/registrations/app-a", ""},
		{"delete the registration", "DELETE", base + "/registrations/app-a", ""},
	}
	for _, b := range bodyRoutes {
		tests = append(tests, struct{ name, method, path, body string }{b.name, b.method, b.path, b.body})
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, tc.method, tc.path, "app-a", tc.body)
			problemtest.Want(t, rec, tc.path, http.StatusServiceUnavailable, "")
			if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("Retry-After = %q", ra)
			}
			if i == 0 {
				problemtest.Golden(t, "unavailable", rec.Body.Bytes())
			}
		})
	}
	t.Run("timing", func(t *testing.T) {
		want(t, e.do(t, "GET", base+"/timing/current_time", "app-a", ""), http.StatusOK, "")
	})
}

// TestContentType: every call with a body answers 415 to a body declared
// as anything but application/json, and changes nothing; application/json
// with a UTF-8 charset is read.
func TestContentType(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed(t)
	if _, _, err := e.st.StartTermination(context.Background(), "app-a", time.Minute); err != nil {
		t.Fatal(err)
	}
	since := e.lastChange(t)
	for _, r := range bodyRoutes {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=b"} {
			t.Run(r.name+" as "+ct, func(t *testing.T) {
				rec := e.do(t, r.method, r.path, "app-a", set(r.body, "state", `"INACTIVE"`), "Content-Type", ct)
				problemtest.Want(t, rec, r.path, http.StatusUnsupportedMediaType, "Content-Type")
				if rec.Header().Get("Accept") != "application/json" {
					t.Errorf("Accept = %q", rec.Header().Get("Accept"))
				}
			})
		}
	}
	if cs := e.changesSince(t, since); len(cs) != 0 {
		t.Errorf("refused requests appended %+v", cs)
	}
	if _, err := e.st.GetRegistration(context.Background(), "app-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused registration was stored: %v", err)
	}
	if term, err := e.st.GetTermination(context.Background(), "app-a"); err != nil || term.Confirmed {
		t.Errorf("termination = %+v, %v; want unconfirmed", term, err)
	}
	rec := e.do(t, "POST", base+"/registrations", "app-a", bodyRoutes[4].body, "Content-Type", "application/json; charset=utf-8")
	want(t, rec, http.StatusCreated, "")
}

// TestRegistrationEndpoint: MEC 011 v3 says endpoint "shall be present
// when isInsByMec is FALSE" (its default when absent): without one the
// registration is a 400 naming endpoint and nothing is stored.
func TestRegistrationEndpoint(t *testing.T) {
	coll := base + "/registrations"
	ep := `"endpoint":{"uris":["http://10.0.0.9:8080/app"]}`
	for _, tc := range []struct{ name, body, field string }{
		{"isInsByMec false without endpoint", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false}`, "endpoint"},
		{"isInsByMec absent without endpoint", `{"appName":"x","appInstanceId":"app-a"}`, "endpoint"},
		{"isInsByMec false with a null endpoint", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,"endpoint":null}`, "endpoint"},
		{"isInsByMec false with an empty endpoint", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,"endpoint":{}}`, "endpoint"},
		{"endpoint with an empty uri", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,"endpoint":{"uris":[""]}}`, "endpoint.uris[0]"},
		{"endpoint with a bad port", `{"appName":"x","appInstanceId":"app-a","isInsByMec":true,"endpoint":{"addresses":[{"host":"10.0.0.9","port":0}]}}`, "endpoint.addresses[0].port"},
		{"endpoint host with CR LF", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,"endpoint":{"addresses":[{"host":"10.0.0.9\r\n","port":80}]}}`, "endpoint.addresses[0].host"},
		{"appName with NUL", `{"appName":"x\u0000y","appInstanceId":"app-a","isInsByMec":true}`, "appName"},
		{"appName with CR LF", `{"appName":"x\r\ny","appInstanceId":"app-a","isInsByMec":true}`, "appName"},
		{"appName invalid UTF-8", "{\"appName\":\"x\xc3\",\"appInstanceId\":\"app-a\",\"isInsByMec\":true}", "appName"},
		{"appProvider with a control", `{"appName":"x","appProvider":"a\u001bb","appInstanceId":"app-a","isInsByMec":true}`, "appProvider"},
		{"null dependency", `{"appName":"x","appInstanceId":"app-a","isInsByMec":true,"appServiceRequired":[null]}`, "appServiceRequired[0]"},
		{"null in vendorExtension", `{"appName":"x","appInstanceId":"app-a","isInsByMec":true,"vendorExtension":{"v":[null]}}`, "vendorExtension.v[0]"},
		{"null body", `null`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			since := e.lastChange(t)
			problemtest.Want(t, e.do(t, "POST", coll, "app-a", tc.body), coll, http.StatusBadRequest, tc.field)
			if _, err := e.st.GetRegistration(context.Background(), "app-a"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused registration was stored: %v", err)
			}
			if cs := e.changesSince(t, since); len(cs) != 0 {
				t.Errorf("refused registration appended %+v", cs)
			}
		})
	}
	for _, tc := range []struct{ name, body string }{
		{"isInsByMec false with an endpoint", `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,` + ep + `}`},
		{"isInsByMec absent with an endpoint", `{"appName":"x","appInstanceId":"app-a",` + ep + `}`},
		{"isInsByMec true without an endpoint", `{"appName":"x","appInstanceId":"app-a","isInsByMec":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			want(t, e.do(t, "POST", coll, "app-a", tc.body), http.StatusCreated, tc.body)
		})
	}
	// A PUT that drops the endpoint of an app not instantiated by MEC
	// management is refused too, and the registration stays as it was.
	e := newEnv(t, envOptions{})
	body := `{"appName":"x","appInstanceId":"app-a","isInsByMec":false,` + ep + `}`
	want(t, e.do(t, "POST", coll, "app-a", body), http.StatusCreated, body)
	problemtest.Want(t, e.do(t, "PUT", coll+"/app-a", "app-a", `{"appName":"y","appInstanceId":"app-a","isInsByMec":false}`), coll+"/app-a", http.StatusBadRequest, "endpoint")
	want(t, e.do(t, "GET", coll+"/app-a", "app-a", ""), http.StatusOK, body)
}
