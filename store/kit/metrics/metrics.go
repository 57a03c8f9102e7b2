// Package metrics is the Prometheus plumbing every kmep binary shares: a
// registry built once in main and passed explicitly to what it measures,
// the GET /metrics handler that serves it, and the HTTP middleware that
// counts requests by route template (the http.ServeMux pattern that served
// them, never the raw path) and status, with a latency histogram.
//
// Metric names follow Prometheus conventions: kmep_<subsystem>_<name>,
// _total for counters, _seconds for durations. Labels take a handful of
// values each (a route template, a status code, an outcome, a reason):
// never a service, app or subscription ID.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where every binary serves its metrics.
const Path = "/metrics"

// NewRegistry returns the registry of one binary: empty but for the Go
// runtime's and the process's collectors. main builds it once and passes
// it to each component's Deps; nothing registers into a global registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler answers GET /metrics with what g gathers, in the Prometheus text
// (or negotiated OpenMetrics) format. It needs no authentication: nothing
// registered carries a secret or an ID.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// Mount returns the handler a function's binary serves: GET /metrics from
// reg, everything else through next, counted by Instrument into reg. An
// agent's binary passes nil: everything but /metrics is a 404 (its
// /healthz is server.RunAgent's).
func Mount(reg *prometheus.Registry, next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	metrics := Handler(reg)
	api := Instrument(reg, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			metrics.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// With returns a promauto-style factory over reg: the metrics it builds are
// registered into reg, or into nothing when reg is nil (a component built
// without metrics still counts, unseen). Components call it on the
// Registerer their Deps carry.
func With(reg prometheus.Registerer) Factory { return Factory{reg: reg} }

// Factory builds metrics and registers them into its registry (none when
// the registry is nil). Registering the same name twice panics: a
// component's metrics are built once, in its New.
type Factory struct{ reg prometheus.Registerer }

func (f Factory) register(c prometheus.Collector) {
	if f.reg != nil {
		f.reg.MustRegister(c)
	}
}

// Counter builds and registers a counter.
func (f Factory) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.register(c)
	return c
}

// CounterVec builds and registers a counter with labels.
func (f Factory) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.register(c)
	return c
}

// Histogram builds and registers a histogram with buckets (nil:
// DefBuckets, 5 ms to 10 s).
func (f Factory) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.register(h)
	return h
}

// HistogramVec builds and registers a histogram with labels.
func (f Factory) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.register(h)
	return h
}

// GaugeVec builds and registers a gauge with labels.
func (f Factory) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.register(g)
	return g
}

// CounterFunc registers a counter whose value read is called at scrape
// time, with constant labels (nil: none): the way to expose a component's
// existing atomic counters. Several calls may share a name with
// different label values.
func (f Factory) CounterFunc(name, help string, labels prometheus.Labels, read func() float64) {
	f.register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, read))
}

// GaugeFunc registers a gauge read at scrape time, like CounterFunc.
func (f Factory) GaugeFunc(name, help string, labels prometheus.Labels, read func() float64) {
	f.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, read))
}

// Collector registers c as it is (a collector that reads its values from
// elsewhere at scrape time, such as a store count).
func (f Factory) Collector(c prometheus.Collector) { f.register(c) }
