package store

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrReplicas: a write was applied on the primary but not acknowledged by
// as many replicas as the store requires within the wait (see Dial's
// min_replicas). It is also an ErrUnavailable: the client gets a 503, and the
// write may survive (the replicas catch up, or the primary stays) or be lost
// with the primary in a failover: once or not at all.
var ErrReplicas = fmt.Errorf("%w: too few replicas acknowledged the write", ErrUnavailable)

// replicaHook makes every write wait for replicas before it counts as done:
// each command or pipeline that may write is sent together with
// WAIT n timeout on the same connection (WAIT covers the writes of its own
// connection), and the write fails with ErrReplicas when fewer than n
// replicas acknowledged it. Reads, connection commands and blocking reads
// pass through unchanged, as do the store's read-only scripts.
//
// It is a go-redis hook on the client Dial returns, so no write path can
// forget it. A single command becomes a two-command pipeline on the client
// (one round trip); a MULTI/EXEC pipeline runs on one sticky connection
// followed by its WAIT (two round trips). The store uses no WATCH, Conn or
// Tx of its own; those would lose their connection here.
type replicaHook struct {
	c       *redis.Client
	n       int
	timeout time.Duration
	// readOnly are the SHA-1s of the store's scripts that only read.
	readOnly map[string]bool
}

var _ redis.Hook = (*replicaHook)(nil)

// waiting marks the context of the pipeline the hook itself sends, so the
// hook does not wrap it again.
type waiting struct{}

func newReplicaHook(c *redis.Client, n int, timeout time.Duration) *replicaHook {
	h := &replicaHook{c: c, n: n, timeout: timeout, readOnly: map[string]bool{}}
	for _, s := range []*redis.Script{credentialScript, admitScript, revocationsScript} {
		h.readOnly[s.Hash()] = true
	}
	return h
}

func (h *replicaHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *replicaHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(waiting{}) != nil || !h.writes(cmd) {
			return next(ctx, cmd)
		}
		wctx := context.WithValue(ctx, waiting{}, true)
		var wait *redis.IntCmd
		_, _ = h.c.Pipelined(wctx, func(p redis.Pipeliner) error {
			_ = p.Process(wctx, cmd)
			wait = redis.NewIntCmd(wctx, "wait", h.n, h.timeout.Milliseconds())
			_ = p.Process(wctx, wait)
			return nil
		})
		if err := cmd.Err(); err != nil && !isReply(err) {
			return err // never reached Redis, or its answer was lost
		}
		if err := h.check(wait); err != nil {
			return err
		}
		return cmd.Err()
	}
}

func (h *replicaHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(waiting{}) != nil || !h.anyWrites(cmds) {
			return next(ctx, cmds)
		}
		wctx := context.WithValue(ctx, waiting{}, true)
		if len(cmds) >= 2 && cmds[0].Name() == "multi" && cmds[len(cmds)-1].Name() == "exec" {
			return h.tx(wctx, cmds[1:len(cmds)-1])
		}
		wait := redis.NewIntCmd(wctx, "wait", h.n, h.timeout.Milliseconds())
		all := append(cmds[:len(cmds):len(cmds)], wait)
		_ = next(wctx, all)
		return h.settle(cmds, h.check(wait))
	}
}

// tx runs a MULTI/EXEC transaction's commands and its WAIT on one
// connection of the pool.
func (h *replicaHook) tx(ctx context.Context, cmds []redis.Cmder) error {
	cn := h.c.Conn()
	defer cn.Close()
	_, err := cn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range cmds {
			_ = p.Process(ctx, c)
		}
		return nil
	})
	if err != nil && !isReply(err) {
		return err
	}
	return h.settle(cmds, h.check(cn.Wait(ctx, h.n, h.timeout)))
}

// settle gives the wait's failure to every command Redis answered (what it
// wrote is not acknowledged; an error reply loses to it too, as Redis was
// reached but the outcome is not replicated), and returns the first error
// among cmds.
func (h *replicaHook) settle(cmds []redis.Cmder, werr error) error {
	var first error
	for _, c := range cmds {
		if werr != nil && (c.Err() == nil || isReply(c.Err())) {
			c.SetErr(werr)
		}
		if first == nil {
			first = c.Err()
		}
	}
	return first
}

func (h *replicaHook) check(wait *redis.IntCmd) error {
	got, err := wait.Result()
	if err != nil {
		return fmt.Errorf("%w: wait: %w", ErrReplicas, err)
	}
	if got < int64(h.n) {
		return fmt.Errorf("%w: %d of %d within %s", ErrReplicas, got, h.n, h.timeout)
	}
	return nil
}

// isReply reports whether err is an answer from Redis (an error reply, or
// redis.Nil) rather than a failure to get one.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func (h *replicaHook) anyWrites(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if h.writes(c) {
			return true
		}
	}
	return false
}

// writes reports whether cmd may change data: everything but the reads,
// connection and server commands and blocking reads the store sends (an
// unknown command counts as a write), and but the store's read-only
// scripts.
func (h *replicaHook) writes(cmd redis.Cmder) bool {
	name := cmd.Name()
	args := cmd.Args()
	switch {
	case name == "evalsha" && len(args) > 1:
		sha, _ := args[1].(string)
		return !h.readOnly[sha]
	case name == "eval" && len(args) > 1:
		src, _ := args[1].(string)
		sum := sha1.Sum([]byte(src))
		return !h.readOnly[hex.EncodeToString(sum[:])]
	}
	return !passThrough[name]
}

// passThrough are the commands that change no data, or block (a blocking
// command cannot share a pipeline's read timeout). XREADGROUP moves entries
// into the group's pending list, but what a failover loses of that is
// delivered again: the consumers are at least once already.
var passThrough = map[string]bool{
	// reads
	"get": true, "mget": true, "getrange": true, "strlen": true, "exists": true, "type": true,
	"ttl": true, "pttl": true, "expiretime": true, "pexpiretime": true, "keys": true, "scan": true,
	"dbsize": true, "randomkey": true, "object": true, "memory": true, "dump": true,
	"hget": true, "hmget": true, "hgetall": true, "hexists": true, "hlen": true, "hkeys": true,
	"hvals": true, "hstrlen": true, "hscan": true, "hrandfield": true,
	"smembers": true, "sismember": true, "smismember": true, "scard": true, "srandmember": true,
	"sinter": true, "sintercard": true, "sunion": true, "sdiff": true, "sscan": true,
	"zscore": true, "zmscore": true, "zcard": true, "zcount": true, "zrank": true, "zrevrank": true,
	"zrange": true, "zrangebyscore": true, "zrevrange": true, "zrevrangebyscore": true,
	"zrangebylex": true, "zlexcount": true, "zscan": true, "zrandmember": true,
	"lrange": true, "llen": true, "lindex": true, "lpos": true,
	"xrange": true, "xrevrange": true, "xlen": true, "xinfo": true, "xpending": true,
	"bitcount": true, "getbit": true, "pfcount": true,
	"evalsha_ro": true, "eval_ro": true, "fcall_ro": true,
	// connection, server and scripting housekeeping
	"ping": true, "echo": true, "hello": true, "auth": true, "select": true, "client": true,
	"readonly": true, "readwrite": true, "role": true, "info": true, "time": true, "command": true,
	"config": true, "script": true, "sentinel": true, "cluster": true, "quit": true, "reset": true,
	"wait": true, "waitaof": true, "lastsave": true, "slowlog": true, "latency": true, "debug": true,
	"multi": true, "exec": true, "discard": true, "watch": true, "unwatch": true,
	"subscribe": true, "psubscribe": true, "ssubscribe": true, "unsubscribe": true,
	"punsubscribe": true, "sunsubscribe": true, "pubsub": true,
	// blocking
	"xread": true, "xreadgroup": true, "blpop": true, "brpop": true, "blmove": true,
	"brpoplpush": true, "blmpop": true, "bzpopmin": true, "bzpopmax": true, "bzmpop": true,
}

// Sync returns once everything Redis acknowledged before the call has
// reached the replicas Dial's min_replicas requires (ErrReplicas when it
// does not within the wait): what the caller read may then be answered as
// stored, even if a write of it was answered 503. It sends one command that
// Redis replicates (a PUBLISH to the store's sync channel, which nobody
// reads) and, with min_replicas, its WAIT; without, it costs one round trip.
func (s *Store) Sync(ctx context.Context) error {
	return wrap("sync replicas", s.rdb.Publish(ctx, s.key("sync"), "").Err())
}
