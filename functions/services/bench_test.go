package services_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/problem"
)

const benchService = `{"serName":"%s","version":"1.0","state":"ACTIVE","serializer":"JSON","livenessInterval":10,
"transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"1.1",
"endpoint":{"addresses":[{"host":"10.0.0.5","port":8080}]},"security":{}}}`

func benchAuth(r *http.Request) (string, error) {
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		return a[7:], nil
	}
	return "", problem.Unauthorized("missing bearer token")
}

// benchHandler is the handler with its cache over a real redis-server
// holding n services named svc-00000...
func benchHandler(b *testing.B, n int) http.Handler {
	r := testenv.NewRedis(b, testenv.RedisOptions{})
	st, err := store.New(store.Options{Client: r.Client(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	cache := services.NewCache(st, store.CacheOptions{})
	go cache.Run(ctx)
	h := services.New(services.Deps{Store: st, Cache: cache, Authenticate: benchAuth})
	for i := 0; i < n; i++ {
		req := httptest.NewRequest("POST", services.BasePath+"/applications/app/services", strings.NewReader(fmt.Sprintf(benchService, fmt.Sprintf("svc-%05d", i))))
		req.Header.Set("Authorization", "Bearer app")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 201 {
			b.Fatalf("seed %d: %d %s", i, w.Code, w.Body)
		}
	}
	for !cache.Fresh() || cache.Len() < n {
		time.Sleep(time.Millisecond)
	}
	return h
}

// BenchmarkDiscoverByName is GET /services?ser_name=X among 10,000
// services, served from the cache, without the network.
func BenchmarkDiscoverByName(b *testing.B) {
	h := benchHandler(b, 10000)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", services.BasePath+"/services?ser_name=svc-04242", nil)
		req.Header.Set("Authorization", "Bearer app")
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 || w.Body.Len() < 100 {
				b.Fatalf("discover: %d %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkRegister is POST .../services into a real redis-server,
// including the wait for the local cache (read-your-writes).
func BenchmarkRegister(b *testing.B) {
	h := benchHandler(b, 0)
	body := fmt.Sprintf(benchService, "bench")
	b.SetParallelism(16) // 32 concurrent clients on 2 CPUs, like the HTTP benchmark
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
}
