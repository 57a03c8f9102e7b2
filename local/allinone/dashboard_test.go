package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/triggers/deadletter"
)

// chromium is the browser the dashboard test drives (Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIPPED (chromium missing)")
	return ""
}

// TestDashboardInBrowser drives the operator's dashboard in a real
// headless Chromium against the all-in-one: without the admin token it
// shows the login and no data (a wrong token and an app's token are
// refused); logged in, a service registered over the API appears without a
// reload, turns SUSPENDED when it misses its heartbeat, and a dead letter
// can be opened and redelivered, which delivers its notification.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, logs := platform(t, allinone.Config{RedisURL: r.URL(), CallbackAllow: "127.0.0.0/8"})
	c := client{t, base}
	c.provision("shop", "AKSHOP1", "secret-key-shop1")
	c.provision("watch", "AKWATCH1", "secret-key-watch1")
	shop, watch := c.token("AKSHOP1", "secret-key-shop1"), c.token("AKWATCH1", "secret-key-watch1")
	box := newInbox()
	cb := httptest.NewServer(box)
	defer cb.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1600),
		chromedp.UserDataDir(t.TempDir()))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	start := time.Now()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		defer func() { t.Logf("%6.2fs %s", time.Since(start).Seconds(), what) }()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v\nplatform log tail:\n%s", what, err, tail(logs.String(), 20))
		}
	}
	eval := func(js string) string {
		t.Helper()
		out, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return out
	}
	// waitText polls the text of the first element sel matches until it
	// contains want.
	waitText := func(sel, want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		got := ""
		for time.Now().Before(deadline) {
			got = eval(`(function(){const e=document.querySelector(` + jsString(sel) + `);return e?e.textContent:"<none>"})()`)
			if strings.Contains(got, want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s shows %q, never %q within %v", sel, got, want, within)
	}

	// Without the token: the login form, no data.
	run("open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("#login")))
	if got := eval(`String(document.getElementById("board").hidden) + " " + document.querySelectorAll("tbody tr").length`); got != "true 0" {
		t.Fatalf("without a token: board hidden and rows = %q, want \"true 0\"", got)
	}
	for _, bad := range []string{"not-the-admin-token-at-all", shop} {
		run("log in with a wrong token", chromedp.SetValue(chromedp.ID("#token"), bad), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
		waitText("#login-error", "refused", 10*time.Second)
		if got := eval(`String(document.getElementById("board").hidden)`); got != "true" {
			t.Fatalf("a refused token shows the board")
		}
	}

	// Logged in: the board, following the change stream.
	run("log in", chromedp.SetValue(chromedp.ID("#token"), admin), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("#board")))
	waitText("#live", "live", 10*time.Second)
	eval(`window.kmepNoReload = "still the same page"; "ok"`)
	waitText("#apps tbody", "AKSHOP1", 10*time.Second)
	if strings.Contains(eval(`document.body.textContent`), "secret-key-shop1") {
		t.Fatal("the dashboard shows a secret key")
	}

	// A service registered over the API appears, then lapses.
	body := strings.Replace(strings.Replace(svcBody, "%s", "ui-svc", 1), `"serializer":"JSON",`, `"serializer":"JSON","livenessInterval":2,`, 1)
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/shop/services", shop, body)
	c.expect(res, b, http.StatusCreated)
	row := `tr[data-service="ui-svc"]`
	waitText(row+" td.state", "ACTIVE", 10*time.Second)
	waitText(row+" td.liveness", "heartbeat", 5*time.Second)
	waitText(row+" td.state", "SUSPENDED", 20*time.Second)
	waitText(row+" td.liveness", "suspended", 5*time.Second)

	// A dead letter: the ADDED event of a service registered before anyone
	// subscribed, dead-lettered as Knative does (recorded through the
	// store); redelivered now, it reaches the subscriber that came since.
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/shop/services", shop, strings.Replace(svcBody, "%s", "dl-svc", 1))
	c.expect(res, b, http.StatusCreated)
	res, b = c.do("POST", "/mep/mec_service_mgmt/v1/applications/watch/subscriptions", watch,
		`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+cb.URL+`/cb","filteringCriteria":{"serNames":["dl-svc"]}}`)
	c.expect(res, b, http.StatusCreated)
	recordDeadLetter(t, r, "dl-svc")
	dlRow := `#deadletters tbody tr[data-deadletter]`
	waitText(dlRow, "dev.kmep.service.changed.v1", 15*time.Second)
	waitText(dlRow, "500", time.Second)
	run("open the dead letter", chromedp.Click(chromedp.CSS(dlRow+" button.open")), chromedp.WaitVisible(chromedp.ID("#deadletter")))
	waitText("#dl-record", "dl-svc", 5*time.Second)
	shot := screenshot(t, bctx)
	run("redeliver", chromedp.Click(chromedp.ID("#dl-redeliver")))
	waitText("#dl-result", "redelivered", 10*time.Second)
	box.wait(t, 10*time.Second, serviceChange("dl-svc", "ADDED"))
	waitText("#deadletters tbody", "none", 10*time.Second)

	if got := eval(`String(window.kmepNoReload)`); got != "still the same page" {
		t.Fatalf("the page was reloaded: %q", got)
	}
	// Logged out, and on a fresh load without the token: the login, no data.
	run("log out", chromedp.Click(chromedp.ID("#logout")), chromedp.WaitVisible(chromedp.ID("#login")))
	run("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("#login")))
	if got := eval(`String(document.getElementById("board").hidden) + " " + document.querySelectorAll("tbody tr").length`); got != "true 0" {
		t.Fatalf("after logging out: board hidden and rows = %q, want \"true 0\"", got)
	}
	if out := os.Getenv("KMEP_DASHBOARD_SCREENSHOT"); out != "" {
		if err := os.WriteFile(out, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", out)
	}
}

// recordDeadLetter records, as the deadletter trigger does, the ADDED
// event of service name with the error a failing notify would leave.
func recordDeadLetter(t *testing.T, r *testenv.Redis, name string) {
	t.Helper()
	ctx := context.Background()
	rdb, err := store.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := st.ReadChanges(ctx, "0", 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range cs {
		if ch.Kind != store.KindService || ch.Service.Name != name || ch.Type != "ADDED" {
			continue
		}
		e, ok, err := events.FromChange(ch)
		if err != nil || !ok {
			t.Fatalf("event of %s: %v %v", name, ok, err)
		}
		e.SetExtension(deadletter.ExtErrorDest, "http://notify.kmep.svc.cluster.local")
		e.SetExtension(deadletter.ExtErrorCode, 500)
		e.SetExtension(deadletter.ExtErrorData, "callback answered 500")
		rec, err := deadletter.NewRecord(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(rec)
		if err := st.RecordDeadLetter(ctx, e.ID(), payload); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no ADDED change of %s", name)
}

// screenshot is a PNG of the whole page; it fails the test unless it
// decodes as a PNG of a page's size.
func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Fatalf("screenshot is %v", b)
	}
	_ = os.WriteFile(filepath.Join(t.TempDir(), "dashboard.png"), buf, 0o644)
	return buf
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
