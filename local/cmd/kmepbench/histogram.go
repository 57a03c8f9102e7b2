package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram's buckets are log-linear: every value below 2*subBuckets
// nanoseconds has a bucket of its own, and each power of two above that is
// split into subBuckets equal buckets. A bucket's upper bound is therefore
// at most 1/subBuckets (0.8 %) above any value in it.
const (
	subBits    = 7
	subBuckets = 1 << subBits
	// numBuckets covers every non-negative int64 nanosecond count.
	numBuckets = 2*subBuckets + (63-subBits-1)*subBuckets
)

// histogram records request latencies in bounded memory. The zero value is
// empty and ready to use; it is not safe for concurrent use (each load
// worker keeps its own and they are merged at the end).
type histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max time.Duration
}

// bucketOf returns the index of the bucket that holds v nanoseconds.
func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // ≥ 1
	return 2*subBuckets + (shift-1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketHigh returns the largest value, in nanoseconds, of bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := (i-2*subBuckets)/subBuckets + 1
	mantissa := uint64((i-2*subBuckets)%subBuckets + subBuckets)
	return (mantissa+1)<<shift - 1
}

// record adds one latency; a negative one counts as zero.
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
}

// merge adds every value recorded in o to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// count is the number of values recorded.
func (h *histogram) count() uint64 { return h.n }

// quantile returns the nearest-rank q-quantile (0 ≤ q ≤ 1): the smallest
// recorded value v such that at least q of all values are ≤ v, rounded up
// to its bucket's upper bound (so never below the true value, and at most
// 0.8 % above it) and clamped to the recorded minimum and maximum. It is 0
// for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(min(bucketHigh(i), uint64(math.MaxInt64)))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
