package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/rediserver"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// answer is one HTTP answer a writer got.
type answer struct {
	at     time.Time
	status int // 0: no HTTP answer (a transport error)
}

// failoverWriters register services through base from n goroutines until
// stop closes, each registration with an Idempotency-Key and retried after
// a 503's Retry-After until it gets another answer (or stop). They return
// every answer and, per serName, the id of its 201.
func failoverWriters(t *testing.T, base string, n int, stop <-chan struct{}) ([]answer, map[string]string) {
	var mu sync.Mutex
	var answers []answer
	created := map[string]string{}
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				name := fmt.Sprintf("w%02d-%05d", w, i)
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("POST", base+"/applications/app-1/services", strings.NewReader(fmt.Sprintf(benchService, name)))
					req.Header.Set("Authorization", "Bearer app-1")
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Idempotency-Key", "key-"+name)
					resp, err := client.Do(req)
					a := answer{at: time.Now()}
					if err != nil {
						mu.Lock()
						answers = append(answers, a)
						mu.Unlock()
						t.Errorf("%s: %v", name, err)
						time.Sleep(time.Second)
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					a.status = resp.StatusCode
					mu.Lock()
					answers = append(answers, a)
					mu.Unlock()
					if resp.StatusCode == http.StatusServiceUnavailable {
						ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
						if ra <= 0 {
							t.Errorf("%s: 503 without Retry-After", name)
							ra = 1
						}
						time.Sleep(time.Duration(ra) * time.Second)
						continue
					}
					if resp.StatusCode == http.StatusCreated {
						var si struct {
							SerInstanceID string `json:"serInstanceId"`
						}
						_ = json.Unmarshal(body, &si)
						mu.Lock()
						created[name] = si.SerInstanceID
						mu.Unlock()
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	return answers, created
}

// The primary of a Sentinel setup (three Sentinels) is killed (SIGKILL)
// under 16 concurrent writers registering through real HTTP, with the
// replica guarantee on (min_replicas=1): every registration answered 201
// is there after the failover, exactly once and under the id its 201
// named; the outage is answered 503 with Retry-After, nothing else; and the
// handler, its store client and its cache recover on their own, without a
// restart. With one replica, no write can reach a replica once it is the
// primary, so writes are 503s until the old primary is back as the new
// one's replica (restarted here, as its StatefulSet would, once the
// Sentinels have promoted the replica); with two, the Sentinels point the
// other replica at the new primary and writes resume by themselves.
func TestSentinelFailoverLosesNoAcknowledgedRegistration(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) { failover(t, replicas) })
	}
}

func failover(t *testing.T, replicas int) {
	ha := testenv.NewSentinel(t, testenv.SentinelOptions{Replicas: replicas})
	ctx := context.Background()
	old, err := ha.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, closeStore, err := store.Open(ha.URL("min_replicas=1"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeStore() })
	cctx, cancel := context.WithCancel(ctx)
	cache := services.NewCache(st, store.CacheOptions{})
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ts := httptest.NewServer(services.New(services.Deps{Store: st, Cache: cache,
		Authenticate: resttest.Authenticate, Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(ts.Close)

	stop := make(chan struct{})
	var killedAt, promotedAt, replicatedAt atomic.Pointer[time.Time]
	now := func() *time.Time { n := time.Now(); return &n }
	go func() {
		defer close(stop)
		time.Sleep(1500 * time.Millisecond)
		old.Kill()
		killedAt.Store(now())
		deadline := time.Now().Add(60 * time.Second)
		var primary *rediserver.Server
		for {
			if p, err := ha.Primary(ctx); err == nil && p != old {
				primary = p
				break
			}
			if time.Now().After(deadline) {
				t.Error("the Sentinels did not promote a replica within 60 s")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		promotedAt.Store(now())
		if replicas == 1 {
			if err := old.Restart(); err != nil {
				t.Error(err)
				return
			}
		}
		if err := waitReplicated(ctx, primary, 60*time.Second); err != nil {
			t.Error(err)
			return
		}
		replicatedAt.Store(now())
		time.Sleep(2 * time.Second)
	}()
	answers, created := failoverWriters(t, ts.URL+services.BasePath, 16, stop)
	if killedAt.Load() == nil || replicatedAt.Load() == nil {
		t.Fatal("the failover did not complete")
	}
	kill, replicated := *killedAt.Load(), *replicatedAt.Load()

	var before, during, after, unavailable, misanswered int
	var firstAfter time.Time
	for _, a := range answers {
		switch a.status {
		case http.StatusCreated:
			switch {
			case a.at.Before(kill):
				before++
			case a.at.After(replicated):
				after++
			default:
				during++
			}
			if a.at.After(kill) && (firstAfter.IsZero() || a.at.Before(firstAfter)) {
				firstAfter = a.at
			}
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			misanswered++
		}
	}
	recs, err := st.AllServices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string][]string{}
	for _, r := range recs {
		stored[r.Name] = append(stored[r.Name], r.ID)
	}
	lost, duplicated := 0, 0
	for name, id := range created {
		ids := stored[name]
		if len(ids) != 1 || ids[0] != id {
			lost++
			t.Errorf("%s answered 201 as %s, stored as %v after the failover", name, id, ids)
		}
	}
	for name, ids := range stored {
		if len(ids) > 1 {
			duplicated++
			t.Errorf("%s stored %d times: %v", name, len(ids), ids)
		}
	}
	t.Logf("%d answers: 201 %d before the kill, %d until the new primary had a replica, %d after; 503 %d; other %d",
		len(answers), before, during, after, unavailable, misanswered)
	t.Logf("kill -9 → replica promoted %s → new primary replicated %s; first 201 after the kill at %s",
		promotedAt.Load().Sub(kill).Round(time.Millisecond), replicated.Sub(kill).Round(time.Millisecond), firstAfter.Sub(kill).Round(time.Millisecond))
	t.Logf("%d registrations answered 201, %d stored: lost %d, stored twice %d, misanswered %d", len(created), len(recs), lost, duplicated, misanswered)
	if misanswered > 0 {
		t.Errorf("%d answers were neither 201 nor 503", misanswered)
	}
	if unavailable == 0 {
		t.Error("no 503: the kill did not interrupt the writers")
	}
	if after == 0 {
		t.Error("no 201 once the new primary had a replica: the platform did not recover")
	}
}

// waitReplicated waits until primary has a replica online.
func waitReplicated(ctx context.Context, primary *rediserver.Server, within time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: primary.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(within)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:master") && strings.Contains(info, ",state=online,") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no replica online after %s: %v %s", primary.Addr, within, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
