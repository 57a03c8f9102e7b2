package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Change kinds: what kind of record a change-stream entry is about.
const (
	KindService      = "service"
	KindAppConf      = "appconf"
	KindSubscription = "subscription"
	KindTrafficRule  = "trafficrule"
	KindDNSRule      = "dnsrule"
	KindAppD         = "appd"
	KindRegistration = "registration"
	KindApp          = "app"
)

// Change types of the records other than services.
const (
	ChangeConfPut     = "PUT"
	ChangeConfDeleted = "DELETED"
	ChangeCreated     = "CREATED"
	ChangeUpdated     = "UPDATED"
	ChangeDeleted     = "DELETED"
	// App instance lifecycle (KindApp).
	ChangeTerminating = "TERMINATING"
	ChangeConfirmed   = "TERMINATION_CONFIRMED"
	ChangeTerminated  = "TERMINATED"
	ChangeReady       = "READY"
)

// Change is one entry of the change stream.
type Change struct {
	// StreamID orders changes; pass the last one seen to ReadChanges.
	StreamID string
	// Kind is KindService or KindAppConf.
	Kind string
	// Type is ADDED, REMOVED, STATE_CHANGED, ATTRIBUTES_CHANGED (services)
	// or PUT, DELETED (app configurations).
	Type string
	// AppInstanceID the change belongs to.
	AppInstanceID string
	// Service is the record after the change (for REMOVED: as it was, with
	// the Rev of the removal) when Kind is KindService.
	Service ServiceRecord
	// ID is the record's id for the other kinds (subscription, rule id).
	ID string
	// State is a rule's state after the change (ACTIVE, INACTIVE).
	State string
	// Data is the record's JSON after the change (for DELETED: as it was)
	// for the other kinds, or the lifecycle details for KindApp.
	Data []byte
	// Rev is the record's revision after the change (other kinds).
	Rev int64
}

func changeFrom(m redis.XMessage) Change {
	f := func(k string) string { s, _ := m.Values[k].(string); return s }
	c := Change{StreamID: m.ID, Kind: f("kind"), Type: f("change"), AppInstanceID: f("app")}
	if c.Kind == KindService {
		c.Service = ServiceRecord{ID: f("id"), AppInstanceID: c.AppInstanceID, Name: f("name"),
			CategoryID: f("cat"), State: f("state"), Info: []byte(f("info"))}
		c.Service.Rev, _ = strconv.ParseInt(f("rev"), 10, 64)
		c.Service.LivenessInterval, _ = strconv.Atoi(f("live"))
		c.Service.LastHeartbeat = msTime(f("hb"))
		return c
	}
	c.ID, c.State, c.Data = f("id"), f("state"), []byte(f("data"))
	c.Rev, _ = strconv.ParseInt(f("rev"), 10, 64)
	return c
}

// ReadChanges returns up to count changes after stream id after ("0" for
// the beginning, or a LastChangeID). With block > 0 it waits up to block for
// the first one and returns an empty slice when none came.
func (s *Store) ReadChanges(ctx context.Context, after string, count int64, block time.Duration) ([]Change, error) {
	if block <= 0 {
		msgs, err := s.rdb.XRangeN(ctx, s.streamKey(), "("+after, "+", count).Result()
		if err != nil {
			return nil, wrap("read changes", err)
		}
		return changes(msgs), nil
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.streamKey(), after}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("read changes", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return changes(res[0].Messages), nil
}

func changes(msgs []redis.XMessage) []Change {
	out := make([]Change, len(msgs))
	for i, m := range msgs {
		out[i] = changeFrom(m)
	}
	return out
}

// LastChangeID is the id of the newest change-stream entry ("0-0" when the
// stream is empty). Reading changes after it yields only what came later.
func (s *Store) LastChangeID(ctx context.Context) (string, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.streamKey(), "+", "-", 1).Result()
	if err != nil {
		return "", wrap("last change id", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// CompareStreamIDs orders two stream ids ("ms-seq"): -1, 0 or 1.
func CompareStreamIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	switch {
	case am < bm:
		return -1
	case am > bm:
		return 1
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (uint64, uint64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			m, _ := strconv.ParseUint(id[:i], 10, 64)
			s, _ := strconv.ParseUint(id[i+1:], 10, 64)
			return m, s
		}
	}
	m, _ := strconv.ParseUint(id, 10, 64)
	return m, 0
}
