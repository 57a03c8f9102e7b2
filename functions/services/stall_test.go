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
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/rest/resttest"
)

// outcome is what one logical registration got: the status of each attempt
// and the id of its 201.
type outcome struct {
	name     string
	statuses []int
	id       string
}

// registerUntil runs workers that register services named wNN-IIII through
// base until stop is closed. Each registration is sent once, or, with
// idempotent, with an Idempotency-Key and retried after a 503's Retry-After
// until it gets another answer.
func registerUntil(t *testing.T, base string, workers int, idempotent bool, stop <-chan struct{}) []outcome {
	t.Helper()
	var mu sync.Mutex
	var all []outcome
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := outcome{name: fmt.Sprintf("w%02d-%04d", w, i)}
				key := "key-" + o.name
				for {
					req, _ := http.NewRequest("POST", base+"/applications/app-1/services",
						strings.NewReader(fmt.Sprintf(benchService, o.name)))
					req.Header.Set("Authorization", "Bearer app-1")
					req.Header.Set("Content-Type", "application/json")
					if idempotent {
						req.Header.Set("Idempotency-Key", key)
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Errorf("%s: %v", o.name, err)
						break
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					o.statuses = append(o.statuses, resp.StatusCode)
					if resp.StatusCode == http.StatusCreated {
						var si struct {
							SerInstanceID string `json:"serInstanceId"`
						}
						_ = json.Unmarshal(body, &si)
						o.id = si.SerInstanceID
					}
					if resp.StatusCode != http.StatusServiceUnavailable || !idempotent {
						if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
							t.Errorf("%s: 503 without Retry-After", o.name)
						}
						break
					}
					ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					if ra <= 0 {
						t.Errorf("%s: 503 without Retry-After", o.name)
						break
					}
					time.Sleep(time.Duration(ra) * time.Second)
				}
				mu.Lock()
				all = append(all, o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return all
}

// A Redis stall (redis-server paused with SIGSTOP for 3 s, longer than the
// client's 2 s read timeout) under 16 concurrent registrations through real
// HTTP. No answer may contradict what was stored: every 201 is stored once,
// never a 409 for a registration that the same request stored, nothing
// stored twice; what the stall interrupts is a 503 with Retry-After, and it
// was stored once or not at all. With an Idempotency-Key, the client's retry
// after the 503 finds the first result: every registration ends stored
// exactly once, under the id its 201 names.
func TestRedisStallAnswersTruthfully(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotencyKey=%v", idempotent), func(t *testing.T) {
			r := testenv.NewRedis(t, testenv.RedisOptions{})
			st, closeStore, err := store.Open(r.URL(), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = closeStore() })
			ctx, cancel := context.WithCancel(context.Background())
			cache := services.NewCache(st, store.CacheOptions{})
			done := make(chan struct{})
			go func() { defer close(done); _ = cache.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			ts := httptest.NewServer(services.New(services.Deps{Store: st, Cache: cache,
				Authenticate: resttest.Authenticate, Log: slog.New(slog.DiscardHandler)}))
			t.Cleanup(ts.Close)

			stop := make(chan struct{})
			go func() {
				time.Sleep(500 * time.Millisecond)
				if err := r.Pause(); err != nil {
					t.Error(err)
				}
				time.Sleep(3 * time.Second)
				if err := r.Resume(); err != nil {
					t.Error(err)
				}
				time.Sleep(1500 * time.Millisecond)
				close(stop)
			}()
			outcomes := registerUntil(t, ts.URL+services.BasePath, 16, idempotent, stop)

			stored := map[string][]string{} // serName -> ids
			recs, err := st.AllServices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				stored[rec.Name] = append(stored[rec.Name], rec.ID)
			}
			var requests, created, unavailable, misanswered, lost, duplicated, appliedAfter503, dropped503 int
			for _, o := range outcomes {
				requests += len(o.statuses)
				ids := stored[o.name]
				if len(ids) > 1 {
					duplicated++
					t.Errorf("%s stored %d times: %v (answers %v)", o.name, len(ids), ids, o.statuses)
				}
				last := o.statuses[len(o.statuses)-1]
				for _, s := range o.statuses {
					switch s {
					case http.StatusCreated:
						created++
					case http.StatusServiceUnavailable:
						unavailable++
					default:
						misanswered++
						t.Errorf("%s answered %d (answers %v, stored %d times)", o.name, s, o.statuses, len(ids))
					}
				}
				switch {
				case last == http.StatusCreated && (len(ids) != 1 || ids[0] != o.id):
					lost++
					t.Errorf("%s: 201 with id %s, stored as %v", o.name, o.id, ids)
				case last == http.StatusServiceUnavailable && len(ids) == 1:
					appliedAfter503++
				case last == http.StatusServiceUnavailable:
					dropped503++
				}
			}
			t.Logf("%d registrations, %d requests: %d answered 201, %d answered 503 (of these, last answers: %d stored once, %d not stored); misanswered %d, lost %d, stored twice %d",
				len(outcomes), requests, created, unavailable, appliedAfter503, dropped503, misanswered, lost, duplicated)
			if unavailable == 0 {
				t.Fatal("no request was answered 503: the stall did not hit a request")
			}
			if idempotent && (appliedAfter503 > 0 || dropped503 > 0) {
				t.Errorf("with an Idempotency-Key every registration should end in a 201")
			}
		})
	}
}
