package services_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// BenchmarkRegisterReplicaGuarantee is POST .../services (with the wait for
// the local cache) against one primary with one replica under three
// Sentinels, side by side: straight to the primary (redis://), through the
// Sentinels (redis+sentinel://), and through the Sentinels with every write
// waiting for the replica (min_replicas=1). 32 concurrent clients on 2 CPUs,
// as BenchmarkRegister, in three rounds.
func BenchmarkRegisterReplicaGuarantee(b *testing.B) {
	redis.SetLogger(quiet{}) // the failover client's notices would split the result lines
	ha := testenv.NewSentinel(b, testenv.SentinelOptions{})
	primary, err := ha.Primary(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	modes := []struct{ name, url string }{
		{"primary", primary.URL()},
		{"sentinel", ha.URL("")},
		{"sentinel+min_replicas=1", ha.URL("min_replicas=1")},
	}
	// Rounds alternate the modes, so a machine's load falls on all of them
	// (go test names the repeated sub-benchmarks NAME#01, #02...).
	for round := range 3 {
		for _, tc := range modes {
			b.Run(tc.name, func(b *testing.B) {
				benchRegister(b, tc.url, fmt.Sprintf("bench%d-%s", round, strings.NewReplacer("+", "-", "=", "-").Replace(tc.name)))
			})
		}
	}
}

// benchRegister runs b.N registrations through the handler with its cache
// over a store opened from url.
func benchRegister(b *testing.B, url, prefix string) {
	st, closeStore, err := store.Open(url, store.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer closeStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := services.NewCache(st, store.CacheOptions{})
	go cache.Run(ctx)
	h := services.New(services.Deps{Store: st, Cache: cache, Authenticate: benchAuth})
	body := fmt.Sprintf(benchService, "bench")
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", services.BasePath+"/applications/app/services", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer app")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 201 {
				b.Fatalf("register: %d %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}

// quiet is a go-redis logger that drops everything.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
