// Command upfagent keeps a UPF's data plane in line with the MEC traffic
// rules in the store (package upfagent). Run two for HA: one is active.
//
// Environment: REDIS_URL (redis://127.0.0.1:6379/0); KMEP_UPF_NAME (upf);
// KMEP_UPF_DRIVER (none: log only; mp2upf: the MP2 UPF message over VPP's
// binary API; vpp: a stock VPP's acl and abf plugins; nftables: the Linux
// kernel's nftables, over netlink);
// KMEP_VPP_API_SOCKET (/run/vpp/api.sock; govpp's socket client, which
// keeps retrying while the socket is missing or VPP is away);
// KMEP_UPF_LEASE_TTL (5s); KMEP_UPF_INDEX_SPACE (65535);
// KMEP_UPF_AGENT_ID (host-pid-random); KMEP_LOG_LEVEL (info). GET
// /healthz ("ok") and GET /metrics (Prometheus text) answer on
// KMEP_HEALTH_ADDR, or on ":$PORT" when only PORT is set; with neither, no
// HTTP port is opened.
//
// The vpp driver also reads: KMEP_VPP_INTERFACES (required: the
// comma-separated sw_if_index of the interfaces whose input the rules act
// on, e.g. 1,2); KMEP_VPP_NEXT_HOP (none: the next hop of FORWARD_* rules
// whose dstInterface has no dstIpAddress; without it such rules fail);
// KMEP_VPP_NEXT_HOP_INTERFACE (none: next hops are resolved in the FIB;
// else the sw_if_index they are reached through); KMEP_VPP_TABLE_ID (0:
// the FIB table next hops are resolved in); KMEP_VPP_ABF_POLICY_BASE (0:
// a rule's ABF policy id is this plus its index); KMEP_VPP_ACL_TAG_PREFIX
// (kmep: the tag prefix of the ACLs the agent owns).
//
// The nftables driver also reads: KMEP_NFT_TABLE (kmep: the name of its
// tables, families ip and ip6); KMEP_NFT_INTERFACES (none: the rules act
// on packets coming in on every interface; else the comma-separated names
// of the UE-side interfaces, a trailing '*' matching a prefix);
// KMEP_NFT_NETNS (none: the agent's own network namespace; else the file
// of the namespace to program, e.g. /var/run/netns/upf). It needs
// CAP_NET_ADMIN in that namespace and fails at start on a kernel without
// nf_tables.
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

	"github.com/kmep-io/kmep/longrunning/upfagent"
	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/mp2upf"
	"github.com/kmep-io/kmep/longrunning/upfagent/nft"
	"github.com/kmep-io/kmep/longrunning/upfagent/vpp"
	"github.com/kmep-io/kmep/longrunning/upfagent/vppconn"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("upfagent", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Agent
	store.Redis
	UPF        string                  `envconfig:"KMEP_UPF_NAME" default:"upf" desc:"the UPF whose rules this agent applies"`
	Driver     string                  `envconfig:"KMEP_UPF_DRIVER" default:"none" desc:"none (log only), mp2upf, vpp or nftables"`
	Socket     string                  `envconfig:"KMEP_VPP_API_SOCKET" default:"/run/vpp/api.sock" desc:"VPP's binary API socket (mp2upf and vpp drivers)"`
	LeaseTTL   server.PositiveDuration `envconfig:"KMEP_UPF_LEASE_TTL" default:"5s" desc:"the active agent's lease time to live"`
	IndexSpace server.PositiveInt      `envconfig:"KMEP_UPF_INDEX_SPACE" default:"65535" desc:"how many rule indexes the UPF offers (at most 4294967294)"`
	AgentID    string                  `envconfig:"KMEP_UPF_AGENT_ID" desc:"this agent's lease holder name (unset: host-pid-random)"`

	VPPInterfaces       string `envconfig:"KMEP_VPP_INTERFACES" desc:"vpp driver (required): comma-separated sw_if_index of the interfaces the rules act on"`
	VPPNextHop          string `envconfig:"KMEP_VPP_NEXT_HOP" desc:"vpp driver: next hop of FORWARD_* rules whose dstInterface has no dstIpAddress"`
	VPPNextHopInterface string `envconfig:"KMEP_VPP_NEXT_HOP_INTERFACE" desc:"vpp driver: sw_if_index next hops are reached through (unset: FIB lookup)"`
	VPPTableID          string `envconfig:"KMEP_VPP_TABLE_ID" desc:"vpp driver: the FIB table next hops are resolved in (unset: 0)"`
	VPPPolicyBase       string `envconfig:"KMEP_VPP_ABF_POLICY_BASE" desc:"vpp driver: a rule's ABF policy id is this plus its index (unset: 0)"`
	VPPTagPrefix        string `envconfig:"KMEP_VPP_ACL_TAG_PREFIX" desc:"vpp driver: tag prefix of the ACLs the agent owns (unset: kmep)"`

	NFTTable      string `envconfig:"KMEP_NFT_TABLE" default:"kmep" desc:"nftables driver: the name of its tables (families ip and ip6)"`
	NFTInterfaces string `envconfig:"KMEP_NFT_INTERFACES" desc:"nftables driver: comma-separated UE-side interfaces, a trailing * a prefix (unset: every interface)"`
	NFTNetNS      string `envconfig:"KMEP_NFT_NETNS" desc:"nftables driver: file of the network namespace to program (unset: the agent's own)"`
}

// Validate implements server.Validator.
func (c config) Validate() error {
	if c.IndexSpace > store.MaxIndexSpace {
		return fmt.Errorf("KMEP_UPF_INDEX_SPACE: at most %d", uint32(store.MaxIndexSpace))
	}
	return nil
}

func run(ctx context.Context, log *slog.Logger, env config) error {
	cfg := upfagent.Config{UPF: env.UPF, AgentID: env.AgentID,
		LeaseTTL: time.Duration(env.LeaseTTL), IndexSpace: uint32(env.IndexSpace)}
	healthAddr := env.HealthAddr()

	var err error
	deps := upfagent.Deps{Log: log}
	d := env.Driver
	var vcfg vpp.Config
	switch d {
	case "none":
		deps.Driver = dataplane.None{Log: log}
	case "vpp":
		if vcfg, err = vppConfig(log, env); err != nil {
			return err
		}
		fallthrough
	case "mp2upf":
		sock := env.Socket
		conn, err := vppconn.Dial(socketAdapter(sock), time.Second, log.With("socket", sock))
		if err != nil {
			return fmt.Errorf("VPP API %s: %w", sock, err)
		}
		defer conn.Close()
		deps.Reset = conn.Reset()
		if d == "mp2upf" {
			deps.Driver = mp2upf.New(conn)
			break
		}
		if deps.Driver, err = vpp.New(conn, vcfg); err != nil {
			return err
		}
	case "nftables":
		ncfg := nft.Config{Table: env.NFTTable, Log: log}
		for _, i := range strings.Split(env.NFTInterfaces, ",") {
			if i = strings.TrimSpace(i); i != "" {
				ncfg.Interfaces = append(ncfg.Interfaces, i)
			}
		}
		if p := env.NFTNetNS; p != "" {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("KMEP_NFT_NETNS: %w", err)
			}
			defer f.Close()
			ncfg.NetNS = int(f.Fd())
		}
		drv, err := nft.New(ctx, ncfg)
		if err != nil {
			return err
		}
		defer drv.Close()
		deps.Driver = drv
	default:
		return fmt.Errorf("KMEP_UPF_DRIVER %q: want none, mp2upf, vpp or nftables", d)
	}
	st, closeStore, err := env.OpenStore(store.Options{})
	if err != nil {
		return err
	}
	defer closeStore()
	deps.Store = st
	reg := metrics.NewRegistry()
	deps.Metrics = reg
	a, err := upfagent.New(cfg, deps)
	if err != nil {
		return err
	}
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: healthAddr, Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}

// vppConfig reads the vpp driver's configuration from the environment.
func vppConfig(log *slog.Logger, env config) (vpp.Config, error) {
	cfg := vpp.Config{TagPrefix: env.VPPTagPrefix, Log: log}
	list := env.VPPInterfaces
	if list == "" {
		return cfg, fmt.Errorf("KMEP_VPP_INTERFACES: the vpp driver needs the sw_if_index of its interfaces, e.g. 1,2")
	}
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil || n == uint64(^uint32(0)) {
			return cfg, fmt.Errorf("KMEP_VPP_INTERFACES: %q is not an sw_if_index", f)
		}
		cfg.Interfaces = append(cfg.Interfaces, uint32(n))
	}
	if s := env.VPPNextHop; s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return cfg, fmt.Errorf("KMEP_VPP_NEXT_HOP: %q is not an IP address", s)
		}
		cfg.NextHop = a
	}
	for _, v := range []struct {
		key, s string
		dst    *uint32
	}{{"KMEP_VPP_NEXT_HOP_INTERFACE", env.VPPNextHopInterface, &cfg.NextHopInterface}, {"KMEP_VPP_TABLE_ID", env.VPPTableID, &cfg.TableID},
		{"KMEP_VPP_ABF_POLICY_BASE", env.VPPPolicyBase, &cfg.PolicyBase}} {
		s := v.s
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return cfg, fmt.Errorf("%s: %q is not a u32", v.key, s)
		}
		*v.dst = uint32(n)
	}
	return cfg, nil
}
