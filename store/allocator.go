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
// Each operation is one Lua script (for any number of keys), so any number
// of agents may allocate at once without handing out an index twice, and the mapping survives
// restarts of the agents (and of Redis with persistence).

// allocKeys are a space's keys: map, reverse, free, next.
func (s *Store) allocKeys(space string) []string {
	return []string{s.key("alloc", space, "map"), s.key("alloc", space, "rev"),
		s.key("alloc", space, "free"), s.key("alloc", space, "next")}
}

// allocScript allocates each key of ARGV[2..] in turn and returns their
// indexes: the key's index, or the lowest freed one, or the next never
// used one; 0 when the space (1..ARGV[1]) is exhausted. Freed indexes
// above the size (the space shrank) are dropped, not handed out. It reads
// and writes the hashes in chunks (HMGET and HSET of up to 1000 fields),
// not per key.
var allocScript = redis.NewScript(`
local size = tonumber(ARGV[1])
local out, seen, fwd, rev = {}, {}, {}, {}
local nxt, nofree, full = nil, false, false
for c = 2, #ARGV, 1000 do
  local last = math.min(c + 999, #ARGV)
  local cur = redis.call('HMGET', KEYS[1], unpack(ARGV, c, last))
  for j = c, last do
    local key = ARGV[j]
    local idx = cur[j - c + 1]
    if idx then
      idx = tonumber(idx)
    else
      idx = seen[key]
    end
    if not idx and not full then
      while not nofree do
        local p = redis.call('ZPOPMIN', KEYS[3])
        if #p == 0 then
          nofree = true
        elseif tonumber(p[1]) <= size then
          idx = tonumber(p[1])
          break
        end
      end
      if not idx then
        nxt = nxt or tonumber(redis.call('GET', KEYS[4]) or '0')
        if nxt < size then
          nxt = nxt + 1
          idx = nxt
        else
          full = true
        end
      end
      if idx then
        seen[key] = idx
        fwd[#fwd + 1] = key
        fwd[#fwd + 1] = idx
        rev[#rev + 1] = idx
        rev[#rev + 1] = key
      end
    end
    out[#out + 1] = idx or 0
  end
end
for c = 1, #fwd, 2000 do
  redis.call('HSET', KEYS[1], unpack(fwd, c, math.min(c + 1999, #fwd)))
  redis.call('HSET', KEYS[2], unpack(rev, c, math.min(c + 1999, #rev)))
end
if nxt then redis.call('SET', KEYS[4], nxt) end
return out
`)

// allocReleaseScript frees the index of each key of ARGV and returns
// them (0 for a key that had none).
var allocReleaseScript = redis.NewScript(`
local out = {}
for j = 1, #ARGV do
  local idx = redis.call('HGET', KEYS[1], ARGV[j])
  if idx then
    redis.call('HDEL', KEYS[1], ARGV[j])
    redis.call('HDEL', KEYS[2], idx)
    redis.call('ZADD', KEYS[3], idx, idx)
  end
  out[#out + 1] = tonumber(idx or '0')
end
return out
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

// AllocateMany allocates each key as Allocate does, in order, in one
// atomic step (one script call for all of them). The error is for the call
// as a whole (ErrUnavailable, ErrInvalid); a full space is reported per
// key.
func (s *Store) AllocateMany(ctx context.Context, space string, size uint32, keys ...string) ([]Allocation, error) {
	if err := checkSpace(space, size); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 1+len(keys))
	args = append(args, size)
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("allocate in %s: empty key: %w", space, ErrInvalid)
		}
		args = append(args, k)
	}
	idx, err := allocScript.Run(ctx, s.rdb, s.allocKeys(space), args...).Int64Slice()
	if err == nil && len(idx) != len(keys) {
		err = fmt.Errorf("%d indexes for %d keys", len(idx), len(keys))
	}
	if err != nil {
		return nil, wrap("allocate in "+space, err)
	}
	out := make([]Allocation, len(keys))
	for i, n := range idx {
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
	n, err := s.ReleaseMany(ctx, space, key)
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// ReleaseMany releases each key as Release does, in one atomic step, and
// returns the indexes freed (0 for a key that had none).
func (s *Store) ReleaseMany(ctx context.Context, space string, keys ...string) ([]uint32, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	idx, err := allocReleaseScript.Run(ctx, s.rdb, s.allocKeys(space), args...).Int64Slice()
	if err == nil && len(idx) != len(keys) {
		err = fmt.Errorf("%d indexes for %d keys", len(idx), len(keys))
	}
	if err != nil {
		return nil, wrap("release indexes in "+space, err)
	}
	out := make([]uint32, len(idx))
	for i, n := range idx {
		out[i] = uint32(n)
	}
	return out, nil
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
