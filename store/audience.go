package store

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// AudienceQuery asks for the subscriptions one event is notified to, and
// which of them already got it.
type AudienceQuery struct {
	// EventID is the event's id (its change-stream id): the done markers
	// are per event and subscription.
	EventID string
	// Service, for a service change, is the record after the change: the
	// service-availability subscriptions whose filter passes it are
	// selected (as MatchServiceSubscriptions does).
	Service *ServiceRecord
	// App, for an app termination (Service nil), is the app instance whose
	// AppTermination subscriptions are selected.
	App string
}

// Audience is the answer to one AudienceQuery.
type Audience struct {
	// Subs are the selected subscriptions, ordered by id.
	Subs []Subscription
	// Done[i] reports whether MarkNotified recorded Subs[i] for the event.
	Done []bool
}

// Notified names one notification: an event to one subscription.
type Notified struct{ EventID, SubscriptionID string }

func (s *Store) notifiedKey(n Notified) string {
	return s.key("done", n.EventID+"/"+n.SubscriptionID)
}

// Audiences answers many AudienceQuerys in two round trips, whatever their
// number: the selection indexes of each (never every subscription), then
// the subscriptions they name (each read once) and the done markers. The
// notify trigger batches the events it handles at once through it.
func (s *Store) Audiences(ctx context.Context, qs []AudienceQuery) ([]Audience, error) {
	out := make([]Audience, len(qs))
	if len(qs) == 0 {
		return out, nil
	}
	unions := make([]*redis.StringSliceCmd, len(qs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range qs {
			if q.Service == nil {
				unions[i] = p.SMembers(ctx, s.key("subs", "term", q.App))
				continue
			}
			r := q.Service
			idx := []string{s.key("subs", "svc", "any"), s.key("subs", "svc", "id", r.ID), s.key("subs", "svc", "name", r.Name)}
			if r.CategoryID != "" {
				idx = append(idx, s.key("subs", "svc", "cat", r.CategoryID))
			}
			unions[i] = p.SUnion(ctx, idx...)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("select subscriptions", err)
	}
	ids := make([][]string, len(qs))
	subs := map[string]*redis.SliceCmd{}
	done := make([]*redis.SliceCmd, len(qs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range qs {
			ids[i] = unions[i].Val()
			if len(ids[i]) == 0 {
				continue
			}
			slices.Sort(ids[i])
			keys := make([]string, len(ids[i]))
			for j, id := range ids[i] {
				if _, ok := subs[id]; !ok {
					subs[id] = p.HMGet(ctx, s.key("sub", id), subFields...)
				}
				keys[j] = s.notifiedKey(Notified{q.EventID, id})
			}
			done[i] = p.MGet(ctx, keys...)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("load subscriptions", err)
	}
	for i, q := range qs {
		if len(ids[i]) == 0 {
			continue
		}
		marks := done[i].Val()
		for j, id := range ids[i] {
			sub, ok := subFrom(id, subs[id].Val())
			if !ok || (q.Service != nil && (sub.Type != SubServiceAvailability || !sub.Filter.Matches(*q.Service))) {
				continue
			}
			out[i].Subs = append(out[i].Subs, sub)
			out[i].Done = append(out[i].Done, j < len(marks) && marks[j] != nil)
		}
	}
	return out, nil
}

// Progress is what the notify trigger records in one round trip: the
// notifications delivered, and the events it is done with or retries.
type Progress struct {
	// Notified are done markers to set, each kept for DoneTTL, so that a
	// redelivery of the event skips the subscription.
	Notified []Notified
	// DoneTTL is how long the done markers are kept. Required with
	// Notified.
	DoneTTL time.Duration
	// Settle are events every subscription of which was served: they
	// leave the pending set (Settle).
	Settle []string
	// Touch are pending events handed back for a retry (TouchPending).
	Touch []string
}

// Record writes p in one round trip: the done markers first, then the
// settlements and touches.
func (s *Store) Record(ctx context.Context, p Progress) error {
	if len(p.Notified) == 0 && len(p.Settle) == 0 && len(p.Touch) == 0 {
		return nil
	}
	cmds, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, n := range p.Notified {
			pl.Set(ctx, s.notifiedKey(n), "1", p.DoneTTL)
		}
		if len(p.Settle) > 0 {
			m := make([]any, len(p.Settle))
			for i, id := range p.Settle {
				m[i] = id
			}
			pl.ZRem(ctx, s.pendingKey(), m...)
		}
		if len(p.Touch) > 0 {
			pl.ZAddArgs(ctx, s.pendingKey(), redis.ZAddArgs{XX: true, GT: true, Members: s.members(p.Touch)})
		}
		return nil
	})
	if err == nil {
		for _, c := range cmds {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	return wrap("record notifications", err)
}
