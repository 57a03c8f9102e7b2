package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
)

// BenchmarkFunctionStartup builds every HTTP function's binary as
// .ko.yaml does (CGO_ENABLED=0, -trimpath, -ldflags "-s -w") and starts
// it b.N times against a real redis-server (and a real MinIO for packages
// and instantiate, when make testbins built it), timing exec to the first
// 200 from /healthz. It reports ms/ready (the mean start), MB (the
// binary's size; goal ≤ 25 for those without Helm/client-go, goal
// met=1) and goal-ms (the 50 ms start goal, met=1):
//
//	go test -run '^$' -bench FunctionStartup -benchtime 20x ./local/cmd/kmepbench/
func BenchmarkFunctionStartup(b *testing.B) {
	goPath, err := exec.LookPath("go")
	if err != nil {
		b.Skip("the go command is not on PATH")
	}
	redis := testenv.NewRedis(b, testenv.RedisOptions{})
	sec, err := newSecrets()
	if err != nil {
		b.Fatal(err)
	}
	o := startupOptions{GoPath: goPath, Dir: b.TempDir(), Runs: 1, RedisURL: redis.URL(), Secrets: sec,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if m, err := testenv.StartMinIO(); err == nil {
		b.Cleanup(m.Close)
		o.S3 = s3Settings{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	} else {
		var me *testenv.MissingError
		if !errors.As(err, &me) {
			b.Fatal(err)
		}
		b.Logf("packages and instantiate not measured: %v", err)
	}
	for _, fb := range functionBinaries(o) {
		b.Run(fb.name, func(b *testing.B) {
			if fb.needsS3 && o.S3.Endpoint == "" {
				b.Skip("no S3 endpoint")
			}
			path := filepath.Join(o.Dir, fb.name)
			// Runs 0: build and measure the size only.
			r, err := startupOf(context.Background(), startupOptions{GoPath: goPath, Dir: o.Dir, Runs: 0, Log: o.Log}, fb)
			if err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d, err := startOnce(context.Background(), path, fb.env)
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.StopTimer()
			mean := total / time.Duration(b.N)
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms/ready")
			b.ReportMetric(float64(r.SizeBytes)/(1<<20), "MB")
			if !fb.heavy {
				b.ReportMetric(boolMetric(r.SizeBytes <= goalBinaryBytes), "size-goal-met")
			}
			b.ReportMetric(boolMetric(mean <= goalStartup), "start-goal-met")
		})
	}
}

func boolMetric(ok bool) float64 {
	if ok {
		return 1
	}
	return 0
}
