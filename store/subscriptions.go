package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Subscription types (MEC 011 subscriptionType).
const (
	SubServiceAvailability = "SerAvailabilityNotificationSubscription"
	SubAppTermination      = "AppTerminationNotificationSubscription"
)

// Subscription is a notification subscription of an app instance.
type Subscription struct {
	ID            string
	AppInstanceID string
	// Type is SubServiceAvailability or SubAppTermination.
	Type string
	// CallbackReference is where notifications are POSTed.
	CallbackReference string
	// Filter selects services (SubServiceAvailability only).
	Filter ServiceFilter
	// Body is the subscription JSON as served (with its _links).
	Body []byte
	Rev  int64
}

// ServiceFilter is SerAvailabilityNotificationSubscription.filteringCriteria
// reduced to what selection needs. At most one of SerInstanceIDs, SerNames
// and SerCategoryIDs is non-empty; empty States and nil IsLocal match all.
type ServiceFilter struct {
	SerInstanceIDs []string `json:"ids,omitempty"`
	SerNames       []string `json:"names,omitempty"`
	SerCategoryIDs []string `json:"cats,omitempty"`
	States         []string `json:"states,omitempty"`
	IsLocal        *bool    `json:"isLocal,omitempty"`
}

// Matches reports whether a service change passes the filter. Every service
// on this platform is local to its consumers.
func (f ServiceFilter) Matches(r ServiceRecord) bool {
	switch {
	case len(f.SerInstanceIDs) > 0 && !slices.Contains(f.SerInstanceIDs, r.ID):
		return false
	case len(f.SerNames) > 0 && !slices.Contains(f.SerNames, r.Name):
		return false
	case len(f.SerCategoryIDs) > 0 && !slices.Contains(f.SerCategoryIDs, r.CategoryID):
		return false
	case len(f.States) > 0 && !slices.Contains(f.States, r.State):
		return false
	case f.IsLocal != nil && !*f.IsLocal:
		return false
	}
	return true
}

// subIndexes are the sets a subscription is a member of: its app's list,
// and the selection index that finds it for a service change (or its app's
// termination subscriptions).
func (s *Store) subIndexes(sub Subscription) []string {
	idx := []string{s.key("subs", "app", sub.AppInstanceID)}
	if sub.Type == SubAppTermination {
		return append(idx, s.key("subs", "term", sub.AppInstanceID))
	}
	f := sub.Filter
	switch {
	case len(f.SerInstanceIDs) > 0:
		for _, v := range f.SerInstanceIDs {
			idx = append(idx, s.key("subs", "svc", "id", v))
		}
	case len(f.SerNames) > 0:
		for _, v := range f.SerNames {
			idx = append(idx, s.key("subs", "svc", "name", v))
		}
	case len(f.SerCategoryIDs) > 0:
		for _, v := range f.SerCategoryIDs {
			idx = append(idx, s.key("subs", "svc", "cat", v))
		}
	default:
		idx = append(idx, s.key("subs", "svc", "any"))
	}
	return idx
}

var createSubScript = redis.NewScript(changeLua + `
local p, id, app, typ, cb, filter, body, idx, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local k = p .. ':sub:' .. id
if redis.call('EXISTS', k) == 1 then return redis.error_reply('KMEP_CONFLICT subscription exists') end
redis.call('HSET', k, 'app', app, 'type', typ, 'cb', cb, 'filter', filter, 'body', body, 'rev', 1, 'idx', idx)
for _, ix in ipairs(cjson.decode(idx)) do redis.call('SADD', ix, id) end
return kmep_change(p .. ':events', maxlen, {kind = 'subscription', change = 'CREATED', app = app, id = id, rev = '1', data = body, tp = tp})
`)

var deleteSubScript = redis.NewScript(changeLua + `
local p, id, app, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local k = p .. ':sub:' .. id
local cur = redis.call('HMGET', k, 'app', 'idx', 'body', 'rev')
if not cur[1] then return redis.error_reply('KMEP_NOTFOUND subscription ' .. id) end
if app ~= '*' and cur[1] ~= app then return redis.error_reply('KMEP_FORBIDDEN subscription ' .. id) end
for _, ix in ipairs(cjson.decode(cur[2])) do redis.call('SREM', ix, id) end
redis.call('DEL', k)
return kmep_change(p .. ':events', maxlen, {kind = 'subscription', change = 'DELETED', app = cur[1], id = id,
  rev = tostring(tonumber(cur[4]) + 1), data = cur[3], tp = tp})
`)

// CreateSubscription stores a subscription and its selection indexes.
// ErrConflict when the id exists.
func (s *Store) CreateSubscription(ctx context.Context, sub Subscription) (Subscription, string, error) {
	filter, _ := json.Marshal(sub.Filter)
	idx, _ := json.Marshal(s.subIndexes(sub))
	sid, err := createSubScript.Run(ctx, s.rdb, nil, s.prefix, sub.ID, sub.AppInstanceID, sub.Type,
		sub.CallbackReference, filter, sub.Body, idx, s.maxLen, traceArg(ctx)).Text()
	if err != nil {
		return Subscription{}, "", wrap("create subscription "+sub.ID, err)
	}
	sub.Rev = 1
	return sub, sid, nil
}

// DeleteSubscription removes a subscription of app (AnyApp: the platform's).
// ErrNotFound, ErrForbidden.
func (s *Store) DeleteSubscription(ctx context.Context, app, id string) (string, error) {
	sid, err := deleteSubScript.Run(ctx, s.rdb, nil, s.prefix, id, app, s.maxLen, traceArg(ctx)).Text()
	return sid, wrap("delete subscription "+id, err)
}

var subFields = []string{"app", "type", "cb", "filter", "body", "rev"}

func subFrom(id string, v []any) (Subscription, bool) {
	if len(v) != len(subFields) || v[0] == nil {
		return Subscription{}, false
	}
	sub := Subscription{ID: id, AppInstanceID: str(v[0]), Type: str(v[1]), CallbackReference: str(v[2]), Body: []byte(str(v[4]))}
	_ = json.Unmarshal([]byte(str(v[3])), &sub.Filter)
	sub.Rev, _ = strconv.ParseInt(str(v[5]), 10, 64)
	return sub, true
}

// GetSubscription returns one subscription. ErrNotFound.
func (s *Store) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	v, err := s.rdb.HMGet(ctx, s.key("sub", id), subFields...).Result()
	if err != nil {
		return Subscription{}, wrap("get subscription "+id, err)
	}
	sub, ok := subFrom(id, v)
	if !ok {
		return Subscription{}, fmt.Errorf("get subscription %s: %w", id, ErrNotFound)
	}
	return sub, nil
}

// ListSubscriptions lists an app instance's subscriptions of one type
// ("" for all types), ordered by id.
func (s *Store) ListSubscriptions(ctx context.Context, app, typ string) ([]Subscription, error) {
	subs, err := s.subsFromIndexes(ctx, s.key("subs", "app", app))
	if err != nil || typ == "" {
		return subs, err
	}
	out := subs[:0]
	for _, sub := range subs {
		if sub.Type == typ {
			out = append(out, sub)
		}
	}
	return out, nil
}

// MatchServiceSubscriptions returns the service-availability subscriptions
// a change of r must be notified to. It reads only the selection indexes
// that can match r (no filter, r's id, r's name, r's category) and the
// subscriptions in them, never every subscription.
func (s *Store) MatchServiceSubscriptions(ctx context.Context, r ServiceRecord) ([]Subscription, error) {
	idx := []string{s.key("subs", "svc", "any"), s.key("subs", "svc", "id", r.ID), s.key("subs", "svc", "name", r.Name)}
	if r.CategoryID != "" {
		idx = append(idx, s.key("subs", "svc", "cat", r.CategoryID))
	}
	subs, err := s.subsFromIndexes(ctx, idx...)
	if err != nil {
		return nil, err
	}
	out := subs[:0]
	for _, sub := range subs {
		if sub.Type == SubServiceAvailability && sub.Filter.Matches(r) {
			out = append(out, sub)
		}
	}
	return out, nil
}

// TerminationSubscriptions returns an app instance's AppTermination
// subscriptions.
func (s *Store) TerminationSubscriptions(ctx context.Context, app string) ([]Subscription, error) {
	return s.subsFromIndexes(ctx, s.key("subs", "term", app))
}

func (s *Store) subsFromIndexes(ctx context.Context, idx ...string) ([]Subscription, error) {
	ids, err := s.rdb.SUnion(ctx, idx...).Result()
	if err != nil {
		return nil, wrap("list subscriptions", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.key("sub", id), subFields...)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("load subscriptions", err)
	}
	out := make([]Subscription, 0, len(ids))
	for i, c := range cmds {
		if sub, ok := subFrom(ids[i], c.Val()); ok {
			out = append(out, sub)
		}
	}
	return out, nil
}
