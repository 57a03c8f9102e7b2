package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// Claimant, when set, claims for ClaimTTL every selected subscription
	// that is neither done for the event nor claimed by another claimant,
	// in the round trip that reads the done markers (one SET NX GET per
	// pair: of two deliveries of the same event at once, one gets each
	// pair). A subscription the index selects but whose filter then
	// refuses the record is claimed too, and never called: that claim
	// just expires. Claimants must be unique per delivery attempt.
	Claimant string
	// ClaimTTL is how long a claim holds: longer than a delivery of one
	// callback may take. Required with Claimant.
	ClaimTTL time.Duration
}

// Audience is the answer to one AudienceQuery.
type Audience struct {
	// Subs are the selected subscriptions, ordered by id.
	Subs []Subscription
	// Done[i] reports whether Record marked Subs[i] done for the event.
	Done []bool
	// Busy[i] reports whether another claimant holds Subs[i] for the
	// event (a delivery of it is in flight elsewhere): it is neither done
	// nor the query's to deliver.
	Busy []bool
}

// Notified names one notification: an event to one subscription.
type Notified struct{ EventID, SubscriptionID string }

// Claim is a claimant's hold on one notification (AudienceQuery.Claimant).
type Claim struct {
	Notified
	Claimant string
}

// The value of a done-marker key: doneMark once the notification is done;
// claimMark + the claimant while a delivery holds it.
const (
	doneMark  = "1"
	claimMark = "c:"
)

func (s *Store) notifiedKey(n Notified) string {
	return s.key("done", n.EventID+"/"+n.SubscriptionID)
}

// Audiences answers many AudienceQuerys in two round trips, whatever their
// number: the selection indexes of each (never every subscription), then
// the subscriptions they name (each read once) and the done markers (with
// claims, when the query has a Claimant). The notify trigger batches the
// events it handles at once through it.
func (s *Store) Audiences(ctx context.Context, qs []AudienceQuery) ([]Audience, error) {
	out := make([]Audience, len(qs))
	if len(qs) == 0 {
		return out, nil
	}
	for _, q := range qs {
		if q.Claimant != "" && q.ClaimTTL <= 0 {
			return nil, fmt.Errorf("audiences of event %s: a claim needs a positive ClaimTTL: %w", q.EventID, ErrInvalid)
		}
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
	marks := make([][]func() (string, bool, error), len(qs)) // marks[i][j]: the marker before this call
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
			marks[i] = make([]func() (string, bool, error), len(keys))
			if q.Claimant == "" {
				all := p.MGet(ctx, keys...)
				for j := range keys {
					marks[i][j] = func() (string, bool, error) {
						v, err := all.Result()
						if err != nil || j >= len(v) || v[j] == nil {
							return "", false, err
						}
						str, _ := v[j].(string)
						return str, true, nil
					}
				}
				continue
			}
			for j, k := range keys {
				c := p.SetArgs(ctx, k, claimMark+q.Claimant, redis.SetArgs{Mode: "NX", TTL: q.ClaimTTL, Get: true})
				marks[i][j] = func() (string, bool, error) {
					v, err := c.Result()
					if errors.Is(err, redis.Nil) { // no marker: claimed now
						return "", false, nil
					}
					return v, err == nil, err
				}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) { // Nil: a SET ... GET of a pair that had no marker
		return nil, wrap("load subscriptions", err)
	}
	for i, q := range qs {
		if len(ids[i]) == 0 {
			continue
		}
		for j, id := range ids[i] {
			if err := subs[id].Err(); err != nil {
				return nil, wrap("load subscriptions", err)
			}
			sub, ok := subFrom(id, subs[id].Val())
			if !ok || (q.Service != nil && (sub.Type != SubServiceAvailability || !sub.Filter.Matches(*q.Service))) {
				continue
			}
			mark, found, err := marks[i][j]()
			if err != nil {
				return nil, wrap("load subscriptions", err)
			}
			busy := found && strings.HasPrefix(mark, claimMark)
			out[i].Subs = append(out[i].Subs, sub)
			out[i].Done = append(out[i].Done, found && !busy)
			out[i].Busy = append(out[i].Busy, busy)
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
	// Release are claims given back (callbacks that failed), so that the
	// next delivery of the event may take them at once: each is removed
	// only while its claimant still holds it.
	Release []Claim
	// Settle are events every subscription of which was served: they
	// leave the pending set (Settle).
	Settle []string
	// Touch are pending events handed back for a retry (TouchPending).
	Touch []string
}

// releaseClaimsScript deletes each key KEYS[i] whose value is still the
// claim ARGV[i].
var releaseClaimsScript = redis.NewScript(`
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i] then redis.call('DEL', k) end
end
return 0
`)

// Record writes p in one round trip: the done markers first (a claim
// becomes a done marker), the releases, then the settlements and touches.
func (s *Store) Record(ctx context.Context, p Progress) error {
	if len(p.Notified) == 0 && len(p.Release) == 0 && len(p.Settle) == 0 && len(p.Touch) == 0 {
		return nil
	}
	cmds, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, n := range p.Notified {
			pl.Set(ctx, s.notifiedKey(n), doneMark, p.DoneTTL)
		}
		if len(p.Release) > 0 {
			keys, marks := make([]string, len(p.Release)), make([]any, len(p.Release))
			for i, c := range p.Release {
				keys[i], marks[i] = s.notifiedKey(c.Notified), claimMark+c.Claimant
			}
			// EVAL, not EVALSHA: releases are rare (failed callbacks), and
			// a NOSCRIPT would fail the whole pipeline.
			releaseClaimsScript.Eval(ctx, pl, keys, marks...)
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
