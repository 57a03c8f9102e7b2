// Package meshagent is the mesh agent that runs on every edge node (a
// DaemonSet): a DNS server for the DNS rules and MEC services in the store
// (package nameserver), a libp2p tunnel to the other nodes (package
// tunnel), and a service proxy that carries TCP connections to services
// on other nodes through it (package proxy). Without a tunnel configured
// it is the DNS server alone, which is what the all-in-one runs.
package meshagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/longrunning/meshagent/nameserver"
	"github.com/kmep-io/kmep/longrunning/meshagent/proxy"
	"github.com/kmep-io/kmep/longrunning/meshagent/tunnel"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
)

// Config configures an Agent.
type Config struct {
	// DNS configures the DNS server (its zero value serves 127.0.0.1:5353).
	DNS nameserver.Config
	// Tunnel, when set, starts the libp2p tunnel and the service proxy.
	// Zero value (nil): DNS only.
	Tunnel *tunnel.Config
	// Proxy configures the service proxy (used with Tunnel).
	Proxy proxy.Config
	// Resync is how often the proxy's listeners are matched to the
	// services. Zero value: 500 ms.
	Resync time.Duration
}

// Deps are the Agent's dependencies.
type Deps struct {
	// Store is the platform state. Required.
	Store *store.Store
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Metrics is the binary's registry: the DNS server's and the proxy's
	// metrics, kmep_mesh_gate_refusals_total (connections the tunnel's gate
	// refused) and kmep_mesh_peers_connected. Zero value: nothing is
	// registered.
	Metrics prometheus.Registerer
}

// Agent is the mesh agent. Run it once.
type Agent struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	dns   *nameserver.Server
	tun   *tunnel.Tunnel
	proxy *proxy.Proxy
}

// New builds the agent: the DNS server, and with a tunnel configuration the
// libp2p host (listening from here on) and the proxy.
func New(cfg Config, deps Deps) (*Agent, error) {
	if deps.Store == nil {
		return nil, errors.New("meshagent: Deps.Store is required")
	}
	if cfg.Resync == 0 {
		cfg.Resync = 500 * time.Millisecond
	}
	a := &Agent{cfg: cfg, st: deps.Store, log: deps.Log}
	if a.log == nil {
		a.log = slog.Default()
	}
	var err error
	if a.dns, err = nameserver.New(cfg.DNS, nameserver.Deps{Store: deps.Store, Log: a.log.With("part", "dns"), Metrics: deps.Metrics}); err != nil {
		return nil, err
	}
	if cfg.Tunnel == nil {
		return a, nil
	}
	if a.tun, err = tunnel.New(*cfg.Tunnel, tunnel.Deps{Store: deps.Store, Log: a.log.With("part", "tunnel")}); err != nil {
		return nil, err
	}
	if a.proxy, err = proxy.New(cfg.Proxy, proxy.Deps{Tunnel: a.tun, Log: a.log.With("part", "proxy"), Metrics: deps.Metrics}); err != nil {
		_ = a.tun.Close()
		return nil, err
	}
	f := metrics.With(deps.Metrics)
	f.CounterFunc("kmep_mesh_gate_refusals_total", "Connections the tunnel's gate refused (peers whose records the mesh secret does not sign).", nil,
		func() float64 { return float64(a.tun.Refused()) })
	f.GaugeFunc("kmep_mesh_peers_connected", "Mesh peers this node has a connection to.", nil,
		func() float64 { return float64(len(a.tun.Host().Network().Peers())) })
	return a, nil
}

// DNS is the agent's DNS server.
func (a *Agent) DNS() *nameserver.Server { return a.dns }

// Tunnel is the agent's tunnel (nil when DNS only).
func (a *Agent) Tunnel() *tunnel.Tunnel { return a.tun }

// Run serves until ctx ends, then stops every part. It returns the first
// error that ended a part early (the DNS server could not listen).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("dns", a.dns.Run)
	if a.tun != nil {
		run("tunnel", a.tun.Run)
		run("proxy", a.follow)
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none
}

// follow keeps the proxy's listeners matched to the ACTIVE services.
func (a *Agent) follow(ctx context.Context) error {
	cache := store.NewServiceCache(a.st, store.CacheOptions{OnError: func(err error) {
		a.log.Warn("mesh service cache resync", "err", err)
	}})
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(ctx) }()
	defer func() { <-done; a.proxy.Close() }()
	var last []proxy.Service
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		if cache.Fresh() {
			svcs := Services(cache.Select(store.Filter{}))
			if !equal(svcs, last) {
				if err := a.proxy.Set(svcs); err != nil {
					a.log.Warn("proxy listeners", "err", err)
				}
				last = svcs
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Services turns ACTIVE services into proxy listeners: one per endpoint
// port, its endpoints the IP addresses with that port of every service
// instance (names are merged per port).
func Services(all []*store.CachedService) []proxy.Service {
	byPort := map[uint16]*proxy.Service{}
	for _, cs := range all {
		if cs.State != store.StateActive {
			continue
		}
		name, eps := nameserver.Endpoints(cs.Info)
		if name == "" {
			name = cs.Name
		}
		for _, ep := range eps {
			ip, err := netip.ParseAddr(ep.Host)
			if err != nil {
				continue
			}
			s := byPort[ep.Port]
			if s == nil {
				s = &proxy.Service{Port: ep.Port}
				byPort[ep.Port] = s
			}
			if !strings.Contains(","+s.Name+",", ","+name+",") {
				if s.Name != "" {
					s.Name += ","
				}
				s.Name += name
			}
			s.Backends = append(s.Backends, netip.AddrPortFrom(ip.Unmap(), ep.Port))
		}
	}
	out := make([]proxy.Service, 0, len(byPort))
	for _, s := range byPort {
		slices.SortFunc(s.Backends, func(a, b netip.AddrPort) int { return a.Compare(b) })
		s.Backends = slices.Compact(s.Backends)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

func equal(a, b []proxy.Service) bool {
	return slices.EqualFunc(a, b, func(x, y proxy.Service) bool {
		return x.Name == y.Name && x.Port == y.Port && slices.Equal(x.Backends, y.Backends)
	})
}
