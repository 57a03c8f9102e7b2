package notify

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999", 0, false},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(time.RFC850), time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	n, err := New(Deps{Store: nopStore{}, Client: http.DefaultClient,
		Retry: Retry{Backoff: 200 * time.Millisecond, MaxBackoff: time.Second, MaxRetryAfter: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		attempt  int
		o        outcome
		min, max time.Duration
	}{
		{"first retry", 1, outcome{}, 100 * time.Millisecond, 200 * time.Millisecond},
		{"second retry", 2, outcome{}, 200 * time.Millisecond, 400 * time.Millisecond},
		{"third retry", 3, outcome{}, 400 * time.Millisecond, 800 * time.Millisecond},
		{"capped", 30, outcome{}, 500 * time.Millisecond, time.Second},
		{"Retry-After", 1, outcome{retryAfter: 2 * time.Second, hasRetryAfter: true}, 2 * time.Second, 2 * time.Second},
		{"Retry-After 0", 1, outcome{hasRetryAfter: true}, 0, 0},
		{"Retry-After capped", 1, outcome{retryAfter: time.Hour, hasRetryAfter: true}, 3 * time.Second, 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 {
				if d := n.backoff(tc.attempt, tc.o); d < tc.min || d > tc.max {
					t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.attempt, d, tc.min, tc.max)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"https://user:pw@cb.example:8443/notify?token=secret#frag": "https://cb.example:8443/notify",
		"http://10.0.0.1/cb": "http://10.0.0.1/cb",
		"http://[::1":        "(unparsable URL)",
	}
	for in, want := range tests {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// nopStore satisfies Store for tests that never reach it.
type nopStore struct{ Store }
