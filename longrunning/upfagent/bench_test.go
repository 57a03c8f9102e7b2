package upfagent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/store"
)

// createRules stores n traffic rules, 100 per app instance, and returns
// when they are all in the store.
func createRules(b *testing.B, st *store.Store, n int, tag string) {
	ctx := context.Background()
	for lo := 0; lo < n; lo += 100 {
		var rules []store.Rule
		for i := lo; i < min(lo+100, n); i++ {
			rules = append(rules, trule(fmt.Sprint("r", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), 1))
		}
		if _, err := st.CreateAppD(ctx, store.AppD{AppInstanceID: fmt.Sprintf("%s%d", tag, lo/100), Traffic: rules}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamApply measures rule applications from the store to the
// data plane (mp2upf over govpp's mock adapter): an idle active agent,
// then b.N rules created (100 per appd configuration, through the change
// stream), timed until the agent applied them all.
//
//	go test -run '^$' -bench StreamApply -benchtime 20000x ./longrunning/upfagent/
func BenchmarkStreamApply(b *testing.B) {
	h := newHarness(b, false)
	a, _ := h.start(h.st, upfagent.Config{Block: time.Second}, nil)
	waitFor(b, "active", func() bool { return a.Stats().Resyncs == 1 })
	b.ResetTimer()
	began := time.Now()
	createRules(b, h.st, b.N, "app")
	waitFor(b, "all applied", func() bool { return a.Stats().Applied == uint64(b.N) })
	el := time.Since(began)
	b.StopTimer()
	if h.vpp.Sent() != uint64(b.N) {
		b.Fatalf("%d messages for %d rules", h.vpp.Sent(), b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "rules/s")
}

// BenchmarkResync10k measures a starting agent's full resync of 10,000
// rules already in the store (nothing applied yet), per iteration.
//
//	go test -run '^$' -bench Resync10k -benchtime 3x ./longrunning/upfagent/
func BenchmarkResync10k(b *testing.B) {
	const n = 10_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := newHarness(b, false)
		createRules(b, h.st, n, "app")
		b.StartTimer()
		began := time.Now()
		a, stop := h.start(h.st, upfagent.Config{}, nil)
		waitFor(b, "resync", func() bool { return a.Stats().Resyncs == 1 })
		el := time.Since(began)
		b.StopTimer()
		stop()
		if s := a.Stats(); s.Applied != n || h.vpp.Sent() != n {
			b.Fatalf("resync applied %d (%d messages), want %d", s.Applied, h.vpp.Sent(), n)
		}
		b.ReportMetric(el.Seconds(), "s/resync")
	}
}
