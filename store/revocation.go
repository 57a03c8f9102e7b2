package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RevocationRetention is how long a revocation is remembered, by Redis and
// by the verifiers that follow it. It must exceed the longest lifetime of a
// token plus the verifiers' leeway (one hour and 30 s by default), so that
// every token a revocation refuses has expired before it is forgotten.
const RevocationRetention = 24 * time.Hour

// Tokens are revoked by generation. The counter kmep:tokgen only grows; a
// token carries the value it had when the token was issued (read atomically
// with the credential that signed the request, see AdmitTokenRequest).
// Revoking an app instance's tokens increments the counter and records the
// new value g for the app (hash kmep:revoked, pruned through the sorted set
// kmep:revoked:exp after RevocationRetention): from then on its tokens of a
// generation below g are refused, and tokens issued later carry at least g.
// This is exact whatever the clocks say: a token issued before the
// revocation has a generation below g, one issued after it does not.
//
// revokeLua defines kmep_revoke(p, app), spliced into the scripts that end
// an app instance's credentials (DeleteAppConf, an AK change in PutAppConf,
// PurgeApp): it records the revocation in the same atomic step as the
// change and returns g, which the script writes into the change's stream
// entry as the field 'revoke' (fieldRevoke) so that every verifier following the stream
// learns it.
var revokeLua = `
local function kmep_revoke(p, app)
  local gen = redis.call('INCR', p .. ':tokgen')
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local hk, ek = p .. ':revoked', p .. ':revoked:exp'
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', ek, '-inf', now)) do redis.call('HDEL', hk, old) end
  redis.call('ZREMRANGEBYSCORE', ek, '-inf', now)
  redis.call('HSET', hk, app, gen)
  redis.call('ZADD', ek, now + ` + revocationRetentionMS + `, app)
  return tostring(gen)
end
`

var revocationRetentionMS = strconv.FormatInt(RevocationRetention.Milliseconds(), 10)

// Revocation refuses the tokens of an app instance whose generation is
// below Generation.
type Revocation struct {
	AppInstanceID string
	Generation    int64
	// Until is when the revocation is forgotten (RevocationRetention after
	// it was made, on Redis's clock).
	Until time.Time
}

// RevocationSnapshot is every revocation still remembered, and the change
// stream position it is current to: follow it with ReadRevocations(After).
type RevocationSnapshot struct {
	After       string
	Revocations []Revocation
}

var revocationsScript = redis.NewScript(`
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('XREVRANGE', p .. ':events', '+', '-', 'COUNT', 1)
local out = {'0-0'}
if last[1] then out[1] = last[1][1] end
local gens = redis.call('HGETALL', p .. ':revoked')
for i = 1, #gens, 2 do
  local exp = redis.call('ZSCORE', p .. ':revoked:exp', gens[i])
  if exp and tonumber(exp) > now then
    out[#out + 1] = gens[i]
    out[#out + 1] = gens[i + 1]
    out[#out + 1] = exp
  end
end
return out
`)

// Revocations returns every revocation still remembered, with the change
// stream position they are current to, in one atomic step.
func (s *Store) Revocations(ctx context.Context) (RevocationSnapshot, error) {
	v, err := revocationsScript.Run(ctx, s.rdb, nil, s.prefix).StringSlice()
	if err != nil {
		return RevocationSnapshot{}, wrap("revocations", err)
	}
	snap := RevocationSnapshot{After: v[0]}
	for i := 1; i+2 < len(v); i += 3 {
		gen, _ := strconv.ParseInt(v[i+1], 10, 64)
		snap.Revocations = append(snap.Revocations, Revocation{AppInstanceID: v[i], Generation: gen, Until: msTime(v[i+2])})
	}
	return snap, nil
}

// RevocationBatch is what one ReadRevocations found.
type RevocationBatch struct {
	// Last is the stream position to read on from (the after given when
	// nothing came).
	Last string
	// Revocations made by the entries read, in stream order.
	Revocations []Revocation
	// More reports that the read stopped at its count: more entries may
	// follow at once.
	More bool
}

// revocationReadCount bounds the entries one ReadRevocations reads.
const revocationReadCount = 1000

// ReadRevocations reads the change stream after stream id after and returns
// the revocations among the entries read. With block > 0 it waits up to
// block for the first entry. Everything appended before the call started
// is in the batch unless More is set.
func (s *Store) ReadRevocations(ctx context.Context, after string, block time.Duration) (RevocationBatch, error) {
	b := RevocationBatch{Last: after}
	var msgs []redis.XMessage
	if block <= 0 {
		m, err := s.rdb.XRangeN(ctx, s.streamKey(), "("+after, "+", revocationReadCount).Result()
		if err != nil {
			return b, wrap("read revocations", err)
		}
		msgs = m
	} else {
		res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.streamKey(), after}, Count: revocationReadCount, Block: block}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return b, wrap("read revocations", err)
		}
		if len(res) > 0 {
			msgs = res[0].Messages
		}
	}
	for _, m := range msgs {
		g, ok := m.Values[fieldRevoke].(string)
		if !ok {
			continue
		}
		gen, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return b, fmt.Errorf("read revocations: entry %s: bad generation %q", m.ID, g)
		}
		app, _ := m.Values[fieldApp].(string)
		ms, _ := splitID(m.ID)
		b.Revocations = append(b.Revocations, Revocation{AppInstanceID: app, Generation: gen,
			Until: time.UnixMilli(int64(ms)).Add(RevocationRetention)})
	}
	if n := len(msgs); n > 0 {
		b.Last = msgs[n-1].ID
	}
	b.More = len(msgs) == revocationReadCount
	return b, nil
}
