package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DeadLetter is one recorded dead letter (RecordDeadLetter).
type DeadLetter struct {
	// StreamID names the entry in the dead-letter stream (unique; one event
	// dead-lettered twice is two entries).
	StreamID string
	// EventID is the event's id.
	EventID string
	// Payload is what the deadletter trigger recorded (its JSON Record).
	Payload []byte
}

// ListDeadLetters returns up to count of the newest dead letters, newest
// first.
func (s *Store) ListDeadLetters(ctx context.Context, count int64) ([]DeadLetter, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.key("deadletter"), "+", "-", count).Result()
	if err != nil {
		return nil, wrap("dead letters", err)
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = deadLetter(m)
	}
	return out, nil
}

// GetDeadLetter returns the dead letter streamID names; ErrNotFound when
// there is none (never recorded, or removed), ErrInvalid when streamID is
// not a stream id.
func (s *Store) GetDeadLetter(ctx context.Context, streamID string) (DeadLetter, error) {
	if !validStreamID(streamID) {
		return DeadLetter{}, fmt.Errorf("dead letter %q: %w", streamID, ErrInvalid)
	}
	msgs, err := s.rdb.XRangeN(ctx, s.key("deadletter"), streamID, streamID, 1).Result()
	if err != nil {
		return DeadLetter{}, wrap("dead letter "+streamID, err)
	}
	if len(msgs) == 0 {
		return DeadLetter{}, fmt.Errorf("dead letter %s: %w", streamID, ErrNotFound)
	}
	return deadLetter(msgs[0]), nil
}

// DeleteDeadLetter removes the dead letter streamID names (once it was
// redelivered); ErrNotFound when there is none.
func (s *Store) DeleteDeadLetter(ctx context.Context, streamID string) error {
	if !validStreamID(streamID) {
		return fmt.Errorf("dead letter %q: %w", streamID, ErrInvalid)
	}
	n, err := s.rdb.XDel(ctx, s.key("deadletter"), streamID).Result()
	if err != nil {
		return wrap("delete dead letter "+streamID, err)
	}
	if n == 0 {
		return fmt.Errorf("delete dead letter %s: %w", streamID, ErrNotFound)
	}
	return nil
}

func deadLetter(m redis.XMessage) DeadLetter {
	id, _ := m.Values["id"].(string)
	d, _ := m.Values["data"].(string)
	return DeadLetter{StreamID: m.ID, EventID: id, Payload: []byte(d)}
}

// validStreamID reports whether s is a complete Redis stream id
// ("<ms>-<seq>", both decimal).
func validStreamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	return ok && digits(ms) && digits(seq) && len(ms) <= 20 && len(seq) <= 20
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
