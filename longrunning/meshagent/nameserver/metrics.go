package nameserver

import (
	"math"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// dnsMetrics are the nameserver's counters:
//
//	kmep_dns_queries_total{answer}      queries by answer: noerror, nodata (NOERROR without answers),
//	                                    nxdomain, servfail, refused, formerr, notimp, other
//	kmep_dns_forwarded_total            queries sent upstream (names outside the zone and the rules)
//	kmep_dns_zone_staleness_seconds     seconds since the last successful read of the store
type dnsMetrics struct {
	queries   *prometheus.CounterVec
	forwarded prometheus.Counter
}

func (s *Server) registerMetrics(reg prometheus.Registerer) dnsMetrics {
	f := metrics.With(reg)
	m := dnsMetrics{
		queries:   f.CounterVec("kmep_dns_queries_total", "DNS queries answered, by answer.", "answer"),
		forwarded: f.Counter("kmep_dns_forwarded_total", "DNS queries forwarded to an upstream resolver."),
	}
	f.GaugeFunc("kmep_dns_zone_staleness_seconds", "Seconds since the nameserver last read the store (+Inf before its first read).", nil,
		func() float64 {
			n := s.synced.Load()
			if n == 0 {
				return math.Inf(1)
			}
			return time.Since(time.Unix(0, n)).Seconds()
		})
	return m
}

// count counts one answer.
func (m dnsMetrics) count(resp *dns.Msg) {
	m.queries.WithLabelValues(answerLabel(resp)).Inc()
}

func answerLabel(resp *dns.Msg) string {
	switch resp.Rcode {
	case dns.RcodeSuccess:
		if len(resp.Answer) == 0 {
			return "nodata"
		}
		return "noerror"
	case dns.RcodeNameError:
		return "nxdomain"
	case dns.RcodeServerFailure:
		return "servfail"
	case dns.RcodeRefused:
		return "refused"
	case dns.RcodeFormatError:
		return "formerr"
	case dns.RcodeNotImplemented:
		return "notimp"
	}
	return "other"
}
