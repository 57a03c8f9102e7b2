package auth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// cacheShard is one lock's worth of the cache, padded so that neighbouring
// shards' locks do not share a cache line.
type cacheShard struct {
	mu sync.RWMutex
	m  map[string]Claims
	_  [64]byte
}

// tokenCache remembers the claims of verified tokens, keyed by the token
// text itself. Keying by the text (rather than, say, its SHA-256) makes a hit
// cost a map lookup instead of a hash of ~400 bytes, about ten times less on
// the hot path, with no allocation; the price is the token's length in
// memory per entry, and entries only ever hold tokens that verified, i.e.
// that a trusted key signed. Equal text is the only way to hit, so a hit is
// exactly "this token verified before".
//
// The cache is sharded by a seeded hash of the token; when a shard is full
// it drops its expired entries and then about half of the rest, in Go's
// randomised map order.
type tokenCache struct {
	seed     maphash.Seed
	shards   []cacheShard
	perShard int
}

// shardsFor returns how many shards a cache of size entries gets: one for a
// small cache, so that its bound is exact, 64 otherwise (the bound is then
// rounded up to a multiple of 64).
func shardsFor(size int) int {
	if size < 1024 {
		return 1
	}
	return 64
}

func newTokenCache(size int) *tokenCache {
	n := shardsFor(size)
	c := &tokenCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n), perShard: (size + n - 1) / n}
	for i := range c.shards {
		c.shards[i].m = make(map[string]Claims)
	}
	return c
}

func (c *tokenCache) shard(token string) *cacheShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, token)%uint64(len(c.shards))]
}

// get returns the claims cached for token.
func (c *tokenCache) get(token string) (Claims, bool) {
	s := c.shard(token)
	s.mu.RLock()
	cl, ok := s.m[token]
	s.mu.RUnlock()
	return cl, ok
}

// put caches cl for a copy of token (which may be a slice of a larger
// string) if admit, called under the shard's lock, allows it.
// An entry is expired from its ExpiresAt plus leeway on.
func (c *tokenCache) put(token string, cl Claims, now time.Time, leeway time.Duration, admit func() bool) {
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !admit() {
		return
	}
	if _, ok := s.m[token]; !ok && len(s.m) >= c.perShard {
		for key, e := range s.m {
			if !now.Before(e.ExpiresAt.Add(leeway)) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) <= c.perShard/2 {
				break
			}
			delete(s.m, key)
		}
	}
	s.m[strings.Clone(token)] = cl
}

// remove drops token.
func (c *tokenCache) remove(token string) {
	s := c.shard(token)
	s.mu.Lock()
	delete(s.m, token)
	s.mu.Unlock()
}

// purge drops every entry signed by a key in kids.
func (c *tokenCache) purge(kids map[string]bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for key, e := range s.m {
			if kids[e.KeyID] {
				delete(s.m, key)
			}
		}
		s.mu.Unlock()
	}
}

// len returns the number of cached entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
