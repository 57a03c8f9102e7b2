package relay

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// lagBuckets run from an idle relay's few milliseconds to a backlog's minutes.
var lagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// registerMetrics registers the agent's metrics into reg (nil: none) and
// returns the lag histogram:
//
//	kmep_relay_published_total       events the sink accepted
//	kmep_relay_unpublished_total     entries acknowledged without an event (malformed included)
//	kmep_relay_malformed_total       entries that could not be converted
//	kmep_relay_publish_errors_total  failed delivery attempts (each retried)
//	kmep_relay_redelivered_total     events published again after staying pending
//	kmep_relay_lost_total            pending events whose entry was trimmed before they could be sent again
//	kmep_relay_leader                1 while this relay holds the lease
//	kmep_relay_lag_seconds           time from a change's entry in the stream to its event's acceptance
func (a *Agent) registerMetrics(reg prometheus.Registerer) prometheus.Histogram {
	f := metrics.With(reg)
	for _, c := range []struct {
		name, help string
		v          interface{ Load() uint64 }
	}{
		{"kmep_relay_published_total", "Events the sink accepted.", &a.published},
		{"kmep_relay_unpublished_total", "Change entries acknowledged without publishing an event.", &a.unpublished},
		{"kmep_relay_malformed_total", "Change entries that could not be converted to an event.", &a.malformed},
		{"kmep_relay_publish_errors_total", "Failed publish attempts (each is retried).", &a.sendFailures},
		{"kmep_relay_redelivered_total", "Events published again after staying pending past the redelivery timeout.", &a.redelivered},
		{"kmep_relay_lost_total", "Pending events whose stream entry was trimmed before they could be published again.", &a.gone},
	} {
		f.CounterFunc(c.name, c.help, nil, func() float64 { return float64(c.v.Load()) })
	}
	f.GaugeFunc("kmep_relay_leader", "1 while this relay holds the lease and reads the change stream.", nil, func() float64 {
		if a.leader.Load() {
			return 1
		}
		return 0
	})
	return f.Histogram("kmep_relay_lag_seconds", "Time from a change's entry in the stream to the sink's acceptance of its event.", lagBuckets)
}

// observeLag records the lag of the event published for stream entry id
// ("<unix ms>-<seq>"), measured on this host's clock against Redis's.
func (a *Agent) observeLag(id string) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return
	}
	a.lag.Observe(max(0, time.Since(time.UnixMilli(n)).Seconds()))
}
