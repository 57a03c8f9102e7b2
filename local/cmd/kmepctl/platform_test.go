package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/csar/csartest"
)

const adminToken = "admin-token-for-kmepctl-tests-0123"

// startPlatform runs the all-in-one on a real redis-server until the test
// ends and returns its base URL.
func startPlatform(t *testing.T) string {
	t.Helper()
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- allinone.Run(ctx, allinone.Config{Listener: ln, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: r.URL(),
			AdminToken: adminToken, Log: slog.New(slog.NewJSONHandler(logs, nil)), Ready: func(string) { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, logs)
	}
	return "http://" + ln.Addr().String()
}

// call sends one admin or app request to the platform and checks its status.
func call(t *testing.T, method, url, bearer, contentType string, body io.Reader, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, res.StatusCode, want, b)
	}
	return b
}

func uploadPackage(t *testing.T, base, tenant, id, name string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("packageId", id)
	fw, _ := mw.CreateFormFile("package", name+".csar")
	_, _ = fw.Write(csartest.CSAR(csartest.Options{Name: name}))
	_ = mw.Close()
	call(t, "POST", base+"/lcmcontroller/v1/tenants/"+tenant+"/packages", adminToken, mw.FormDataContentType(), &body, http.StatusCreated)
}

// kmepctl runs the command line against base with the admin token in the
// environment.
func kmepctl(t *testing.T, base string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, map[string]string{envURL: base, envAdminToken: adminToken}, time.Now(), args...)
}

// get and list print what the platform answers, as a table, JSON or YAML.
func TestReadPackagesAndApps(t *testing.T) {
	base := startPlatform(t)
	uploadPackage(t, base, "tenant-1", "pkg-b", "shop")
	uploadPackage(t, base, "tenant-1", "pkg-a", "demo")
	uploadPackage(t, base, "tenant-2", "pkg-c", "other")
	call(t, "PUT", base+"/mep/appMng/v1/applications/app-1/confs", adminToken, "application/json",
		strings.NewReader(`{"authInfo":{"credentials":{"accessKeyId":"AKAPP1","secretKey":"secret-key-app-1"}},"appInfo":{"appName":"demo","requiredServices":[]}}`), http.StatusCreated)

	t.Run("list json", func(t *testing.T) {
		code, stdout, stderr := kmepctl(t, base, "list", "packages", "--tenant", "tenant-1", "-o", "json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, stdout)
		}
		if len(got) != 2 || got[0]["packageId"] != "pkg-a" || got[0]["appName"] != "demo" || got[1]["packageId"] != "pkg-b" || got[1]["appName"] != "shop" {
			t.Fatalf("packages of tenant-1 (sorted by ID): %s", stdout)
		}
	})
	t.Run("list yaml", func(t *testing.T) {
		code, stdout, stderr := kmepctl(t, base, "list", "pkg", "--tenant", "tenant-2", "-o", "yaml")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got []map[string]any
		if err := yaml.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, stdout)
		}
		if len(got) != 1 || got[0]["packageId"] != "pkg-c" || got[0]["tenantId"] != "tenant-2" || !strings.Contains(stdout, "packageId: pkg-c\n") {
			t.Fatalf("packages of tenant-2: %s", stdout)
		}
	})
	t.Run("list table", func(t *testing.T) {
		code, stdout, stderr := kmepctl(t, base, "list", "packages", "--tenant", "tenant-1")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "PACKAGEID APP VERSION PROVIDER SIZE CREATED" ||
			!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "pkg-a demo ") || !strings.HasPrefix(lines[2], "pkg-b ") {
			t.Fatalf("table:\n%s", stdout)
		}
		code, stdout, _ = kmepctl(t, base, "list", "packages", "--tenant", "tenant-9")
		if code != exitOK || stdout != "No packages.\n" {
			t.Fatalf("empty list: exit %d, %q", code, stdout)
		}
	})
	t.Run("get", func(t *testing.T) {
		code, stdout, stderr := kmepctl(t, base, "get", "packages", "pkg-b", "--tenant", "tenant-1", "-o", "json")
		var got map[string]any
		if code != exitOK || json.Unmarshal([]byte(stdout), &got) != nil || got["packageId"] != "pkg-b" || got["appName"] != "shop" {
			t.Fatalf("get: exit %d %s %s", code, stdout, stderr)
		}
		code, stdout, stderr = kmepctl(t, base, "get", "apps", "app-1", "-o", "yaml")
		if code != exitOK || !strings.Contains(stdout, "accessKeyId: AKAPP1\n") || !strings.Contains(stdout, "appInstanceId: app-1\n") ||
			!strings.Contains(stdout, "appName: demo\n") || strings.Contains(stdout, "secret-key-app-1") {
			t.Fatalf("get apps app-1: exit %d %s %s", code, stdout, stderr)
		}
		code, stdout, stderr = kmepctl(t, base, "get", "apps", "app-1")
		if code != exitOK || !strings.Contains(strings.Join(strings.Fields(stdout), " "), "APPINSTANCEID NAME ACCESSKEY app-1 demo AKAPP1") {
			t.Fatalf("get apps app-1 as a table: exit %d %q %s", code, stdout, stderr)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  map[string]string
			args []string
			code int
			want string
		}{
			{"not found", nil, []string{"get", "packages", "nope", "--tenant", "tenant-1"}, exitFailure,
				"kmepctl: GET /lcmcontroller/v1/tenants/tenant-1/packages/nope: 404 Not Found: unknown package\n"},
			{"wrong admin token", map[string]string{envURL: base, envAdminToken: "wrong"}, []string{"list", "packages", "--tenant", "tenant-1"}, exitFailure,
				"GET /lcmcontroller/v1/tenants/tenant-1/packages refused the token (401"},
			{"no platform", map[string]string{envURL: "http://127.0.0.1:1", envAdminToken: adminToken}, []string{"list", "packages", "--tenant", "t"}, exitFailure,
				"connect: connection refused"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env := tc.env
				if env == nil {
					env = map[string]string{envURL: base, envAdminToken: adminToken}
				}
				code, stdout, stderr := runCLI(t, env, time.Now(), tc.args...)
				if code != tc.code || !strings.Contains(stderr, tc.want) || stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tc.code, tc.want)
				}
			})
		}
	})
}

// watch prints the list as ADDED, then each change, until interrupted.
func TestWatchPackages(t *testing.T) {
	base := startPlatform(t)
	uploadPackage(t, base, "tenant-1", "pkg-1", "demo")
	out := &testenv.LogBuffer{}
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "packages", "--tenant", "tenant-1", "-o", "json", "--interval", "50ms"}, deps{
			stdout: out, stderr: &stderr, getenv: func(k string) string { return map[string]string{envURL: base, envAdminToken: adminToken}[k] },
			now: time.Now, client: &http.Client{}})
	}()
	waitFor := func(n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) >= n && lines[0] != "" {
				var evs []map[string]any
				for _, l := range lines {
					var ev map[string]any
					if err := json.Unmarshal([]byte(l), &ev); err != nil {
						t.Fatalf("watch line is not JSON: %q", l)
					}
					evs = append(evs, ev)
				}
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %d events, have:\n%s", n, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	evs := waitFor(1)
	uploadPackage(t, base, "tenant-1", "pkg-2", "shop")
	evs = waitFor(2)
	call(t, "DELETE", base+"/lcmcontroller/v1/tenants/tenant-1/packages/pkg-1", adminToken, "", nil, http.StatusNoContent)
	evs = waitFor(3)
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("watch exit %d: %s", code, stderr.String())
	}
	for i, want := range []struct{ typ, id string }{{added, "pkg-1"}, {added, "pkg-2"}, {deleted, "pkg-1"}} {
		obj, _ := evs[i]["object"].(map[string]any)
		if evs[i]["type"] != want.typ || obj["packageId"] != want.id {
			t.Errorf("event %d = %v, want %s %s", i, evs[i], want.typ, want.id)
		}
	}
	if len(evs) != 3 {
		t.Errorf("%d events, want 3:\n%s", len(evs), out)
	}
}

// A platform without a list's endpoint (an older one) is an error naming
// the endpoint, never an empty list.
func TestListWithoutEndpoint(t *testing.T) {
	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	code, stdout, stderr := runCLI(t, map[string]string{envURL: old.URL, envAdminToken: adminToken}, time.Now(), "list", "deadletters")
	want := "kmepctl: the platform does not serve this endpoint: GET /kmep/admin/v1/dead_letters?limit=1000 answered 404 (Not Found): this platform has no such list yet\n"
	if code != exitFailure || stdout != "" || stderr != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
	}
}

const service = `{"serName":"%s","serCategory":{"href":"","id":"c1","name":"RNI","version":"1"},"version":"1.0.1","state":"ACTIVE",
"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2.0",
"endpoint":{"addresses":[{"host":"10.0.0.7","port":30005}]},"security":{}},"serializer":"JSON"}`

// provision gives app its credentials and returns an app token.
func provision(t *testing.T, base, app, ak, sk string) string {
	t.Helper()
	call(t, "PUT", base+"/mep/appMng/v1/applications/"+app+"/confs", adminToken, "application/json",
		strings.NewReader(`{"authInfo":{"credentials":{"accessKeyId":"`+ak+`","secretKey":"`+sk+`"}},"appInfo":{"appName":"`+app+`-name","requiredServices":[]}}`), http.StatusCreated)
	tok, err := fetchToken(context.Background(), http.DefaultClient, base+"/mep/token", ak, []byte(sk), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The admin reads every app's services, subscriptions and the platform's
// apps, instances and dead letters.
func TestReadEveryApp(t *testing.T) {
	base := startPlatform(t)
	tok1 := provision(t, base, "app-1", "AKAPP1", "secret-key-app-1")
	tok2 := provision(t, base, "app-2", "AKAPP2", "secret-key-app-2")
	var created struct {
		SerInstanceID string `json:"serInstanceId"`
	}
	b := call(t, "POST", base+"/mep/mec_service_mgmt/v1/applications/app-1/services", tok1, "application/json",
		strings.NewReader(strings.Replace(service, "%s", "svc-one", 1)), http.StatusCreated)
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	call(t, "POST", base+"/mep/mec_service_mgmt/v1/applications/app-2/subscriptions", tok2, "application/json",
		strings.NewReader(`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"http://203.0.113.9/cb"}`), http.StatusCreated)

	code, stdout, stderr := kmepctl(t, base, "list", "services", "-o", "json")
	var svcs []map[string]any
	if code != exitOK || json.Unmarshal([]byte(stdout), &svcs) != nil || len(svcs) != 1 || svcs[0]["serName"] != "svc-one" || svcs[0]["serInstanceId"] != created.SerInstanceID {
		t.Fatalf("list services: exit %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = kmepctl(t, base, "get", "svc", created.SerInstanceID)
	if code != exitOK || strings.Join(strings.Fields(stdout), " ") != "SERINSTANCEID NAME STATE VERSION CATEGORY "+created.SerInstanceID+" svc-one ACTIVE 1.0.1 RNI" {
		t.Fatalf("get service as a table: exit %d %q %s", code, stdout, stderr)
	}
	code, stdout, stderr = kmepctl(t, base, "list", "apps")
	if code != exitOK || strings.Join(strings.Fields(stdout), " ") != "APPINSTANCEID NAME ACCESSKEY app-1 app-1-name AKAPP1 app-2 app-2-name AKAPP2" || strings.Contains(stdout, "secret") {
		t.Fatalf("list apps: exit %d %q %s", code, stdout, stderr)
	}
	// Without --app: every app's; with it: that app's.
	for _, args := range [][]string{{"list", "subscriptions", "-o", "yaml"}, {"list", "subs", "--app", "app-2", "-o", "yaml"}} {
		code, stdout, stderr = kmepctl(t, base, args...)
		var subs []map[string]any
		if code != exitOK || yaml.Unmarshal([]byte(stdout), &subs) != nil || len(subs) != 1 || subs[0]["appInstanceId"] != "app-2" ||
			subs[0]["rel"] != "SerAvailabilityNotificationSubscription" || subs[0]["id"] == "" {
			t.Fatalf("%v: exit %d %s %s", args, code, stdout, stderr)
		}
	}
	code, stdout, _ = kmepctl(t, base, "list", "subscriptions", "--app", "app-1")
	if code != exitOK || stdout != "No subscriptions.\n" {
		t.Fatalf("app-1's subscriptions: exit %d %q", code, stdout)
	}
	for _, r := range []string{"instances", "deadletters", "rules"} {
		code, stdout, stderr = kmepctl(t, base, "list", r, "-o", "json")
		if code != exitOK || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("list %s: exit %d %q %s", r, code, stdout, stderr)
		}
	}
}

// watch reads again on each change the platform's change stream
// announces: with a poll interval of an hour, a registration still shows.
func TestWatchFollowsTheChangeStream(t *testing.T) {
	base := startPlatform(t)
	tok := provision(t, base, "app-1", "AKAPP1", "secret-key-app-1")
	out := &testenv.LogBuffer{}
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "services", "--interval", "1h"}, deps{
			stdout: out, stderr: &stderr, getenv: func(k string) string { return map[string]string{envURL: base, envAdminToken: adminToken}[k] },
			now: time.Now, client: &http.Client{}})
	}()
	// The first read (nothing yet) prints nothing. The stream starts from
	// the changes after it opened: register again until one shows, each
	// through the stream (the poll is an hour away).
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; !strings.Contains(out.String(), "svc-watched") && time.Now().Before(deadline); n++ {
		if n%50 == 0 {
			call(t, "POST", base+"/mep/mec_service_mgmt/v1/applications/app-1/services", tok, "application/json",
				strings.NewReader(strings.Replace(service, "%s", fmt.Sprintf("svc-watched-%d", n/50), 1)), http.StatusCreated)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("watch exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "EVENT ") {
		t.Fatalf("watch printed:\n%s\nstderr: %s", out, stderr.String())
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "ADDED ") || !strings.Contains(l, "svc-watched-") {
			t.Fatalf("watch printed %q:\n%s", l, out)
		}
	}
}
