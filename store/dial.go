package store

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultReplicaWait is how long a write waits for its replicas when
// REDIS_URL sets min_replicas without min_replicas_timeout.
const DefaultReplicaWait = 500 * time.Millisecond

// Dial parses REDIS_URL into a client with kmep's options. Two forms:
//
//	redis://[[user]:password@]host:port[/db][?option=value&...]
//	redis+sentinel://[[user]:password@]sentinel:port[/db]?master_name=NAME[&addr=sentinel2:port...][&option=value...]
//
// (rediss:// and rediss+sentinel:// for TLS). The first is one Redis
// server, the primary. The second asks the Redis Sentinels (the host and
// every addr) for the primary named master_name and follows it through
// failovers (go-redis's failover client): its userinfo authenticates with
// the sentinels, the username and password options with the Redis servers.
// The options are go-redis's URL options (dial_timeout, read_timeout,
// pool_size, ...), plus kmep's own:
//
//   - min_replicas=N: a write is acknowledged only once N replicas have it
//     (Redis' WAIT on the write's connection); when fewer acknowledge within
//     min_replicas_timeout the write fails with ErrReplicas, an
//     ErrUnavailable. Zero value: writes do not wait.
//   - min_replicas_timeout=DURATION: that wait, below read_timeout. Zero
//     value: DefaultReplicaWait.
//
// Dial, read and write timeouts default to 2 s, so a dead or stalled Redis
// turns into a quick 503 rather than a hung request, and a dead one is
// dialled once per command. go-redis never retries a command (MaxRetries
// -1, whatever the URL says): a command whose answer was lost to a timeout
// may have been applied, and sending it again would apply a write twice or
// answer it with what the first attempt did (a create answered "already
// exists"). The caller sees ErrUnavailable, and the write happened once or
// not at all.
func Dial(rawURL string) (*redis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	q := u.Query()
	minReplicas, wait, err := replicaOptions(q)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	// With min_replicas every write is a pipeline (the write and its WAIT):
	// unless told otherwise, pipelines share the command pool and its size
	// rather than go-redis' separate pool of 10.
	sharePool := minReplicas > 0 && !q.Has("pipeline_pool_size")
	u.RawQuery = q.Encode()
	var c *redis.Client
	switch u.Scheme {
	case "redis", "rediss":
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout), orDefault(o.ReadTimeout), orDefault(o.WriteTimeout)
		if o.DialerRetries == 0 {
			o.DialerRetries = 1
		}
		if o.Protocol == 0 {
			o.Protocol = 2 // kmep uses no RESP3 push messages; RESP2 skips their per-command check
		}
		o.MaxRetries = -1
		if sharePool {
			o.PipelinePoolSize = -1
		}
		if err := checkWait(minReplicas, wait, o.ReadTimeout); err != nil {
			return nil, err
		}
		c = redis.NewClient(o)
	case "redis+sentinel", "rediss+sentinel":
		u.Scheme = strings.TrimSuffix(u.Scheme, "+sentinel")
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		switch {
		case o.MasterName == "":
			return nil, fmt.Errorf("parse REDIS_URL: a sentinel URL needs master_name")
		case o.ReplicaOnly || o.RouteByLatency || o.RouteRandomly:
			return nil, fmt.Errorf("parse REDIS_URL: kmep reads and writes the primary: replica_only, route_by_latency and route_randomly do not apply")
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout), orDefault(o.ReadTimeout), orDefault(o.WriteTimeout)
		if o.DialerRetries == 0 {
			o.DialerRetries = 1
		}
		if o.Protocol == 0 {
			o.Protocol = 2
		}
		o.MaxRetries = -1
		if sharePool {
			o.PipelinePoolSize = -1
		}
		if err := checkWait(minReplicas, wait, o.ReadTimeout); err != nil {
			return nil, err
		}
		c = redis.NewFailoverClient(o)
	default:
		return nil, fmt.Errorf("parse REDIS_URL: scheme %q: want redis, rediss, redis+sentinel or rediss+sentinel", u.Scheme)
	}
	if minReplicas > 0 {
		c.AddHook(newReplicaHook(c, minReplicas, wait))
	}
	return c, nil
}

// replicaOptions takes kmep's own options out of q.
func replicaOptions(q url.Values) (int, time.Duration, error) {
	n, wait := 0, DefaultReplicaWait
	if v := q.Get("min_replicas"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			return 0, 0, fmt.Errorf("min_replicas %q: want a whole number ≥ 0", v)
		}
	}
	if v := q.Get("min_replicas_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, 0, fmt.Errorf("min_replicas_timeout %q: want a positive duration such as 500ms", v)
		}
		wait = d
	}
	q.Del("min_replicas")
	q.Del("min_replicas_timeout")
	return n, wait, nil
}

func checkWait(n int, wait, readTimeout time.Duration) error {
	if n > 0 && readTimeout > 0 && wait >= readTimeout {
		return fmt.Errorf("parse REDIS_URL: min_replicas_timeout %s must be below read_timeout %s", wait, readTimeout)
	}
	return nil
}

func orDefault(d time.Duration) time.Duration {
	if d == 0 {
		return 2 * time.Second
	}
	return d
}
