package notify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// registerMetrics registers the Notifier's metrics into reg (nil: none)
// and returns the histogram of callback attempts:
//
//	kmep_notify_events_total                 events handled
//	kmep_notify_invalid_events_total         events refused with a 400
//	kmep_notify_deliveries_total{outcome}    notifications by how they ended:
//	                                         delivered, rejected (refused for good), failed (after the retries),
//	                                         skipped (reached by an earlier delivery of the event),
//	                                         busy (held by another delivery of the event at once)
//	kmep_notify_retries_total                callback attempts after the first
//	kmep_notify_callback_duration_seconds    time of one callback POST
func (n *Notifier) registerMetrics(reg prometheus.Registerer) prometheus.Histogram {
	f := metrics.With(reg)
	c := &n.stats
	f.CounterFunc("kmep_notify_events_total", "Events the notifier handled.", nil, func() float64 { return float64(c.events.Load()) })
	f.CounterFunc("kmep_notify_invalid_events_total", "Events refused as invalid (400).", nil, func() float64 { return float64(c.invalid.Load()) })
	for outcome, v := range map[string]interface{ Load() int64 }{
		"delivered": &c.delivered, "rejected": &c.rejected, "failed": &c.failed, "skipped": &c.skipped, "busy": &c.busy,
	} {
		f.CounterFunc("kmep_notify_deliveries_total", "Notifications by how their delivery ended.", prometheus.Labels{"outcome": outcome},
			func() float64 { return float64(v.Load()) })
	}
	f.CounterFunc("kmep_notify_retries_total", "Callback attempts after the first.", nil, func() float64 { return float64(c.retried.Load()) })
	return f.Histogram("kmep_notify_callback_duration_seconds", "Time of one callback POST, to its answer's headers.", nil)
}
