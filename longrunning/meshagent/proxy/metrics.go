package proxy

import (
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store/kit/metrics"
)

// Sides of a proxied connection: the values of the side label.
const (
	sideClient   = "client"   // a client connected to this node's listener
	sideEndpoint = "endpoint" // a stream from another node, piped to an endpoint here
)

// proxyMetrics are the proxy's counters:
//
//	kmep_mesh_connections_total{side}          proxied connections, by side
//	kmep_mesh_connections_active{side}         proxied connections open now
//	kmep_mesh_bytes_total{side, direction}     bytes copied, direction up (to the endpoint) or down,
//	                                           counted when the connection ends
//	kmep_mesh_refused_total                    client connections no endpoint could take
type proxyMetrics struct {
	conns   *prometheus.CounterVec
	active  *prometheus.GaugeVec
	bytes   *prometheus.CounterVec
	refused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) proxyMetrics {
	f := metrics.With(reg)
	return proxyMetrics{
		conns:   f.CounterVec("kmep_mesh_connections_total", "Connections the service proxy carried, by side.", "side"),
		active:  f.GaugeVec("kmep_mesh_connections_active", "Connections the service proxy carries now, by side.", "side"),
		bytes:   f.CounterVec("kmep_mesh_bytes_total", "Bytes the service proxy copied, by side and direction (up: to the endpoint), counted when a connection ends.", "side", "direction"),
		refused: f.Counter("kmep_mesh_refused_total", "Client connections refused because no endpoint could be reached."),
	}
}

// pipe is pipe, counted.
func (m proxyMetrics) pipe(side string, bufs *sync.Pool, a io.ReadWriteCloser, b halfCloser) {
	m.conns.WithLabelValues(side).Inc()
	active := m.active.WithLabelValues(side)
	active.Inc()
	up, down := pipe(bufs, a, b)
	active.Dec()
	m.bytes.WithLabelValues(side, "up").Add(float64(up))
	m.bytes.WithLabelValues(side, "down").Add(float64(down))
}
