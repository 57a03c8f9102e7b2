package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The pending set is the end-to-end acknowledgment of published events: a
// sorted set of the change-stream ids of events that the relay published
// (or is about to) and their consumer has not settled yet, each scored with
// the time of its last activity (added, published, or worked on) in Unix
// milliseconds. The relay adds an event before it publishes it, the notify
// trigger settles it once every callback was served and the dead-letter
// sink once it recorded it; what stays in the set with no activity for a
// redelivery timeout was lost on the way and is published again.

func (s *Store) pendingKey() string { return s.key("pending") }

// AddPending records the events ids as pending, with now as their last
// activity; ids already pending keep their score. The relay calls it before
// it publishes them, so that a consumer's Settle can never come first.
func (s *Store) AddPending(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return wrap("add pending", s.rdb.ZAddNX(ctx, s.pendingKey(), s.members(ids)...).Err())
}

// Settle removes the events ids from the pending set: their consumer is
// done with them. Settling an id that is not pending does nothing.
func (s *Store) Settle(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	m := make([]any, len(ids))
	for i, id := range ids {
		m[i] = id
	}
	return wrap("settle", s.rdb.ZRem(ctx, s.pendingKey(), m...).Err())
}

// ackPublishedScript acknowledges stream entries of a consumer group and
// moves the last activity of those that are pending to now, in one step.
var ackPublishedScript = redis.NewScript(`
local stream, pending, group, now = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
for i = 3, #ARGV do
  redis.call('XACK', stream, group, ARGV[i])
  redis.call('ZADD', pending, 'XX', 'GT', now, ARGV[i])
end
return #ARGV - 2
`)

// AckPublished acknowledges the change-stream entries ids of group (XACK)
// and, for those that are pending, moves their last activity to now: the
// relay calls it once the sink accepted their events, so the redelivery
// timeout counts from the publication. Settled ids stay settled.
func (s *Store) AckPublished(ctx context.Context, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids)+2)
	args = append(args, group, s.now().UnixMilli())
	for _, id := range ids {
		args = append(args, id)
	}
	return wrap("ack published "+group,
		ackPublishedScript.Run(ctx, s.rdb, []string{s.streamKey(), s.pendingKey()}, args...).Err())
}

// claimOverdueScript takes up to limit pending ids whose last activity is
// at or before cutoff, earliest first, and moves their last activity to
// now, so that they are not claimed again before another timeout.
var claimOverdueScript = redis.NewScript(`
local pending, cutoff, now, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', pending, '-inf', cutoff, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do redis.call('ZADD', pending, 'XX', now, id) end
return ids
`)

// ClaimOverdue returns up to limit pending events whose last activity was
// at or before cutoff, earliest first, as the change-stream entries they
// were made from, and moves their last activity to now (so a relay claims
// each one once per timeout). Pending ids whose entry is no longer in the
// stream (trimmed) are settled and returned in gone.
func (s *Store) ClaimOverdue(ctx context.Context, cutoff time.Time, limit int) (due []Change, gone []string, err error) {
	if limit <= 0 {
		return nil, nil, nil
	}
	ids, err := claimOverdueScript.Run(ctx, s.rdb, []string{s.pendingKey()},
		cutoff.UnixMilli(), s.now().UnixMilli(), limit).StringSlice()
	if err != nil {
		return nil, nil, wrap("claim overdue", err)
	}
	if len(ids) == 0 {
		return nil, nil, nil
	}
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.XRange(ctx, s.streamKey(), id, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, wrap("read overdue", err)
	}
	for i, c := range cmds {
		if msgs := c.Val(); len(msgs) == 1 {
			due = append(due, changeFrom(msgs[0]))
		} else {
			gone = append(gone, ids[i])
		}
	}
	if err := s.Settle(ctx, gone...); err != nil {
		return nil, nil, err
	}
	return due, gone, nil
}

// PendingCount is the number of pending events.
func (s *Store) PendingCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.pendingKey()).Result()
	return n, wrap("pending count", err)
}

// PendingIDs returns up to limit pending event ids, earliest activity
// first (for tests and diagnostics).
func (s *Store) PendingIDs(ctx context.Context, limit int64) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.pendingKey(), 0, limit-1).Result()
	return ids, wrap("pending ids", err)
}

// members scores ids with the store's clock.
func (s *Store) members(ids []string) []redis.Z {
	now := float64(s.now().UnixMilli())
	m := make([]redis.Z, len(ids))
	for i, id := range ids {
		m[i] = redis.Z{Score: now, Member: id}
	}
	return m
}
