package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The testdata files are real wrk 4.1.0 output (wrk -t2 -c32 --latency)
// against a small net/http server: all 200s, every tenth answer a 503, and
// every fiftieth answer held past --timeout 1s.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		file string
		want wrkResult
	}{
		{"wrk-ok.txt", wrkResult{Requests: 62496, Elapsed: 1100 * time.Millisecond, RPS: 56820.18,
			P50: 462 * time.Microsecond, P99: 15650 * time.Microsecond}},
		{"wrk-non2xx.txt", wrkResult{Requests: 57102, Elapsed: 1100 * time.Millisecond, RPS: 51795.12,
			P50: 521 * time.Microsecond, P99: 13750 * time.Microsecond, Non2xx: 5710}},
		{"wrk-timeouts.txt", wrkResult{Requests: 3168, Elapsed: 2010 * time.Millisecond, RPS: 1580.05,
			P50: 48 * time.Microsecond, P99: 2070 * time.Microsecond,
			SocketErrors: 32, SocketDetail: "connect 0, read 0, write 0, timeout 32"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(out)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseWrk =\n%+v\nwant\n%+v", got, tt.want)
			}
			if f := got.failures(); f != tt.want.Non2xx+tt.want.SocketErrors {
				t.Errorf("failures = %d", f)
			}
		})
	}
}

func TestParseWrkRefuses(t *testing.T) {
	ok, err := os.ReadFile(filepath.Join("testdata", "wrk-ok.txt"))
	if err != nil {
		t.Fatal(err)
	}
	drop := func(prefix string) string {
		var keep []string
		for _, l := range strings.Split(string(ok), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), prefix) {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	tests := []struct {
		name, out, wantErr string
	}{
		{"empty", "", "Requests/sec"},
		{"connection refused", "unable to connect to 127.0.0.1:1 Connection refused\n", "Requests/sec"},
		{"no --latency", drop("99%"), "99% latency"},
		{"no rate", drop("Requests/sec"), "Requests/sec"},
		{"no total", drop("62496 requests"), "N requests in T"},
		{"bad latency", strings.Replace(string(ok), "462.00us", "462.00xx", 1), "462.00xx"},
		{"bad non-2xx", string(ok) + "  Non-2xx or 3xx responses: many\n", "many"},
		{"bad socket errors", string(ok) + "  Socket errors: connect 0, read x\n", "read x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseWrk([]byte(tt.out))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseWrk error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestWrkSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {300 * time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {10 * time.Second, 10}} {
		if got := wrkSeconds(tt.d); got != tt.want {
			t.Errorf("wrkSeconds(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
