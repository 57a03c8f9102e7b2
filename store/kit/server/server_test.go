package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/server"
)

// An in-flight request finishes after shutdown begins; new connections are refused.
func TestRunDrainsInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = w.Write([]byte("done"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- server.Run(ctx, server.Options{Listener: ln, Handler: h, DrainTimeout: 5 * time.Second})
	}()
	base := "http://" + ln.Addr().String()

	res, err := http.Get(base + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()

	got := make(chan string, 1)
	go func() {
		res, err := http.Get(base + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	if body := <-got; body != "done" {
		t.Fatalf("in-flight request: %q", body)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

// GET /healthz answers 503 with the reason and Retry-After until Ready
// first returns nil, then 200 for good, whatever Ready says later; other
// paths reach the handler throughout.
func TestHealthWaitsForReady(t *testing.T) {
	var notReady atomic.Pointer[error]
	starting := errors.New("revocations not loaded")
	notReady.Store(&starting)
	ready := func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}
	h := server.Health(ready, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	if w := get("/healthz"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
		w.Body.String() != "starting: revocations not loaded\n" {
		t.Fatalf("before ready: %d %q, Retry-After %q", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	if w := get("/x"); w.Code != http.StatusTeapot {
		t.Fatalf("/x before ready: %d", w.Code)
	}
	notReady.Store(nil)
	if w := get("/healthz"); w.Code != http.StatusOK || w.Body.String() != "ok\n" {
		t.Fatalf("ready: %d %q", w.Code, w.Body)
	}
	lost := errors.New("redis down")
	notReady.Store(&lost)
	if w := get("/healthz"); w.Code != http.StatusOK {
		t.Fatalf("not ready again after ready: %d %q, want 200", w.Code, w.Body)
	}
	rec := httptest.NewRecorder()
	server.Health(nil, http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("no Ready: %d", rec.Code)
	}
}
