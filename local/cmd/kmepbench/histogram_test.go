package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	// Every value lands in a bucket whose upper bound is at or above it and
	// at most 1/subBuckets above it; buckets are contiguous and ordered.
	values := []uint64{0, 1, 255, 256, 257, 383, 384, 511, 512, 1000, 1 << 20, 123456789, 1<<63 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, r.Uint64N(1<<40))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0, %d)", v, i, numBuckets)
		}
		hi := bucketHigh(i)
		if hi < v || float64(hi-v) > float64(v)/subBuckets {
			t.Fatalf("bucketHigh(bucketOf(%d)) = %d: not within 1/%d above", v, hi, subBuckets)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("value %d in bucket %d, but bucket %d reaches %d", v, i, i-1, bucketHigh(i-1))
		}
	}
	for i := 1; i < numBuckets; i++ {
		if lo := bucketHigh(i-1) + 1; bucketOf(lo) != i {
			t.Fatalf("bucket %d starts at %d, which bucketOf puts in %d", i, lo, bucketOf(lo))
		}
	}
}

// nearestRank is the exact nearest-rank quantile of sorted values.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(sorted)) + 0.999999999)
	return sorted[max(rank, 1)-1]
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []time.Duration{3 * time.Millisecond}, 0.99, 3 * time.Millisecond},
		{"p0 is the minimum", []time.Duration{5, 7, 9}, 0, 5},
		{"p100 is the maximum", []time.Duration{5, 7, time.Second}, 1, time.Second},
		{"exact below 256 ns: p50 of 1..100", seq(1, 100, 1), 0.5, 50},
		{"exact below 256 ns: p99 of 1..100", seq(1, 100, 1), 0.99, 99},
		{"nearest rank rounds up: p50 of 4 values", []time.Duration{10, 20, 30, 40}, 0.5, 20},
		{"nearest rank rounds up: p51 of 4 values", []time.Duration{10, 20, 30, 40}, 0.51, 30},
		{"negative counts as zero", []time.Duration{-5, 10}, 0.5, 0},
		{"bucket bound clamped to the maximum", []time.Duration{1000001}, 0.5, 1000001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			if got := h.quantile(tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func seq(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for v := from; v <= to; v += step {
		out = append(out, v)
	}
	return out
}

func TestQuantileMatchesSortedSlice(t *testing.T) {
	// Against the exact nearest-rank quantile of a sorted slice, the
	// histogram is never below and at most 1/subBuckets above.
	r := rand.New(rand.NewPCG(3, 4))
	dists := map[string]func() time.Duration{
		"uniform 1µs..1ms": func() time.Duration { return time.Microsecond + time.Duration(r.Int64N(int64(time.Millisecond))) },
		"long tail":        func() time.Duration { return time.Duration(r.ExpFloat64() * float64(200*time.Microsecond)) },
		"bimodal": func() time.Duration {
			if r.IntN(100) == 0 {
				return 50*time.Millisecond + time.Duration(r.Int64N(int64(time.Millisecond)))
			}
			return 300*time.Microsecond + time.Duration(r.Int64N(int64(100*time.Microsecond)))
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h histogram
			vals := make([]time.Duration, 20001)
			for i := range vals {
				vals[i] = gen()
				h.record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
				exact, got := nearestRank(vals, q), h.quantile(q)
				if got < exact || float64(got-exact) > float64(exact)/subBuckets {
					t.Errorf("q%v = %v, exact %v", q, got, exact)
				}
			}
			if h.count() != uint64(len(vals)) {
				t.Errorf("count = %d", h.count())
			}
		})
	}
}

func TestMerge(t *testing.T) {
	var a, b, all histogram
	for i := range 1000 {
		v := time.Duration(i*i) * time.Nanosecond
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	var empty histogram
	a.merge(&b)
	a.merge(&empty)
	if a != all {
		t.Fatalf("merged histogram differs: n %d/%d, min %v/%v, max %v/%v", a.n, all.n, a.min, all.min, a.max, all.max)
	}
	empty.merge(&all)
	if empty != all {
		t.Fatal("merge into an empty histogram differs")
	}
}
