package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunLoad(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") == "1" {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		served.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	tests := []struct {
		name         string
		build        func(w int, n int64) (*http.Request, error)
		wantErrors   int64
		wantFirstErr string
		wantLatency  uint64
	}{
		{"all 2xx", func(int, int64) (*http.Request, error) { return http.NewRequest("GET", srv.URL, nil) }, 0, "", 100},
		{"every tenth a 503", func(_ int, n int64) (*http.Request, error) {
			if n%10 == 0 {
				return http.NewRequest("GET", srv.URL+"?fail=1", nil)
			}
			return http.NewRequest("GET", srv.URL, nil)
		}, 10, "503 Service Unavailable: nope", 100},
		{"not loopback", func(int, int64) (*http.Request, error) {
			return http.NewRequest("GET", "http://192.0.2.1/", nil)
		}, 100, "only talks to loopback", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runLoad(context.Background(), loadOptions{Conns: 4, Duration: 10 * time.Second, MaxRequests: 100, Build: tt.build})
			if res.Requests != 100 || res.Errors != tt.wantErrors {
				t.Errorf("requests %d errors %d, want 100 and %d (first: %s)", res.Requests, res.Errors, tt.wantErrors, res.FirstError)
			}
			if !strings.Contains(res.FirstError, tt.wantFirstErr) {
				t.Errorf("first error %q, want it to mention %q", res.FirstError, tt.wantFirstErr)
			}
			if n := res.Latency.count(); n != tt.wantLatency {
				t.Errorf("%d latencies recorded, want %d", n, tt.wantLatency)
			}
		})
	}
}

func TestRunLoadStopsOnTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	start := time.Now()
	res := runLoad(context.Background(), loadOptions{Conns: 2, Duration: 100 * time.Millisecond,
		Build: func(int, int64) (*http.Request, error) { return http.NewRequest("GET", srv.URL, nil) }})
	// A guard against a run that ignores its time bound, not a performance
	// assertion: the bound is 300 times the duration.
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("a 100 ms run took %s", took)
	}
	if res.Requests == 0 || res.Errors != 0 || res.rps() <= 0 {
		t.Errorf("requests %d errors %d rps %v (first: %s)", res.Requests, res.Errors, res.rps(), res.FirstError)
	}
}

func TestParsePhases(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"all", allPhases, false},
		{"token", []string{phaseToken}, false},
		{" heartbeat , register,", []string{phaseRegister, phaseHeartbeat}, false},
		{"", nil, true},
		{"tokens", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePhases(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for _, p := range tt.want {
				if !got[p] {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}
