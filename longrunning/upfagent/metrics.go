package upfagent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
)

// registerMetrics registers the agent's metrics into reg (nil: none):
//
//	kmep_upf_rules_applied_total, kmep_upf_rules_removed_total,
//	kmep_upf_rule_failures_total, kmep_upf_rules_unsupported_total,
//	kmep_upf_resyncs_total, kmep_upf_changes_total,
//	kmep_upf_store_errors_total   the counters of Stats
//	kmep_upf_active               1 while this agent holds the lease
//	kmep_upf_rules{state}         rules by recorded status (APPLIED, FAILED, INACTIVE),
//	                              read from the store at scrape time
func (a *Agent) registerMetrics(reg prometheus.Registerer) {
	f := metrics.With(reg)
	for _, c := range []struct {
		name, help string
		v          interface{ Load() uint64 }
	}{
		{"kmep_upf_rules_applied_total", "Traffic rules applied to the data plane.", &a.applied},
		{"kmep_upf_rules_removed_total", "Traffic rules removed from the data plane.", &a.removed},
		{"kmep_upf_rule_failures_total", "Failed data-plane attempts.", &a.failed},
		{"kmep_upf_rules_unsupported_total", "Rules the driver cannot express.", &a.unsupported},
		{"kmep_upf_resyncs_total", "Full resynchronisations.", &a.resyncs},
		{"kmep_upf_changes_total", "Change-stream entries handled.", &a.changes},
		{"kmep_upf_store_errors_total", "Store failures that ended an active period.", &a.storeErrs},
	} {
		f.CounterFunc(c.name, c.help, nil, func() float64 { return float64(c.v.Load()) })
	}
	f.GaugeFunc("kmep_upf_active", "1 while this agent holds the lease.", nil, func() float64 {
		if a.active.Load() {
			return 1
		}
		return 0
	})
	f.Collector(ruleStates{a: a})
}

// ruleStates reads the rules' recorded statuses at scrape time.
type ruleStates struct{ a *Agent }

var ruleStatesDesc = prometheus.NewDesc("kmep_upf_rules", "Traffic rules of this UPF by recorded status.", []string{"state"}, nil)

func (ruleStates) Describe(ch chan<- *prometheus.Desc) { ch <- ruleStatesDesc }

// Collect reports nothing when the store does not answer within 2 s (the
// scrape shows the gap; the counters still answer).
func (r ruleStates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sts, err := r.a.st.AllRuleStatuses(ctx, r.a.cfg.UPF)
	if err != nil {
		return
	}
	n := map[string]int{store.RuleApplied: 0, store.RuleFailed: 0, store.RuleInactive: 0}
	for _, st := range sts {
		n[st.State]++
	}
	for state, v := range n {
		ch <- prometheus.MustNewConstMetric(ruleStatesDesc, prometheus.GaugeValue, float64(v), state)
	}
}
