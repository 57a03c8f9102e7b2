package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/retry"
)

// Every Delay lies in the upper half of its nominal wait and the draws
// spread over that half.
func TestBackoffDelayBounds(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		b       retry.Backoff
		attempt int
		nominal time.Duration // d: every draw is in [d/2, d]
	}{
		{"first attempt", retry.Backoff{Min: 100 * ms, Max: time.Second}, 0, 100 * ms},
		{"second attempt doubles", retry.Backoff{Min: 100 * ms, Max: time.Second}, 1, 200 * ms},
		{"fourth attempt", retry.Backoff{Min: 100 * ms, Max: time.Second}, 3, 800 * ms},
		{"capped at Max", retry.Backoff{Min: 100 * ms, Max: time.Second}, 4, time.Second},
		{"exactly Max", retry.Backoff{Min: 250 * ms, Max: time.Second}, 2, time.Second},
		{"large attempt", retry.Backoff{Min: 100 * ms, Max: time.Second}, 1000, time.Second},
		{"negative attempt", retry.Backoff{Min: 100 * ms, Max: time.Second}, -1, time.Second},
		{"Min above Max", retry.Backoff{Min: 2 * time.Second, Max: time.Second}, 0, time.Second},
		{"zero Min", retry.Backoff{Max: time.Second}, 0, time.Second},
		{"odd nanoseconds", retry.Backoff{Min: 7, Max: time.Second}, 0, 7},
		// (2^40+1)·2^30 wraps to 2^30 ns in 64 bits: still capped at Max.
		{"overflowing shift", retry.Backoff{Min: 1<<40 + 1, Max: 1 << 62}, 30, 1 << 62},
		{"one nanosecond", retry.Backoff{Min: 1, Max: time.Hour}, 0, 1},
		{"zero Max", retry.Backoff{Min: ms}, 3, 0},
	}
	const draws = 2000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := tc.nominal/2, tc.nominal
			if tc.nominal <= 1 {
				lo = tc.nominal // nothing to halve
			}
			least, most := time.Duration(1<<63-1), time.Duration(-1<<63)
			for range draws {
				d := tc.b.Delay(tc.attempt)
				if d < lo || d > hi {
					t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tc.attempt, d, lo, hi)
				}
				least, most = min(least, d), max(most, d)
			}
			// Uniform over [d/2, d]: 2000 draws all missing the lowest (or
			// the highest) eighth has probability (7/8)^2000, about 1e-116.
			if span := hi - lo; span >= 8 {
				if least > lo+span/8 || most < hi-span/8 {
					t.Errorf("draws span only [%v, %v] of [%v, %v]", least, most, lo, hi)
				}
			}
		})
	}
}

func TestSleep(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"full wait", live, 20 * time.Millisecond, true},
		{"context already ended", ended, time.Hour, false},
		{"zero wait", live, 0, true},
		{"negative wait", live, -time.Second, true},
		{"zero wait, context ended", ended, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := retry.Sleep(tc.ctx, tc.d); got != tc.want {
				t.Fatalf("Sleep(%v) = %v, want %v", tc.d, got, tc.want)
			}
			if el := time.Since(start); tc.want && el < tc.d {
				t.Errorf("Sleep(%v) returned true after only %v", tc.d, el)
			}
		})
	}
}

// A context that ends during the wait cuts it short.
func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	done := make(chan bool, 1)
	go func() { done <- retry.Sleep(ctx, time.Hour) }()
	select {
	case got := <-done:
		if got {
			t.Fatal("Sleep reported the full hour")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep did not return when its context ended")
	}
}

func BenchmarkDelay(b *testing.B) {
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}
	for i := 0; b.Loop(); i++ {
		_ = bo.Delay(i % 12)
	}
}
