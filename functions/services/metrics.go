package services

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
)

// serviceMetrics are the function's own counters beside the request
// counts the binary's middleware keeps.
type serviceMetrics struct {
	registrations, deregistrations prometheus.Counter
	heartbeats                     prometheus.Counter
}

// newMetrics registers the function's metrics into reg (nil: none):
//
//	kmep_services_registrations_total     services created (a replayed Idempotency-Key is not one)
//	kmep_services_deregistrations_total   services deleted
//	kmep_services_heartbeats_total        heartbeats accepted
//	kmep_services{state}                  services by state, read from the discovery cache at scrape time
//	kmep_discovery_cache_staleness_seconds  age of the cache's last successful change-stream read
func newMetrics(reg prometheus.Registerer, cache *store.ServiceCache, now func() time.Time) serviceMetrics {
	f := metrics.With(reg)
	m := serviceMetrics{
		registrations:   f.Counter("kmep_services_registrations_total", "MEC services registered."),
		deregistrations: f.Counter("kmep_services_deregistrations_total", "MEC services deregistered."),
		heartbeats:      f.Counter("kmep_services_heartbeats_total", "Service heartbeats accepted."),
	}
	if cache == nil {
		return m
	}
	for _, state := range []string{store.StateActive, store.StateInactive, store.StateSuspended} {
		f.GaugeFunc("kmep_services", "MEC services by state, as the discovery cache holds them.",
			prometheus.Labels{"state": state}, func() float64 { return float64(cache.States()[state]) })
	}
	f.GaugeFunc("kmep_discovery_cache_staleness_seconds",
		"Seconds since the discovery cache last read the change stream (+Inf before its first read).", nil,
		func() float64 {
			t := cache.SyncedAt()
			if t.IsZero() {
				return math.Inf(1)
			}
			return now().Sub(t).Seconds()
		})
	return m
}
