// Command meshagent is the edge node's mesh agent (package meshagent), run
// as a DaemonSet: DNS for DNS rules and MEC services, a libp2p tunnel to
// the other nodes, and the service proxy.
//
// Environment (defaults in parentheses):
//
//	REDIS_URL            redis://127.0.0.1:6379/0
//	KMEP_DNS_ADDR        127.0.0.1:5353 (UDP and TCP)
//	KMEP_DNS_ZONE        mec.local.
//	KMEP_DNS_UPSTREAMS   comma-separated host:port (the nameservers of /etc/resolv.conf)
//	KMEP_DNS_TTL         60 (seconds; service records and rules without a ttl)
//	KMEP_MESH_TUNNEL     true ("false": DNS only, no libp2p host)
//	KMEP_MESH_KEY_FILE   /var/lib/kmep/mesh/identity.key (created on first start)
//	KMEP_MESH_PSK        64 hex digits or swarm.key content: the mesh secret; nodes admit only
//	                     peers whose records it signs (none: an open mesh, QUIC on)
//	KMEP_MESH_PSK_FILE   a file holding the PSK (instead of KMEP_MESH_PSK)
//	KMEP_MESH_PNET       false (true: also a libp2p private network keyed with the PSK, for
//	                     swarm.key compatibility; every byte then also XSalsa20-encrypted)
//	KMEP_MESH_LISTEN     comma-separated multiaddrs (/ip4/0.0.0.0/tcp/4001)
//	KMEP_MESH_ANNOUNCE   comma-separated multiaddrs published instead of the listen ones
//	KMEP_MESH_RELAY      false (true: this node is a relay)
//	KMEP_MESH_NETWORKS   comma-separated prefixes of the endpoints on this node
//	KMEP_MESH_PEER_TTL   30s
//	KMEP_MESH_DIRECT_DIAL_TIMEOUT 1s (direct dials when none of a peer's relays is up)
//	KMEP_MESH_PROXY_IP   127.0.0.1 (the service listeners' address)
//	KMEP_MESH_BALANCE    round-robin (random, source-hash)
//	KMEP_NODE_NAME       the host name
//	KMEP_LOG_LEVEL       info
//	KMEP_HEALTH_ADDR     where GET /healthz and GET /metrics answer (":$PORT" when only PORT is set;
//	                     with neither, no HTTP port is opened)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kmep-io/kmep/longrunning/meshagent"
	"github.com/kmep-io/kmep/longrunning/meshagent/nameserver"
	"github.com/kmep-io/kmep/longrunning/meshagent/proxy"
	"github.com/kmep-io/kmep/longrunning/meshagent/tunnel"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("meshagent", run) }

func list(key string) []string {
	var out []string
	for _, s := range strings.Split(os.Getenv(key), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func run(ctx context.Context, log *slog.Logger) error {
	ttl, err := server.EnvInt("KMEP_DNS_TTL", 60)
	if err != nil {
		return err
	}
	cfg := meshagent.Config{DNS: nameserver.Config{
		Addr:      server.Env("KMEP_DNS_ADDR", "127.0.0.1:5353"),
		Zone:      server.Env("KMEP_DNS_ZONE", "mec.local."),
		Upstreams: list("KMEP_DNS_UPSTREAMS"),
		TTL:       uint32(ttl),
	}}
	tunnelOn, err := strconv.ParseBool(server.Env("KMEP_MESH_TUNNEL", "true"))
	if err != nil {
		return fmt.Errorf("KMEP_MESH_TUNNEL: %w", err)
	}
	if tunnelOn {
		tc, pc, err := tunnelConfig()
		if err != nil {
			return err
		}
		cfg.Tunnel, cfg.Proxy = tc, pc
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	reg := metrics.NewRegistry()
	a, err := meshagent.New(cfg, meshagent.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	healthAddr := server.HealthAddr(os.Getenv("KMEP_HEALTH_ADDR"), os.Getenv("PORT"))
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: healthAddr, Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}

func tunnelConfig() (*tunnel.Config, proxy.Config, error) {
	var pc proxy.Config
	peerTTL, err := server.EnvDuration("KMEP_MESH_PEER_TTL", 30*time.Second)
	if err != nil {
		return nil, pc, err
	}
	directDial, err := server.EnvDuration("KMEP_MESH_DIRECT_DIAL_TIMEOUT", time.Second)
	if err != nil {
		return nil, pc, err
	}
	relay, err := strconv.ParseBool(server.Env("KMEP_MESH_RELAY", "false"))
	if err != nil {
		return nil, pc, fmt.Errorf("KMEP_MESH_RELAY: %w", err)
	}
	privateNet, err := strconv.ParseBool(server.Env("KMEP_MESH_PNET", "false"))
	if err != nil {
		return nil, pc, fmt.Errorf("KMEP_MESH_PNET: %w", err)
	}
	hostname, _ := os.Hostname()
	tc := &tunnel.Config{
		KeyFile:       server.Env("KMEP_MESH_KEY_FILE", "/var/lib/kmep/mesh/identity.key"),
		ListenAddrs:   list("KMEP_MESH_LISTEN"),
		AnnounceAddrs: list("KMEP_MESH_ANNOUNCE"),
		Relay:         relay,
		PNet:          privateNet,
		Node:          server.Env("KMEP_NODE_NAME", hostname),
		PeerTTL:       peerTTL,
		// How long to try a peer's direct addresses when none of its
		// relays is up (then the dial fails fast with a RouteError).
		DirectDialTimeout: directDial,
	}
	psk := os.Getenv("KMEP_MESH_PSK")
	if f := os.Getenv("KMEP_MESH_PSK_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, pc, fmt.Errorf("KMEP_MESH_PSK_FILE: %w", err)
		}
		psk = string(b)
	}
	if psk != "" {
		if tc.PSK, err = tunnel.ParsePSK(psk); err != nil {
			return nil, pc, err
		}
	}
	for _, s := range list("KMEP_MESH_NETWORKS") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, pc, fmt.Errorf("KMEP_MESH_NETWORKS: %w", err)
		}
		tc.Networks = append(tc.Networks, p)
	}
	if s := os.Getenv("KMEP_MESH_PROXY_IP"); s != "" {
		if pc.ListenIP, err = netip.ParseAddr(s); err != nil {
			return nil, pc, fmt.Errorf("KMEP_MESH_PROXY_IP: %w", err)
		}
	}
	if pc.Balance, err = proxy.ParseBalance(os.Getenv("KMEP_MESH_BALANCE")); err != nil {
		return nil, pc, fmt.Errorf("KMEP_MESH_BALANCE: %w", err)
	}
	return tc, pc, nil
}
