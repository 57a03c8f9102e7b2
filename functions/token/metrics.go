package token

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// Reasons a token request is refused: the values of
// kmep_token_refusals_total's reason label.
const (
	refusedMalformed    = "malformed"     // no or unparsable Authorization / x-sdk-date
	refusedSkew         = "clock_skew"    // x-sdk-date outside the window
	refusedUnknownKey   = "unknown_key"   // no such access key (answered as a bad signature)
	refusedBadSignature = "bad_signature" // the signature does not match
	refusedReplay       = "replay"        // a signature used before
	refusedLockedOut    = "locked_out"    // the source is locked out of the key
)

// tokenMetrics are the token function's counters:
//
//	kmep_token_issued_total            tokens issued
//	kmep_token_refusals_total{reason}  token requests refused, by reason
//	kmep_token_lockouts_total          lockouts started (a source's bad signatures reached the limit)
type tokenMetrics struct {
	issued, lockouts prometheus.Counter
	refusals         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) tokenMetrics {
	f := metrics.With(reg)
	m := tokenMetrics{
		issued:   f.Counter("kmep_token_issued_total", "Access tokens issued."),
		lockouts: f.Counter("kmep_token_lockouts_total", "Lockouts started: a source's bad signatures for an access key reached the limit."),
		refusals: f.CounterVec("kmep_token_refusals_total", "Token requests refused, by reason.", "reason"),
	}
	for _, r := range []string{refusedMalformed, refusedSkew, refusedUnknownKey, refusedBadSignature, refusedReplay, refusedLockedOut} {
		m.refusals.WithLabelValues(r) // every reason shows, at 0
	}
	return m
}

// refuse counts a refusal and returns its answer.
func (m tokenMetrics) refuse(reason string, err error) error {
	m.refusals.WithLabelValues(reason).Inc()
	return err
}
