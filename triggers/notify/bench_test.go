package notify_test

import (
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/triggers/notify"
)

// BenchmarkFanOut1000 measures one service-changed event fanned out to
// 1,000 matching subscriptions on one local callback server, through the
// CloudEvents receiver, with the default concurrency (64) and the real
// callback policy's client. ns/op is the receiver's answer (every callback
// answered and marked done); the custom metrics are, across iterations, the
// 50th/99th percentile of the time until the last callback received its
// POST (reach-all), and the 99th percentile over every callback of the
// time until it received its POST.
func BenchmarkFanOut1000(b *testing.B) {
	cb := newCallbacks(b, nil)
	e := newEnv(b, notify.Deps{Log: slog.New(slog.DiscardHandler)})
	subscribeMany(b, e, cb, fanOut)
	// One warm-up event opens the connections.
	if status, body := e.send(b, serviceEvent(b, streamID(), rnis, store.ChangeAdded)); status != http.StatusOK {
		b.Fatalf("warm-up: status %d (%q)", status, body)
	}
	cb.reset()

	var reachAll, perCallback []time.Duration
	for b.Loop() {
		ev := serviceEvent(b, streamID(), rnis, store.ChangeAdded)
		start := time.Now()
		status, body := e.send(b, ev)
		if status != http.StatusOK {
			b.Fatalf("status %d (%q)", status, body)
		}
		b.StopTimer()
		got := cb.reset()
		if len(got) != fanOut {
			b.Fatalf("%d callbacks called, want %d", len(got), fanOut)
		}
		var last time.Duration
		for _, a := range got {
			d := a.at.Sub(start)
			perCallback = append(perCallback, d)
			last = max(last, d)
		}
		reachAll = append(reachAll, last)
		b.StartTimer()
	}
	b.ReportMetric(ms(percentile(reachAll, 50)), "p50-reach-all-ms")
	b.ReportMetric(ms(percentile(reachAll, 99)), "p99-reach-all-ms")
	b.ReportMetric(ms(percentile(perCallback, 99)), "p99-callback-ms")
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
