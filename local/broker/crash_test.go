package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/relay"
	"github.com/kmep-io/kmep/manifests"
	"github.com/kmep-io/kmep/store"
)

// child is one of kmep's binaries running as a child process.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startChild(t *testing.T, bin, logPath string, env ...string) *child {
	t.Helper()
	c := &child{name: filepath.Base(bin), done: make(chan struct{}), log: logPath}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	c.cmd = exec.Command(bin)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = lf, lf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill(t) })
	return c
}

// kill sends SIGKILL and waits for the exit.
func (c *child) kill(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die within 10 s of SIGKILL", c.name)
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func waitHealthy(t *testing.T, c *child, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-c.done:
			t.Fatalf("%s exited:\n%s", c.name, c.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 30 s: %v\n%s", c.name, err, c.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// swappable is the Broker's ingress across broker restarts: the same
// address, whichever broker runs.
type swappable struct{ cur atomic.Pointer[broker.Broker] }

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.cur.Load().ServeHTTP(w, r) }

// TestAtLeastOnceAcrossCrashes runs the cluster's shape with real
// processes: the relay, notify and deadletter binaries over one
// redis-server, and between them this package's broker standing in for the
// Knative Broker on InMemoryChannel (the Triggers of manifests/
// eventing.yaml, over HTTP). Half of the callbacks fail; while their
// notifications wait in notify's and the broker's retries, the broker's
// queue is dropped (a restart of the broker: events lost between relay
// and notify) and, in the second case, notify and the relay are killed
// with SIGKILL too. Once the callbacks recover, every notification
// arrives: the relay publishes again what notify has not settled after the
// redelivery timeout (3 s here). It logs the lost (must be 0) and
// duplicate deliveries per callback per change.
func TestAtLeastOnceAcrossCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay, notify and deadletter binaries")
	}
	bins := t.TempDir()
	for _, pkg := range []string{"longrunning/relay/cmd", "triggers/notify/cmd", "triggers/deadletter/cmd"} {
		out := filepath.Join(bins, strings.Split(pkg, "/")[1])
		if b, err := exec.Command("go", "build", "-o", out, "github.com/kmep-io/kmep/"+pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	for _, tc := range []struct {
		name                  string
		killNotify, killRelay bool
	}{
		{name: "broker queue dropped"},
		{name: "broker queue dropped, notify and relay killed", killNotify: true, killRelay: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crashCase(t, bins, tc.killNotify, tc.killRelay)
		})
	}
}

func crashCase(t *testing.T, bins string, killNotify, killRelay bool) {
	ctx := context.Background()
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	st, err := store.New(store.Options{Client: r.Client(t)}) // the binaries' prefix
	if err != nil {
		t.Fatal(err)
	}
	// The relay's group starts at "$": it must exist before the changes.
	if err := st.EnsureGroup(ctx, relay.Group, "$"); err != nil {
		t.Fatal(err)
	}
	cb := testenv.NewTally("/flaky/")
	cb.Failing.Store(true)
	cbSrv := httptest.NewServer(cb)
	defer cbSrv.Close()
	logs := t.TempDir()
	redisEnv := "REDIS_URL=" + r.URL()

	notifyAddr, deadAddr := freeAddr(t), freeAddr(t)
	startNotify := func() *child {
		c := startChild(t, filepath.Join(bins, "notify"), filepath.Join(logs, "notify.log"), redisEnv,
			"PORT="+strings.Split(notifyAddr, ":")[1], "KMEP_CALLBACK_ALLOW=127.0.0.0/8")
		waitHealthy(t, c, "http://"+notifyAddr)
		return c
	}
	notify := startNotify()
	dead := startChild(t, filepath.Join(bins, "deadletter"), filepath.Join(logs, "deadletter.log"), redisEnv,
		"PORT="+strings.Split(deadAddr, ":")[1])
	waitHealthy(t, dead, "http://"+deadAddr)

	trs, err := broker.LoadTriggers(manifests.Eventing)
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(dest duckv1.Destination) (broker.Target, error) {
		if dest.Ref != nil {
			switch dest.Ref.Name {
			case "notify":
				return broker.Target{URL: "http://" + notifyAddr}, nil
			case "deadletter":
				return broker.Target{URL: "http://" + deadAddr}, nil
			case "installer": // no instance changes here: acknowledged
				return broker.Target{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}, nil
			}
		}
		return broker.Target{}, errors.New("unknown destination")
	}
	ingress := &swappable{}
	startBroker := func() (stop func()) {
		b, err := broker.New(broker.Options{Broker: "kmep", Namespace: "kmep", Triggers: trs, Resolve: resolve, Log: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		ingress.cur.Store(b)
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = b.Run(bctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stopBroker := startBroker()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: ingress}
	go hs.Serve(ln)
	defer hs.Close()

	startRelay := func() *child {
		return startChild(t, filepath.Join(bins, "relay"), filepath.Join(logs, "relay.log"), redisEnv,
			"K_SINK=http://"+ln.Addr().String()+"/kmep/kmep", "KMEP_RELAY_REDELIVERY=3s", "KMEP_RELAY_LEASE_TTL=1s")
	}
	rl := startRelay()
	defer func() {
		if t.Failed() {
			for _, c := range []*child{rl, notify, dead} {
				t.Logf("%s log:\n%s", c.name, c.tail())
			}
		}
	}()

	// Four subscribers of every service, two failing; 25 services: 100
	// notifications.
	paths := []string{"/steady/0", "/flaky/1", "/steady/2", "/flaky/3"}
	for i, p := range paths {
		if _, _, err := st.CreateSubscription(ctx, store.Subscription{ID: fmt.Sprintf("sub-%d", i), AppInstanceID: "subs",
			Type: store.SubServiceAvailability, CallbackReference: cbSrv.URL + p, Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var want, steady []string
	for i := range 25 {
		id := fmt.Sprintf("svc-%02d", i)
		if _, _, err := st.CreateService(ctx, store.ServiceRecord{ID: id, AppInstanceID: "prod", Name: id,
			State: store.StateActive, Info: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			want = append(want, testenv.TallyKey(p, id, "ADDED"))
			if strings.HasPrefix(p, "/steady/") {
				steady = append(steady, testenv.TallyKey(p, id, "ADDED"))
			}
		}
	}
	waitFor(t, 60*time.Second, "the steady callbacks notified", func() bool {
		n, _, _ := cb.Count(steady)
		return n == len(steady)
	})
	waitFor(t, 30*time.Second, "every failing callback tried", func() bool { return cb.Refusals() >= len(want)-len(steady) })
	time.Sleep(time.Second) // into the broker's retries

	if killNotify {
		notify.kill(t)
	}
	stopBroker() // its queue and retry timers are gone
	if killRelay {
		rl.kill(t)
	}
	stopBroker = startBroker()
	defer func() { stopBroker() }()
	if killNotify {
		notify = startNotify()
	}
	if killRelay {
		rl = startRelay()
	}
	arrivedBefore, _, _ := cb.Count(want)
	cb.Failing.Store(false)

	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, missing, _ := cb.Count(want); len(missing) == 0 {
			break
		}
	}
	arrived, missing, dups := cb.Count(want)
	t.Logf("%d notifications (4 callbacks × 25 changes), %d arrived before the faults, %d after; lost %d, duplicates %d",
		len(want), arrivedBefore, arrived-arrivedBefore, len(missing), dups)
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("lost: %v", missing)
	}
	// Every event settled by notify.
	waitFor(t, 30*time.Second, "nothing left pending", func() bool {
		n, err := st.PendingCount(ctx)
		return err == nil && n == 0
	})
}
