package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// BenchmarkLapse5000 and BenchmarkLapse20000 measure the change →
// notification path of the all-in-one when that many services lapse
// together (an edge node hosting many apps dies): the services share one
// liveness deadline; the in-process reaper suspends them, the relay
// publishes the STATE_CHANGED events, the embedded broker routes them to
// notify, which POSTs each service's one subscriber (spread over 50
// callback servers in this process). During the burst an unrelated service
// changes state every 100 ms for 2 s.
//
// Each iteration is one lapse (the services are first made ACTIVE again by
// heartbeats, and that burst is drained unmeasured). Metrics, from the
// deadline to the arrival of each SUSPENDED notification at its callback:
// p50-ms, p99-ms, max-ms; changes/s: services / max; and, from each
// unrelated change to the arrival of its notification: unrelated-p50-ms,
// unrelated-p99-ms, unrelated-max-ms; and the CPU used from the deadline
// to the last notification per 1,000 changes, by this process (platform,
// callback servers and benchmark: cpu-ms/1k-changes) and by redis-server
// (redis-cpu-ms/1k-changes), which do not depend on what else the
// machine runs as the latencies do.
//
// Each runs twice, side by side: /fifo with the bulk lane off
// (allinone.Config.FIFO: every change waits its turn, the baseline) and
// /fair with it on (the suspensions are bulk changes, which the unrelated
// change passes in the relay and the broker).
//
//	go test -run '^$' -bench Lapse -benchtime 3x ./local/allinone/
func BenchmarkLapse5000(b *testing.B)  { benchLanes(b, 5000) }
func BenchmarkLapse20000(b *testing.B) { benchLanes(b, 20000) }

func benchLanes(b *testing.B, services int) {
	b.Run("fifo", func(b *testing.B) { benchLapse(b, services, true) })
	b.Run("fair", func(b *testing.B) { benchLapse(b, services, false) })
}

// lapseInbox records when each callback path got a notification of which
// change and state.
type lapseInbox struct {
	mu      sync.Mutex
	got     map[string]time.Time // path + " " + changeType + " " + state → first arrival
	waiters map[*lapseWaiter]struct{}
}

// lapseWaiter is a wait for the keys still in missing.
type lapseWaiter struct {
	missing map[string]struct{}
	done    chan struct{}
}

func newLapseInbox() *lapseInbox {
	return &lapseInbox{got: map[string]time.Time{}, waiters: map[*lapseWaiter]struct{}{}}
}

func (in *lapseInbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(r.Body)
	var n struct {
		ServiceReferences []struct {
			State      string `json:"state"`
			ChangeType string `json:"changeType"`
		} `json:"serviceReferences"`
	}
	_ = json.Unmarshal(body, &n)
	what := ""
	if len(n.ServiceReferences) == 1 {
		what = n.ServiceReferences[0].ChangeType + " " + n.ServiceReferences[0].State
	}
	k := r.URL.Path + " " + what
	in.mu.Lock()
	if _, ok := in.got[k]; !ok {
		in.got[k] = at
		for wt := range in.waiters {
			if _, ok := wt.missing[k]; ok {
				delete(wt.missing, k)
				if len(wt.missing) == 0 {
					close(wt.done)
					delete(in.waiters, wt)
				}
			}
		}
	}
	in.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// wait waits until every key has arrived, or timeout; it returns the
// arrival times (zero for the missing).
func (in *lapseInbox) wait(keys []string, timeout time.Duration) []time.Time {
	wt := &lapseWaiter{missing: map[string]struct{}{}, done: make(chan struct{})}
	in.mu.Lock()
	for _, k := range keys {
		if _, ok := in.got[k]; !ok {
			wt.missing[k] = struct{}{}
		}
	}
	if len(wt.missing) > 0 {
		in.waiters[wt] = struct{}{}
	} else {
		close(wt.done)
	}
	in.mu.Unlock()
	select {
	case <-wt.done:
	case <-time.After(timeout):
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.waiters, wt)
	out := make([]time.Time, len(keys))
	for i, k := range keys {
		out[i] = in.got[k]
	}
	return out
}

// forget drops the arrivals of a change and state ("STATE_CHANGED ACTIVE").
func (in *lapseInbox) forget(what string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k := range in.got {
		if strings.HasSuffix(k, " "+what) {
			delete(in.got, k)
		}
	}
}

// callbackHosts is how many callback servers the subscribers are spread
// over (apps have callbacks of their own; the notifier keeps a few idle
// connections per host).
const callbackHosts = 50

func benchLapse(b *testing.B, services int, fifo bool) {
	r := testenv.NewRedis(b, testenv.RedisOptions{})
	in := newLapseInbox()
	cbs := make([]string, callbackHosts)
	for i := range cbs {
		srv := httptest.NewServer(in)
		defer srv.Close()
		cbs[i] = srv.URL
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- allinone.Run(ctx, allinone.Config{Listener: ln, RedisURL: r.URL(), DNSAddr: "127.0.0.1:0",
			DataDir: b.TempDir(), AdminToken: admin, CallbackAllow: "127.0.0.0/8", FIFO: fifo,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	waitHealthy(b, "http://"+ln.Addr().String())

	rdb := r.Client(b)
	st, err := store.New(store.Options{Client: rdb})
	if err != nil {
		b.Fatal(err)
	}
	bg := context.Background()
	const interval = 10 // s: the recovery burst must drain before the deadline
	ids := make([]string, services)
	app := func(i int) string { return fmt.Sprintf("app-%d", i%100) }
	keys := func(what string, sel []int) []string {
		out := make([]string, len(sel))
		for j, i := range sel {
			out[j] = "/cb/" + ids[i] + " " + what
		}
		return out
	}
	all := make([]int, services)
	parallel(b, services, func(i int) error {
		all[i] = i
		ids[i] = fmt.Sprintf("lapse-%05d", i)
		sub := store.Subscription{ID: "sub-" + ids[i], AppInstanceID: "watcher", Type: store.SubServiceAvailability,
			CallbackReference: cbs[i%len(cbs)] + "/cb/" + ids[i], Filter: store.ServiceFilter{SerInstanceIDs: []string{ids[i]}}, Body: []byte(`{}`)}
		if _, _, err := st.CreateSubscription(bg, sub); err != nil {
			return err
		}
		_, _, err := st.CreateService(bg, store.ServiceRecord{ID: ids[i], AppInstanceID: app(i),
			Name: "svc-" + ids[i], State: store.StateActive, LivenessInterval: interval, Info: []byte(`{}`)})
		return err
	})
	other := store.ServiceRecord{ID: "unrelated", AppInstanceID: "other", Name: "unrelated", State: store.StateActive, Info: []byte(`{}`)}
	if _, _, err := st.CreateSubscription(bg, store.Subscription{ID: "sub-unrelated", AppInstanceID: "watcher",
		Type: store.SubServiceAvailability, CallbackReference: cbs[0] + "/cb/unrelated",
		Filter: store.ServiceFilter{SerInstanceIDs: []string{other.ID}}, Body: []byte(`{}`)}); err != nil {
		b.Fatal(err)
	}
	if other, _, err = st.CreateService(bg, other); err != nil {
		b.Fatal(err)
	}
	if got := in.wait(keys("ADDED ACTIVE", all), 120*time.Second); slices.Contains(got, time.Time{}) {
		b.Fatal("ADDED notifications did not all arrive within 120 s")
	}

	var lat, unrelated, cpu, rcpu []time.Duration
	var rates []float64
	for b.Loop() {
		b.StopTimer()
		// Heartbeats at one instant t0 give every service the deadline
		// t0 + interval + grace; those SUSPENDED come back ACTIVE (that
		// burst is drained here, unmeasured).
		in.forget("STATE_CHANGED ACTIVE")
		in.forget("STATE_CHANGED SUSPENDED")
		t0 := time.Now()
		hb, err := store.New(store.Options{Client: rdb, Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		back := make([]bool, services)
		parallel(b, services, func(i int) error {
			l, err := hb.Heartbeat(bg, app(i), ids[i])
			back[i] = l.StreamID != ""
			return err
		})
		var recovered []int
		for i, ok := range back {
			if ok {
				recovered = append(recovered, i)
			}
		}
		deadline := time.UnixMilli(t0.UnixMilli()).Add(interval*time.Second + store.Grace(interval*time.Second))
		if got := in.wait(keys("STATE_CHANGED ACTIVE", recovered), time.Until(deadline)); slices.Contains(got, time.Time{}) {
			b.Fatalf("the recovery burst (%d) did not drain before the deadline", len(recovered))
		}
		time.Sleep(time.Until(deadline))
		cpu0, rcpu0 := selfCPU(), redisCPU(b, rdb)
		b.StartTimer()

		// The unrelated service changes state every 100 ms for 2 s.
		var uKeys []string
		var uAt []time.Time
		for k := 0; k < 20; k++ {
			time.Sleep(time.Until(deadline.Add(time.Duration(k+1) * 100 * time.Millisecond)))
			other.State = store.StateInactive
			if k%2 == 1 {
				other.State = store.StateActive
			}
			at := time.Now()
			if other, _, err = st.UpdateService(bg, other, 0); err != nil {
				b.Fatal(err)
			}
			uKeys, uAt = append(uKeys, "/cb/unrelated STATE_CHANGED "+other.State), append(uAt, at)
			// Each state is awaited before it repeats.
			if k%2 == 1 {
				got := in.wait(uKeys[k-1:k+1], 120*time.Second)
				for j, g := range got {
					if g.IsZero() {
						b.Fatalf("unrelated change %s not notified within 120 s", uKeys[k-1+j])
					}
					unrelated = append(unrelated, g.Sub(uAt[k-1+j]))
				}
				in.forget("STATE_CHANGED INACTIVE")
				in.mu.Lock()
				delete(in.got, "/cb/unrelated STATE_CHANGED ACTIVE")
				in.mu.Unlock()
			}
		}
		got := in.wait(keys("STATE_CHANGED SUSPENDED", all), 120*time.Second)
		b.StopTimer()
		cpu = append(cpu, selfCPU()-cpu0)
		rcpu = append(rcpu, redisCPU(b, rdb)-rcpu0)
		var last time.Duration
		for i, g := range got {
			if g.IsZero() {
				b.Fatalf("%s: no SUSPENDED notification within 120 s", ids[i])
			}
			d := g.Sub(deadline)
			lat = append(lat, d)
			last = max(last, d)
		}
		rates = append(rates, float64(services)/last.Seconds())
		b.StartTimer()
	}
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(lat, 100)), "max-ms")
	slices.Sort(rates)
	b.ReportMetric(rates[len(rates)/2], "changes/s")
	b.ReportMetric(ms(percentile(unrelated, 50)), "unrelated-p50-ms")
	b.ReportMetric(ms(percentile(unrelated, 99)), "unrelated-p99-ms")
	b.ReportMetric(ms(percentile(unrelated, 100)), "unrelated-max-ms")
	perK := float64(services) / 1000
	b.ReportMetric(ms(percentile(cpu, 50))/perK, "cpu-ms/1k-changes")
	b.ReportMetric(ms(percentile(rcpu, 50))/perK, "redis-cpu-ms/1k-changes")
}

// selfCPU is the CPU time this process used so far (user + system): the
// all-in-one, the callback server and the benchmark itself.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the CPU time redis-server used so far (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// parallel runs f(0..n-1) on 16 goroutines and fails b on the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func waitHealthy(b *testing.B, base string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("platform not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, max(0, (len(s)*p+99)/100-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
