package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/rediserver"
)

// SentinelOptions configure StartSentinel.
type SentinelOptions struct {
	// Replicas is how many replicas the primary has. Zero value: 1.
	Replicas int
	// Sentinels is how many Sentinels watch it (a majority elects the
	// failover's leader). Zero value: 3.
	Sentinels int
	// DownAfter is how long the primary may not answer before a Sentinel
	// deems it down. Zero value: 1 s.
	DownAfter time.Duration
	// AOF turns on the data servers' append-only file (appendfsync
	// everysec). Zero value: no persistence.
	AOF bool
}

// Sentinel is a Redis primary with replicas under Redis Sentinel, every
// process a redis-server child on 127.0.0.1: the high-availability setup
// the store supports (a redis+sentinel:// REDIS_URL).
type Sentinel struct {
	// Master is the name the Sentinels know the primary by.
	Master string
	// Data are the primary (first, at start) and its replicas; which one
	// is the primary changes with failovers (see Primary).
	Data []*rediserver.Server
	// Sentinels are the Sentinel processes.
	Sentinels []*rediserver.Server
	dir       string
}

// StartSentinel starts the primary, its replicas (in sync before it
// returns) and the Sentinels (each knowing the replicas and the other
// Sentinels, so a failover can happen as soon as the primary fails).
func StartSentinel(opts SentinelOptions) (*Sentinel, error) {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Sentinels == 0 {
		opts.Sentinels = 3
	}
	dir, err := os.MkdirTemp("", "kmep-sentinel-")
	if err != nil {
		return nil, err
	}
	s := &Sentinel{Master: "kmep", dir: dir}
	fail := func(err error) (*Sentinel, error) { s.Close(); return nil, err }
	primary, err := rediserver.Start(rediserver.Options{Dir: filepath.Join(dir, "data0"), AOF: opts.AOF})
	if err != nil {
		return fail(err)
	}
	s.Data = append(s.Data, primary)
	for i := 1; i <= opts.Replicas; i++ {
		r, err := rediserver.Start(rediserver.Options{Dir: filepath.Join(dir, "data"+strconv.Itoa(i)), AOF: opts.AOF, ReplicaOf: primary.Addr})
		if err != nil {
			return fail(err)
		}
		s.Data = append(s.Data, r)
	}
	for i := range opts.Sentinels {
		sn, err := rediserver.Start(rediserver.Options{Dir: filepath.Join(dir, "sentinel"+strconv.Itoa(i)),
			Sentinel: &rediserver.SentinelConfig{Master: s.Master, Primary: primary.Addr, Quorum: opts.Sentinels/2 + 1, DownAfter: opts.DownAfter}})
		if err != nil {
			return fail(err)
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// NewSentinel starts a Sentinel setup for one test and closes it at
// cleanup. The test fails when redis-server is missing, like NewRedis.
func NewSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	s, err := StartSentinel(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// URL is the store's REDIS_URL for this setup (redis+sentinel://, every
// Sentinel named), followed by extra options ("min_replicas=1&...").
func (s *Sentinel) URL(extra string) string {
	q := url.Values{"master_name": {s.Master}}
	for _, sn := range s.Sentinels[1:] {
		q.Add("addr", sn.Addr)
	}
	u := "redis+sentinel://" + s.Sentinels[0].Addr + "/0?" + q.Encode()
	if extra != "" {
		u += "&" + extra
	}
	return u
}

// Primary asks the Sentinels which data server is the primary now.
func (s *Sentinel) Primary(ctx context.Context) (*rediserver.Server, error) {
	var last error
	for _, sn := range s.Sentinels {
		if sn.Stopped() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		addr, err := c.GetMasterAddrByName(ctx, s.Master).Result()
		_ = c.Close()
		if err != nil {
			last = err
			continue
		}
		a := net.JoinHostPort(addr[0], addr[1])
		for _, d := range s.Data {
			if d.Addr == a {
				return d, nil
			}
		}
		return nil, fmt.Errorf("the Sentinels name %s as primary, not one of the data servers", a)
	}
	return nil, fmt.Errorf("no Sentinel answered: %w", last)
}

// WaitReady waits until the Sentinels agree on a primary that every other
// running data server replicates in sync, and each Sentinel knows those
// replicas and the other Sentinels: the state in which a failover works.
func (s *Sentinel) WaitReady(ctx context.Context) error {
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis sentinel setup not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Sentinel) ready(ctx context.Context) error {
	p, err := s.Primary(ctx)
	if err != nil {
		return err
	}
	replicas := 0
	for _, d := range s.Data {
		if d == p || d.Stopped() {
			continue
		}
		replicas++
		info, err := serverInfo(ctx, d.Addr, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "slave" || info["master_port"] != port(p.Addr) || info["master_link_status"] != "up" ||
			info["master_sync_in_progress"] != "0" {
			return fmt.Errorf("replica %s: role %s of %s:%s, link %s", d.Addr, info["role"], info["master_host"], info["master_port"], info["master_link_status"])
		}
	}
	for _, sn := range s.Sentinels {
		if sn.Stopped() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		m, err := c.Master(ctx, s.Master).Result()
		_ = c.Close()
		if err != nil {
			return err
		}
		if m["port"] != port(p.Addr) || m["num-slaves"] != strconv.Itoa(replicas) ||
			m["num-other-sentinels"] != strconv.Itoa(len(s.Sentinels)-1) || strings.Contains(m["flags"], "down") {
			return fmt.Errorf("sentinel %s: master port %s flags %s, %s replicas, %s other sentinels", sn.Addr, m["port"], m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return nil
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// serverInfo reads one INFO section of the server at addr as key → value.
func serverInfo(ctx context.Context, addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// Close kills every process and removes their data.
func (s *Sentinel) Close() {
	for _, sn := range s.Sentinels {
		sn.Kill()
	}
	for _, d := range s.Data {
		d.Kill()
	}
	_ = os.RemoveAll(s.dir)
}
