package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Store.
type Options struct {
	// Client is the Redis connection. Required.
	Client redis.UniversalClient
	// Prefix is prepended to every key, followed by ':'. Zero value: "kmep".
	Prefix string
	// EncryptionKey is the 32-byte AES-256-GCM key that seals secret keys at
	// rest. Zero value: credential writes and reads fail.
	EncryptionKey []byte
	// StreamMaxLen caps the change stream (approximate trimming). Zero value:
	// 1,000,000 entries.
	StreamMaxLen int64
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
}

// Store is kmep's state in Redis. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	seal   *sealer
	maxLen int64
	now    func() time.Time
}

// New returns a Store over opts.Client.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, fmt.Errorf("store: Options.Client is required")
	}
	s := &Store{rdb: opts.Client, prefix: opts.Prefix, maxLen: opts.StreamMaxLen, now: opts.Now}
	if s.prefix == "" {
		s.prefix = "kmep"
	}
	if s.maxLen == 0 {
		s.maxLen = 1_000_000
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.EncryptionKey != nil {
		sl, err := newSealer(opts.EncryptionKey)
		if err != nil {
			return nil, err
		}
		s.seal = sl
	}
	return s, nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping", s.rdb.Ping(ctx).Err())
}

// Client returns the underlying Redis client (for agents that share it).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) key(parts ...string) string {
	k := s.prefix
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// streamKey is the change stream.
func (s *Store) streamKey() string { return s.key("events") }
