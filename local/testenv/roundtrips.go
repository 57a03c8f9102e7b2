package testenv

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// RoundTrips sends b.N one-byte messages over c, an echo, one at a time,
// and reports the p50 and p99 of their round trips in microseconds.
func RoundTrips(b *testing.B, c net.Conn) {
	b.Helper()
	one := []byte{1}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
