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

func run(ctx context.Context, log *slog.Logger) error {
	ttl, err := server.EnvDuration("KMEP_UPF_LEASE_TTL", 5*time.Second)
	if err != nil {
		return err
	}
	space, err := server.EnvInt("KMEP_UPF_INDEX_SPACE", 65535)
	if err != nil {
		return err
	}
	if space > store.MaxIndexSpace {
		return fmt.Errorf("KMEP_UPF_INDEX_SPACE: at most %d", uint32(store.MaxIndexSpace))
	}
	cfg := upfagent.Config{UPF: server.Env("KMEP_UPF_NAME", "upf"), AgentID: os.Getenv("KMEP_UPF_AGENT_ID"),
		LeaseTTL: ttl, IndexSpace: uint32(space)}
	healthAddr := server.HealthAddr(os.Getenv("KMEP_HEALTH_ADDR"), os.Getenv("PORT"))

	deps := upfagent.Deps{Log: log}
	d := server.Env("KMEP_UPF_DRIVER", "none")
	var vcfg vpp.Config
	switch d {
	case "none":
		deps.Driver = dataplane.None{Log: log}
	case "vpp":
		if vcfg, err = vppConfig(log); err != nil {
			return err
		}
		fallthrough
	case "mp2upf":
		sock := server.Env("KMEP_VPP_API_SOCKET", "/run/vpp/api.sock")
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
		ncfg := nft.Config{Table: server.Env("KMEP_NFT_TABLE", "kmep"), Log: log}
		for _, i := range strings.Split(server.Env("KMEP_NFT_INTERFACES", ""), ",") {
			if i = strings.TrimSpace(i); i != "" {
				ncfg.Interfaces = append(ncfg.Interfaces, i)
			}
		}
		if p := server.Env("KMEP_NFT_NETNS", ""); p != "" {
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
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{})
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
func vppConfig(log *slog.Logger) (vpp.Config, error) {
	cfg := vpp.Config{TagPrefix: os.Getenv("KMEP_VPP_ACL_TAG_PREFIX"), Log: log}
	list := os.Getenv("KMEP_VPP_INTERFACES")
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
	if s := os.Getenv("KMEP_VPP_NEXT_HOP"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return cfg, fmt.Errorf("KMEP_VPP_NEXT_HOP: %q is not an IP address", s)
		}
		cfg.NextHop = a
	}
	for _, v := range []struct {
		key string
		dst *uint32
	}{{"KMEP_VPP_NEXT_HOP_INTERFACE", &cfg.NextHopInterface}, {"KMEP_VPP_TABLE_ID", &cfg.TableID}, {"KMEP_VPP_ABF_POLICY_BASE", &cfg.PolicyBase}} {
		s := os.Getenv(v.key)
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
