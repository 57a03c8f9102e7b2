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

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Agent
	store.Redis
	DNSAddr      string                  `envconfig:"KMEP_DNS_ADDR" default:"127.0.0.1:5353" desc:"the DNS server's address (UDP and TCP)"`
	DNSZone      string                  `envconfig:"KMEP_DNS_ZONE" default:"mec.local." desc:"the zone of the MEC services' records"`
	DNSUpstreams string                  `envconfig:"KMEP_DNS_UPSTREAMS" desc:"comma-separated host:port (unset: the nameservers of /etc/resolv.conf)"`
	DNSTTL       server.PositiveInt      `envconfig:"KMEP_DNS_TTL" default:"60" desc:"seconds: TTL of service records and rules without a ttl"`
	Tunnel       bool                    `envconfig:"KMEP_MESH_TUNNEL" default:"true" desc:"false: DNS only, no libp2p host"`
	KeyFile      string                  `envconfig:"KMEP_MESH_KEY_FILE" default:"/var/lib/kmep/mesh/identity.key" desc:"the node's identity key (created on first start)"`
	PSK          string                  `envconfig:"KMEP_MESH_PSK" desc:"64 hex digits or swarm.key content: the mesh secret (unset: an open mesh, QUIC on)"`
	PSKFile      string                  `envconfig:"KMEP_MESH_PSK_FILE" desc:"a file holding the PSK (instead of KMEP_MESH_PSK)"`
	PNet         bool                    `envconfig:"KMEP_MESH_PNET" default:"false" desc:"true: also a libp2p private network keyed with the PSK"`
	Listen       string                  `envconfig:"KMEP_MESH_LISTEN" desc:"comma-separated multiaddrs (unset: /ip4/0.0.0.0/tcp/4001)"`
	Announce     string                  `envconfig:"KMEP_MESH_ANNOUNCE" desc:"comma-separated multiaddrs published instead of the listen ones"`
	Relay        bool                    `envconfig:"KMEP_MESH_RELAY" default:"false" desc:"true: this node is a relay"`
	Networks     string                  `envconfig:"KMEP_MESH_NETWORKS" desc:"comma-separated prefixes of the endpoints on this node"`
	PeerTTL      server.PositiveDuration `envconfig:"KMEP_MESH_PEER_TTL" default:"30s" desc:"the peer records' time to live"`
	DirectDial   server.PositiveDuration `envconfig:"KMEP_MESH_DIRECT_DIAL_TIMEOUT" default:"1s" desc:"how long to try a peer's direct addresses when none of its relays is up"`
	ProxyIP      string                  `envconfig:"KMEP_MESH_PROXY_IP" desc:"the service listeners' address (unset: 127.0.0.1)"`
	Balance      string                  `envconfig:"KMEP_MESH_BALANCE" desc:"round-robin (unset), random or source-hash"`
	NodeName     string                  `envconfig:"KMEP_NODE_NAME" desc:"this node's name (unset: the host name)"`
}

// list splits a comma-separated setting, dropping blanks.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func run(ctx context.Context, log *slog.Logger, env config) error {
	cfg := meshagent.Config{DNS: nameserver.Config{
		Addr:      env.DNSAddr,
		Zone:      env.DNSZone,
		Upstreams: list(env.DNSUpstreams),
		TTL:       uint32(env.DNSTTL),
	}}
	if env.Tunnel {
		tc, pc, err := tunnelConfig(env)
		if err != nil {
			return err
		}
		cfg.Tunnel, cfg.Proxy = tc, pc
	}
	st, closeStore, err := env.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	reg := metrics.NewRegistry()
	a, err := meshagent.New(cfg, meshagent.Deps{Store: st, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: env.HealthAddr(), Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}

func tunnelConfig(env config) (*tunnel.Config, proxy.Config, error) {
	var pc proxy.Config
	node := env.NodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	tc := &tunnel.Config{
		KeyFile:       env.KeyFile,
		ListenAddrs:   list(env.Listen),
		AnnounceAddrs: list(env.Announce),
		Relay:         env.Relay,
		PNet:          env.PNet,
		Node:          node,
		PeerTTL:       time.Duration(env.PeerTTL),
		// How long to try a peer's direct addresses when none of its
		// relays is up (then the dial fails fast with a RouteError).
		DirectDialTimeout: time.Duration(env.DirectDial),
	}
	psk := env.PSK
	var err error
	if f := env.PSKFile; f != "" {
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
	for _, s := range list(env.Networks) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, pc, fmt.Errorf("KMEP_MESH_NETWORKS: %w", err)
		}
		tc.Networks = append(tc.Networks, p)
	}
	if s := env.ProxyIP; s != "" {
		if pc.ListenIP, err = netip.ParseAddr(s); err != nil {
			return nil, pc, fmt.Errorf("KMEP_MESH_PROXY_IP: %w", err)
		}
	}
	if pc.Balance, err = proxy.ParseBalance(env.Balance); err != nil {
		return nil, pc, fmt.Errorf("KMEP_MESH_BALANCE: %w", err)
	}
	return tc, pc, nil
}
