package mepagent_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counter is the value of the counter name{outcome} in reg (-1: absent).
func counter(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// Each call to the platform counts once under its outcome: ok, failed (a
// 503, retried), refused (a 4xx no retry mends) and, for heartbeats, lost
// (a 404: the service is registered again).
func TestMetricsCountOutcomes(t *testing.T) {
	f, base := newFakePlatform(t)
	f.tokenFn = func(n int) int { return map[int]int{1: 503, 2: 403}[n] }
	f.registerFn = func(n int) int { return map[int]int{1: 503, 3: 400}[n] }
	f.heartbeatFn = func(n int) int { return map[int]int{2: 503, 3: 400}[n] }
	reg := prometheus.NewRegistry()
	startAgentWithMetrics(t, withServices(base, service("svc", 1)), reg)

	const (
		tokens = "kmep_mepagent_token_fetches_total"
		regs   = "kmep_mepagent_registrations_total"
		beats  = "kmep_mepagent_heartbeats_total"
	)
	eventually(t, 10*time.Second, "the heartbeats after a failed and a refused one", func() bool {
		return counter(t, reg, beats, "ok") >= 2 && counter(t, reg, beats, "refused") == 1
	})
	f.lose("svc-1")
	eventually(t, 10*time.Second, "the lost service's registration refused", func() bool {
		return counter(t, reg, regs, "refused") == 1
	})
	for _, tc := range []struct {
		name, outcome string
		want          float64
	}{
		{tokens, "failed", 1}, {tokens, "refused", 1}, {tokens, "ok", 1},
		{regs, "failed", 1}, {regs, "ok", 1}, {regs, "refused", 1},
		{beats, "failed", 1}, {beats, "refused", 1}, {beats, "lost", 1},
	} {
		if got := counter(t, reg, tc.name, tc.outcome); got != tc.want {
			t.Errorf("%s{outcome=%q} = %v, want %v", tc.name, tc.outcome, got, tc.want)
		}
	}
}

// Without a registry the agent still runs (its counters count, unseen).
func TestMetricsOptional(t *testing.T) {
	f, base := newFakePlatform(t)
	startAgentWithMetrics(t, withServices(base, service("svc", 1)), nil)
	eventually(t, 5*time.Second, "a heartbeat", func() bool {
		n := 0
		f.snapshot(func(f *fakePlatform) { n = f.heartbeats["svc-1"] })
		return n >= 1
	})
}
