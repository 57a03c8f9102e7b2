package allinone

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/local/broker"
	"github.com/kmep-io/kmep/store/kit/metrics"
)

// brokerMetrics registers the embedded broker's counters into reg, read
// from its Stats at scrape time (on a cluster, Knative's broker has its own):
//
//	kmep_broker_events_total{outcome}   events at the ingress: accepted, rejected (queue full), invalid
//	kmep_broker_deliveries_total{outcome}  deliveries: delivered, dead_lettered, dropped
//	kmep_broker_retries_total           delivery attempts repeated after a failure
func brokerMetrics(reg prometheus.Registerer, b *broker.Broker) {
	f := metrics.With(reg)
	for _, c := range []struct {
		name, help, outcome string
		read                func(broker.Stats) uint64
	}{
		{"kmep_broker_events_total", "Events at the embedded broker's ingress, by outcome.", "accepted", func(s broker.Stats) uint64 { return s.Accepted }},
		{"kmep_broker_events_total", "Events at the embedded broker's ingress, by outcome.", "rejected", func(s broker.Stats) uint64 { return s.Rejected }},
		{"kmep_broker_events_total", "Events at the embedded broker's ingress, by outcome.", "invalid", func(s broker.Stats) uint64 { return s.Invalid }},
		{"kmep_broker_deliveries_total", "Deliveries by the embedded broker, by outcome.", "delivered", func(s broker.Stats) uint64 { return s.Delivered }},
		{"kmep_broker_deliveries_total", "Deliveries by the embedded broker, by outcome.", "dead_lettered", func(s broker.Stats) uint64 { return s.DeadLettered }},
		{"kmep_broker_deliveries_total", "Deliveries by the embedded broker, by outcome.", "dropped", func(s broker.Stats) uint64 { return s.Dropped }},
	} {
		f.CounterFunc(c.name, c.help, prometheus.Labels{"outcome": c.outcome}, func() float64 { return float64(c.read(b.Stats())) })
	}
	f.CounterFunc("kmep_broker_retries_total", "Delivery attempts the embedded broker repeated after a failure.", nil,
		func() float64 { return float64(b.Stats().Retries) })
}
