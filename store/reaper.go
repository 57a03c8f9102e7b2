package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Expiry is one liveness deadline that ClaimExpired took off the liveness
// set, with what it did about it.
type Expiry struct {
	// ID is the serInstanceId whose deadline passed.
	ID string
	// Deadline is the deadline that passed (last heartbeat + interval +
	// Grace(interval)).
	Deadline time.Time
	// State is the service's state after the claim: SUSPENDED when it was
	// ACTIVE and the claim suspended it; otherwise the state it had
	// (INACTIVE, or SUSPENDED set by its app), left as it was. "" when the
	// service no longer exists.
	State string
	// Rev is the service's revision after the claim (0 when it is gone).
	Rev int64
	// StreamID is the STATE_CHANGED entry when the claim suspended the
	// service, else "".
	StreamID string
}

// Suspended reports whether the claim turned the service from ACTIVE to
// SUSPENDED (and appended STATE_CHANGED).
func (e Expiry) Suspended() bool { return e.StreamID != "" }

// claimExpiredScript takes up to limit deadlines <= now off the liveness
// set. Each one it takes is acted on exactly once, whoever else runs it at
// the same time: the ZREM and the state change happen in this one script.
// An ACTIVE service becomes SUSPENDED with STATE_CHANGED (the same fields as
// the other service scripts, in the bulk lane: an expiry is as often as not
// one of a node's many); an INACTIVE (or already SUSPENDED) one only
// loses its deadline, without an event, until its next heartbeat sets one
// again; a deadline of a service that is gone is dropped. It returns
// {id, deadline, state, rev, streamID} per deadline taken.
var claimExpiredScript = redis.NewScript(changeLua + `
local p, now, limit, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local lk = p .. ':liveness'
local due = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local out = {}
for i = 1, #due, 2 do
  local id, dl = due[i], due[i + 1]
  redis.call('ZREM', lk, id)
  local k = p .. ':svc:' .. id
  local r = kmep_record(k)
  if not r then
    out[#out + 1] = {id, dl, '', '0', ''}
  elseif r.state == 'ACTIVE' then
    r.state, r.rev = 'SUSPENDED', tostring(tonumber(r.rev) + 1)
    redis.call('HSET', k, 'state', r.state, 'rev', r.rev)
    out[#out + 1] = {id, dl, r.state, r.rev, kmep_service_change(p .. ':events', maxlen, 'STATE_CHANGED', id, r, kmep_bulk)}
  else
    out[#out + 1] = {id, dl, r.state, r.rev, ''}
  end
end
return out
`)

// ClaimExpired acts on up to limit liveness deadlines that passed by now
// (deadline <= now), earliest first, in one atomic script: each deadline is
// removed, and a service that was ACTIVE becomes SUSPENDED (Rev+1) with a
// STATE_CHANGED entry in the change stream, a bulk change (Change.Bulk:
// when a node dies its services lapse together, and the changes clients
// make meanwhile pass them). An INACTIVE service only loses
// its deadline (no event); a deadline whose service is gone is dropped. The
// result has one Expiry per deadline removed, so fewer than limit means none
// was left due. Because the claim is one script, replicas calling it at the
// same time never act twice on one expiry. A later Heartbeat sets a new
// deadline and turns SUSPENDED back into ACTIVE.
func (s *Store) ClaimExpired(ctx context.Context, now time.Time, limit int) ([]Expiry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("claim expired: limit %d is not positive", limit)
	}
	v, err := claimExpiredScript.Run(ctx, s.rdb, nil, s.prefix, ms(now), limit, s.maxLen).Slice()
	if err != nil {
		return nil, wrap("claim expired", err)
	}
	out := make([]Expiry, 0, len(v))
	for _, x := range v {
		e, err := expiryFrom(x)
		if err != nil {
			return out, fmt.Errorf("claim expired: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

var errBadReply = errors.New("unexpected script reply")

func expiryFrom(x any) (Expiry, error) {
	f, ok := x.([]any)
	if !ok || len(f) != 5 {
		return Expiry{}, fmt.Errorf("%w: %v", errBadReply, x)
	}
	str := func(i int) string { s, _ := f[i].(string); return s }
	e := Expiry{ID: str(0), State: str(2), StreamID: str(4)}
	dl, err := strconv.ParseFloat(str(1), 64)
	if err != nil {
		return Expiry{}, fmt.Errorf("%w: deadline %q", errBadReply, str(1))
	}
	e.Deadline = time.UnixMilli(int64(dl))
	e.Rev, _ = strconv.ParseInt(str(3), 10, 64)
	return e, nil
}

// NextDeadline returns the earliest liveness deadline of any service, and
// false when no service has one. It is one O(log n) peek: the reaper's way
// to know how long it may sleep.
func (s *Store) NextDeadline(ctx context.Context) (time.Time, bool, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.key("liveness"), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, wrap("next deadline", err)
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(zs[0].Score)), true, nil
}
