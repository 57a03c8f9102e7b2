package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnsureGroup creates consumer group on the change stream if it does not
// exist yet, starting after from ("$": only changes from now on; "0": the
// whole retained history). An existing group is left as it is.
func (s *Store) EnsureGroup(ctx context.Context, group, from string) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.streamKey(), group, from).Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return wrap("create group "+group, err)
}

// ReadGroup reads changes for consumer of group: with pending, the entries
// already delivered to it but not acknowledged (after a restart), else new
// ones, waiting up to block.
func (s *Store) ReadGroup(ctx context.Context, group, consumer string, count int64, block time.Duration, pending bool) ([]Change, error) {
	id := ">"
	if pending {
		id, block = "0", -1
	}
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
		Streams: []string{s.streamKey(), id}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("read group "+group, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return changes(res[0].Messages), nil
}

// Ack acknowledges changes of group.
func (s *Store) Ack(ctx context.Context, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return wrap("ack "+group, s.rdb.XAck(ctx, s.streamKey(), group, ids...).Err())
}

var leaseScript = redis.NewScript(`
local k, holder, ttl = KEYS[1], ARGV[1], ARGV[2]
local cur = redis.call('GET', k)
if not cur or cur == holder then
  redis.call('SET', k, holder, 'PX', ttl)
  return 1
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// AcquireLease takes or renews the lease name for holder for ttl. It
// reports whether holder holds it now.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.key("lease", name)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, wrap("lease "+name, err)
	}
	return n == 1, nil
}

// ReleaseLease gives the lease up if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	return wrap("release lease "+name, releaseScript.Run(ctx, s.rdb, []string{s.key("lease", name)}, holder).Err())
}

// MarkDone records that work item key (e.g. one notification of one event
// to one subscription) succeeded, for ttl, so a redelivery skips it.
func (s *Store) MarkDone(ctx context.Context, key string, ttl time.Duration) error {
	return wrap("mark done", s.rdb.Set(ctx, s.key("done", key), "1", ttl).Err())
}

// Done reports, for each key, whether MarkDone recorded it.
func (s *Store) Done(ctx context.Context, keys ...string) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.key("done", k)
	}
	v, err := s.rdb.MGet(ctx, full...).Result()
	if err != nil {
		return nil, wrap("done", err)
	}
	out := make([]bool, len(v))
	for i, x := range v {
		out[i] = x != nil
	}
	return out, nil
}

// RecordDeadLetter appends an event the broker could not deliver to the
// dead-letter stream (capped at 10,000 entries) for an operator to inspect.
func (s *Store) RecordDeadLetter(ctx context.Context, id string, payload []byte) error {
	return wrap("record dead letter "+id, s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.key("deadletter"),
		MaxLen: 10000, Approx: true, Values: []any{"id", id, "data", payload}}).Err())
}

// DeadLetters returns up to count of the newest dead-lettered events' payloads.
func (s *Store) DeadLetters(ctx context.Context, count int64) ([][]byte, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.key("deadletter"), "+", "-", count).Result()
	if err != nil {
		return nil, wrap("dead letters", err)
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		d, _ := m.Values["data"].(string)
		out[i] = []byte(d)
	}
	return out, nil
}
