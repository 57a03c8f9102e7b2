package reaper

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// latenessBuckets span what the reaper promises (an expiry noticed within
// MaxPoll + Coalesce, 220 ms by default) and what a stalled Redis makes of it.
var latenessBuckets = []float64{.005, .01, .025, .05, .1, .2, .3, .5, 1, 2.5, 5, 10}

// registerMetrics registers the agent's metrics into reg (nil: none) and
// returns the lateness histogram:
//
//	kmep_reaper_expiries_total            expired deadlines claimed
//	kmep_reaper_suspensions_total         services turned SUSPENDED
//	kmep_reaper_errors_total              failed peeks and claims
//	kmep_reaper_lateness_seconds          how long after its deadline an expiry was claimed
//	kmep_reaper_last_tick_timestamp_seconds  when the agent last talked to Redis
func (a *Agent) registerMetrics(reg prometheus.Registerer) prometheus.Histogram {
	f := metrics.With(reg)
	f.CounterFunc("kmep_reaper_expiries_total", "Expired liveness deadlines claimed by this reaper.", nil,
		func() float64 { return float64(a.claimed.Load()) })
	f.CounterFunc("kmep_reaper_suspensions_total", "Services this reaper turned from ACTIVE to SUSPENDED.", nil,
		func() float64 { return float64(a.suspended.Load()) })
	f.CounterFunc("kmep_reaper_errors_total", "Failed peeks and claims (each followed by a backoff).", nil,
		func() float64 { return float64(a.errs.Load()) })
	f.GaugeFunc("kmep_reaper_last_tick_timestamp_seconds", "Unix time the reaper last talked to Redis successfully (0: never).", nil,
		func() float64 { return float64(a.lastTick.Load()) / 1e9 })
	return f.Histogram("kmep_reaper_lateness_seconds", "Time from a liveness deadline to its claim by the reaper.", latenessBuckets)
}
