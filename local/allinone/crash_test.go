package allinone_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
)

// kmepProcess is the all-in-one binary running as a child.
type kmepProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (p *kmepProcess) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("kmep did not die within 10 s of SIGKILL")
	}
}

func (p *kmepProcess) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestCrashMidRetryLosesNoNotification runs the real all-in-one binary
// (local/cmd/kmep, as make run builds it) as a child process over a
// redis-server that outlives it, and kills it with SIGKILL while half of
// the callbacks are failing (their notifications waiting in notify's and
// the embedded broker's retries, in memory). After a restart, every
// notification arrives: the relay kept each event pending until notify
// settled it, and publishes what was pending again at start. It logs the
// lost (must be 0) and duplicate deliveries per callback per change.
func TestCrashMidRetryLosesNoNotification(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the all-in-one binary")
	}
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	bin := filepath.Join(t.TempDir(), "kmep")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kmep-io/kmep/local/cmd/kmep").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ta := testenv.NewTally("/flaky/")
	ta.Failing.Store(true)
	cbSrv := httptest.NewServer(ta)
	defer cbSrv.Close()

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir, logDir := t.TempDir(), t.TempDir()
	runs := 0
	start := func() *kmepProcess {
		t.Helper()
		runs++
		p := &kmepProcess{done: make(chan struct{}), log: filepath.Join(logDir, fmt.Sprintf("kmep-%d.log", runs))}
		lf, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		p.cmd = exec.Command(bin)
		p.cmd.Env = append(os.Environ(), "KMEP_ADDR="+addr, "KMEP_DATA_DIR="+dataDir, "REDIS_URL="+r.URL(),
			"KMEP_ADMIN_TOKEN="+admin, "KMEP_CALLBACK_ALLOW=127.0.0.0/8", "KMEP_DNS_ADDR=127.0.0.1:0", "KMEP_LOG_LEVEL=info")
		p.cmd.Stdout, p.cmd.Stderr = lf, lf
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			if t.Failed() {
				t.Logf("kmep run %d log:\n%s", runs, p.tail())
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			res, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return p
				}
			}
			select {
			case <-p.done:
				t.Fatalf("kmep exited: %s", p.tail())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("kmep not healthy within 60 s: %v\n%s", err, p.tail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	p := start()
	c := client{t, "http://" + addr}
	c.provision("prod", "AKCRASHPROD", "secret-key-crash-prod")
	c.provision("subs", "AKCRASHSUBS", "secret-key-crash-subs")
	prod, subs := c.token("AKCRASHPROD", "secret-key-crash-prod"), c.token("AKCRASHSUBS", "secret-key-crash-subs")
	// Ten subscribers of every service, five of them failing; eleven
	// services: 110 notifications.
	var paths []string
	for i := range 10 {
		path := fmt.Sprintf("/steady/%d", i)
		if i%2 == 1 {
			path = fmt.Sprintf("/flaky/%d", i)
		}
		paths = append(paths, path)
		res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/subs/subscriptions", subs,
			`{"subscriptionType":"SerAvailabilityNotificationSubscription","callbackReference":"`+cbSrv.URL+path+`"}`)
		c.expect(res, b, http.StatusCreated)
	}
	var want, steady []string
	for i := range 11 {
		res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/prod/services", prod,
			strings.Replace(svcBody, "%s", fmt.Sprintf("crash-%d", i), 1))
		c.expect(res, b, http.StatusCreated)
		var s struct {
			SerInstanceID string `json:"serInstanceId"`
		}
		if err := json.Unmarshal(b, &s); err != nil || s.SerInstanceID == "" {
			t.Fatalf("registration answer %s: %v", b, err)
		}
		for _, path := range paths {
			k := testenv.TallyKey(path, s.SerInstanceID, "ADDED")
			want = append(want, k)
			if strings.HasPrefix(path, "/steady/") {
				steady = append(steady, k)
			}
		}
	}

	// The steady callbacks have theirs; the failing ones are being retried.
	waitUntil(t, 60*time.Second, "the steady callbacks notified", func() bool {
		n, _, _ := ta.Count(steady)
		return n == len(steady)
	})
	waitUntil(t, 30*time.Second, "every failing callback tried", func() bool { return ta.Refusals() >= len(want)-len(steady) })
	time.Sleep(time.Second) // into the broker's retries
	p.kill(t)
	arrivedBefore, _, _ := ta.Count(want)

	start()
	ta.Failing.Store(false)
	// Not waitUntil: the figures are logged either way.
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, missing, _ := ta.Count(want); len(missing) == 0 {
			break
		}
	}
	time.Sleep(2 * time.Second) // late duplicates, if any
	arrived, missing, dups := ta.Count(want)
	t.Logf("crash mid-retry: %d notifications (10 callbacks × 11 changes), %d arrived before the kill, %d after; lost %d, duplicates %d",
		len(want), arrivedBefore, arrived-arrivedBefore, len(missing), dups)
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("lost: %v", missing)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
