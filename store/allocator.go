package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The index allocator maps string keys (the UPF agent's "<appInstanceId>:<trafficRuleId>")
// to small integers 1..size in a named space, as the data plane wants them
// (upf_trafficrule_id). Four keys per space: the key→index hash, the
// index→key hash, the sorted set of freed indexes and the high-water mark.
// Each operation is one Lua script, so any number of agents may allocate
// at once without handing out an index twice, and the mapping survives
// restarts of the agents (and of Redis with persistence).

// allocKeys are a space's keys: map, reverse, free, next.
func (s *Store) allocKeys(space string) []string {
	return []string{s.key("alloc", space, "map"), s.key("alloc", space, "rev"),
		s.key("alloc", space, "free"), s.key("alloc", space, "next")}
}

// allocScript returns the key's index, or takes the lowest freed one, or
// the next never used one; 0 when the space (1..size) is exhausted. Freed
// indexes above size (the space shrank) are dropped, not handed out.
var allocScript = redis.NewScript(`
local key, size = ARGV[1], tonumber(ARGV[2])
local cur = redis.call('HGET', KEYS[1], key)
if cur then return tonumber(cur) end
local idx
while true do
  local p = redis.call('ZPOPMIN', KEYS[3])
  if #p == 0 then break end
  local i = tonumber(p[1])
  if i <= size then idx = i break end
end
if not idx then
  local nxt = tonumber(redis.call('GET', KEYS[4]) or '0')
  if nxt >= size then return 0 end
  idx = nxt + 1
  redis.call('SET', KEYS[4], idx)
end
redis.call('HSET', KEYS[1], key, idx)
redis.call('HSET', KEYS[2], idx, key)
return idx
`)

// releaseScript frees the key's index (0 when it had none).
var allocReleaseScript = redis.NewScript(`
local idx = redis.call('HGET', KEYS[1], ARGV[1])
if not idx then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], idx)
redis.call('ZADD', KEYS[3], idx, idx)
return tonumber(idx)
`)

// MaxIndexSpace is the largest index space (the data plane's ids are u32).
const MaxIndexSpace = 1<<32 - 2

// Allocation is the outcome of allocating one key.
type Allocation struct {
	Key string
	// Index is 1..size; 0 when Err is set.
	Index uint32
	// Err is nil, or wraps ErrFull when the space has no free index.
	Err error
}

// IndexFullError says the index space of an allocator has no free index.
// It wraps ErrFull.
type IndexFullError struct {
	Space string
	Size  uint32
	Key   string
}

func (e *IndexFullError) Error() string {
	return fmt.Sprintf("allocate index for %q in %s: all %d indexes are in use", e.Key, e.Space, e.Size)
}

// Unwrap makes errors.Is(err, ErrFull) true.
func (e *IndexFullError) Unwrap() error { return ErrFull }

func checkSpace(space string, size uint32) error {
	if space == "" || size == 0 || size > MaxIndexSpace {
		return fmt.Errorf("index space %q of size %d: want a name and a size of 1..%d: %w", space, size, uint32(MaxIndexSpace), ErrInvalid)
	}
	return nil
}

// Allocate returns the index of key in space (1..size): the one it already
// has, else the lowest freed index, else the next never used one. It is
// idempotent for a key. A full space is an *IndexFullError (ErrFull).
func (s *Store) Allocate(ctx context.Context, space string, size uint32, key string) (uint32, error) {
	as, err := s.AllocateMany(ctx, space, size, key)
	if err != nil {
		return 0, err
	}
	return as[0].Index, as[0].Err
}

// AllocateMany allocates each key as Allocate does, in one round trip (one
// script call per key, each atomic). The error is for the call as a whole
// (ErrUnavailable, ErrInvalid); a full space is reported per key.
func (s *Store) AllocateMany(ctx context.Context, space string, size uint32, keys ...string) ([]Allocation, error) {
	if err := checkSpace(space, size); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("allocate in %s: empty key: %w", space, ErrInvalid)
		}
	}
	ks := s.allocKeys(space)
	cmds, err := s.pipeScript(ctx, allocScript, len(keys), func(i int) ([]string, []any) {
		return ks, []any{keys[i], size}
	})
	if err != nil {
		return nil, wrap("allocate in "+space, err)
	}
	out := make([]Allocation, len(keys))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, wrap("allocate in "+space, err)
		}
		out[i] = Allocation{Key: keys[i], Index: uint32(n)}
		if n == 0 {
			out[i].Err = &IndexFullError{Space: space, Size: size, Key: keys[i]}
		}
	}
	return out, nil
}

// Release frees key's index for reuse and returns it (0, nil when key had
// none: releasing twice is harmless).
func (s *Store) Release(ctx context.Context, space, key string) (uint32, error) {
	n, err := allocReleaseScript.Run(ctx, s.rdb, s.allocKeys(space), key).Int64()
	if err != nil {
		return 0, wrap("release index of "+key, err)
	}
	return uint32(n), nil
}

// LookupIndex returns key's index in space. ErrNotFound when it has none.
func (s *Store) LookupIndex(ctx context.Context, space, key string) (uint32, error) {
	v, err := s.rdb.HGet(ctx, s.allocKeys(space)[0], key).Result()
	if err != nil {
		return 0, wrap("lookup index of "+key, err)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("lookup index of %s: corrupt value %q: %w", key, v, ErrInvalid)
	}
	return uint32(n), nil
}

// Allocations returns every key of space with its index.
func (s *Store) Allocations(ctx context.Context, space string) (map[string]uint32, error) {
	m, err := s.rdb.HGetAll(ctx, s.allocKeys(space)[0]).Result()
	if err != nil {
		return nil, wrap("allocations of "+space, err)
	}
	out := make(map[string]uint32, len(m))
	for k, v := range m {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("allocations of %s: corrupt index %q of %q: %w", space, v, k, ErrInvalid)
		}
		out[k] = uint32(n)
	}
	return out, nil
}

// pipeScript runs script n times in one pipeline (EVALSHA) with the keys
// and arguments args(i) gives; when Redis does not know the script yet (a
// fresh or restarted server) it loads it and runs the pipeline once more,
// which is safe because a NOSCRIPT call did nothing.
func (s *Store) pipeScript(ctx context.Context, script *redis.Script, n int, args func(i int) ([]string, []any)) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, n)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range n {
				k, a := args(i)
				cmds[i] = script.EvalSha(ctx, p, k, a...)
			}
			return nil
		})
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := script.Load(ctx, s.rdb).Err(); err != nil {
				return nil, err
			}
			continue
		}
		return cmds, err
	}
}
