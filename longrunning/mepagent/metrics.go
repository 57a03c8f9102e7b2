package mepagent

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// Outcomes of a call to the platform, the outcome label of the agent's
// counters.
const (
	// outcomeOK: the platform accepted it.
	outcomeOK = "ok"
	// outcomeFailed: unreachable, or a 5xx, 408, 429 or 401; retried.
	outcomeFailed = "failed"
	// outcomeRefused: a refusal no retry mends (another 4xx, or an answer
	// the agent cannot read).
	outcomeRefused = "refused"
	// outcomeLost: a heartbeat answered 404; the service is registered
	// again.
	outcomeLost = "lost"
)

// agentMetrics are the agent's counters, one increment per call to the
// platform (a retry is another call).
type agentMetrics struct {
	tokens, registrations, heartbeats *prometheus.CounterVec
}

// newMetrics registers the agent's metrics into reg (nil: none):
//
//	kmep_mepagent_token_fetches_total{outcome}   POST /mep/token: ok, failed, refused
//	kmep_mepagent_registrations_total{outcome}   service registrations: ok, failed, refused
//	kmep_mepagent_heartbeats_total{outcome}      heartbeats: ok, failed, refused, lost
//
// Every outcome is there from the start, at 0.
func newMetrics(reg prometheus.Registerer) agentMetrics {
	f := metrics.With(reg)
	m := agentMetrics{
		tokens: f.CounterVec("kmep_mepagent_token_fetches_total",
			"Token requests (AK/SK-signed POST /mep/token) by outcome: ok, failed (retried), refused.", "outcome"),
		registrations: f.CounterVec("kmep_mepagent_registrations_total",
			"Service registration attempts by outcome: ok, failed (retried), refused.", "outcome"),
		heartbeats: f.CounterVec("kmep_mepagent_heartbeats_total",
			"Service heartbeats by outcome: ok, failed (retried), refused, lost (404: registered again).", "outcome"),
	}
	for _, o := range []string{outcomeOK, outcomeFailed, outcomeRefused} {
		m.tokens.WithLabelValues(o)
		m.registrations.WithLabelValues(o)
		m.heartbeats.WithLabelValues(o)
	}
	m.heartbeats.WithLabelValues(outcomeLost)
	return m
}

// count adds one call that ended with err to c, under its outcome (ok,
// refused or failed); a call cut short because ctx ended (the agent
// stopping) is not counted.
func count(ctx context.Context, c *prometheus.CounterVec, err error) {
	switch {
	case err == nil:
		c.WithLabelValues(outcomeOK).Inc()
	case ctx.Err() != nil:
	case isPermanent(err):
		c.WithLabelValues(outcomeRefused).Inc()
	default:
		c.WithLabelValues(outcomeFailed).Inc()
	}
}
