package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Service change types, as MEC 011 names them (ServiceAvailabilityNotification.ChangeType).
const (
	ChangeAdded             = "ADDED"
	ChangeRemoved           = "REMOVED"
	ChangeStateChanged      = "STATE_CHANGED"
	ChangeAttributesChanged = "ATTRIBUTES_CHANGED"
)

// Service states (MEC 011 v3 ServiceState).
const (
	StateActive    = "ACTIVE"
	StateInactive  = "INACTIVE"
	StateSuspended = "SUSPENDED"
)

// AnyApp, as the app argument of DeleteService, lets the platform itself
// remove a service of any app instance.
const AnyApp = "*"

// ServiceRecord is a registered MEC service as the store keeps it.
type ServiceRecord struct {
	// ID is the serInstanceId.
	ID string
	// AppInstanceID is the owner.
	AppInstanceID string
	// Name is serName; CategoryID is serCategory.id ("" when absent).
	Name, CategoryID string
	// State is ACTIVE, INACTIVE or SUSPENDED.
	State string
	// LivenessInterval in seconds; 0 means no heartbeats are expected.
	LivenessInterval int
	// Rev increases by one with every change; it is the ETag.
	Rev int64
	// LastHeartbeat is the registration time or the last heartbeat.
	LastHeartbeat time.Time
	// Info is the ServiceInfo JSON object as served, without its "state"
	// member (State is authoritative and is spliced in when rendering).
	Info []byte
}

// The liveness grace, defined once for Go (Grace) and Lua (livenessLua):
// gracePercent of the interval, rounded up to the millisecond, at most
// graceMax.
const (
	gracePercent = 5
	graceMax     = 5 * time.Second
)

// Grace is the time after a missed heartbeat deadline before the service
// counts as expired: min(ceil(5% of the interval), 5 s).
func Grace(interval time.Duration) time.Duration {
	g := time.Duration((interval.Milliseconds()*gracePercent+99)/100) * time.Millisecond
	return min(g, graceMax)
}

// DeadlineAfter is the liveness deadline of a service with the interval
// whose last heartbeat was at hb: hb + interval + Grace(interval). The
// service scripts compute the same with kmep_deadline (livenessLua).
func DeadlineAfter(hb time.Time, interval time.Duration) time.Time {
	return hb.Add(interval + Grace(interval))
}

// livenessLua defines kmep_deadline(now, live) for the scripts that set a
// liveness deadline: DeadlineAfter in milliseconds, for now in ms and the
// interval live in seconds.
var livenessLua = `
local function kmep_deadline(now, live)
  local iv = tonumber(live) * 1000
  return tonumber(now) + iv + math.min(math.floor((iv * ` + strconv.Itoa(gracePercent) + ` + 99) / 100), ` +
	strconv.FormatInt(graceMax.Milliseconds(), 10) + `)
end
`

// The service scripts. Keys are built from the prefix in ARGV[1]; every
// state change and its stream entry happen in one script, atomically.
var createServiceScript = redis.NewScript(changeLua + livenessLua + `
local p, id, app, name, cat, state, live, info, now, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local k = p .. ':svc:' .. id
if redis.call('EXISTS', k) == 1 then return redis.error_reply('KMEP_CONFLICT service ' .. id .. ' exists') end
redis.call('HSET', k, 'app', app, 'name', name, 'cat', cat, 'state', state, 'rev', 1, 'live', live, 'info', info, 'hb', now)
redis.call('SADD', p .. ':idx:app:' .. app, id)
redis.call('SADD', p .. ':idx:name:' .. name, id)
if cat ~= '' then redis.call('SADD', p .. ':idx:cat:' .. cat, id) end
redis.call('SADD', p .. ':idx:all', id)
local l = tonumber(live)
if l > 0 then redis.call('ZADD', p .. ':liveness', kmep_deadline(now, l), id) end
return kmep_service_change(p .. ':events', maxlen, 'ADDED', id,
  {app = app, name = name, cat = cat, state = state, rev = '1', live = live, info = info, hb = now}, nil, tp)
`)

var updateServiceScript = redis.NewScript(changeLua + livenessLua + `
local p, id, app, name, cat, state, live, info, ifrev, now, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local k = p .. ':svc:' .. id
local cur = kmep_record(k)
if not cur then return redis.error_reply('KMEP_NOTFOUND service ' .. id) end
if cur.app ~= app then return redis.error_reply('KMEP_FORBIDDEN service ' .. id) end
if ifrev ~= '' and ifrev ~= cur.rev then return redis.error_reply('KMEP_STALE service ' .. id) end
if cur.name == name and cur.cat == cat and cur.state == state and cur.live == live and cur.info == info then
  return {cur.rev, '', '', cur.hb}
end
local rev = tostring(tonumber(cur.rev) + 1)
if cur.name ~= name then
  redis.call('SREM', p .. ':idx:name:' .. cur.name, id)
  redis.call('SADD', p .. ':idx:name:' .. name, id)
end
if cur.cat ~= cat then
  if cur.cat ~= '' then redis.call('SREM', p .. ':idx:cat:' .. cur.cat, id) end
  if cat ~= '' then redis.call('SADD', p .. ':idx:cat:' .. cat, id) end
end
local l = tonumber(live)
local hb = cur.hb
if l > 0 then
  -- a new interval, or a deadline the reaper dropped (the service was
  -- INACTIVE): start the liveness clock again from now
  if cur.live ~= live or not redis.call('ZSCORE', p .. ':liveness', id) then
    hb = now
    redis.call('ZADD', p .. ':liveness', kmep_deadline(now, l), id)
  end
else
  redis.call('ZREM', p .. ':liveness', id)
end
redis.call('HSET', k, 'name', name, 'cat', cat, 'state', state, 'rev', rev, 'live', live, 'info', info, 'hb', hb)
local change = 'ATTRIBUTES_CHANGED'
if cur.state ~= state then change = 'STATE_CHANGED' end
local sid = kmep_service_change(p .. ':events', maxlen, change, id,
  {app = app, name = name, cat = cat, state = state, rev = rev, live = live, info = info, hb = hb}, nil, tp)
return {rev, sid, change, hb}
`)

var deleteServiceScript = redis.NewScript(changeLua + `
local p, id, app, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local k = p .. ':svc:' .. id
local r = kmep_record(k)
if not r then return redis.error_reply('KMEP_NOTFOUND service ' .. id) end
if app ~= '*' and r.app ~= app then return redis.error_reply('KMEP_FORBIDDEN service ' .. id) end
redis.call('SREM', p .. ':idx:app:' .. r.app, id)
redis.call('SREM', p .. ':idx:name:' .. r.name, id)
if r.cat ~= '' then redis.call('SREM', p .. ':idx:cat:' .. r.cat, id) end
redis.call('SREM', p .. ':idx:all', id)
redis.call('ZREM', p .. ':liveness', id)
redis.call('DEL', k)
r.rev = tostring(tonumber(r.rev) + 1)
return kmep_service_change(p .. ':events', maxlen, 'REMOVED', id, r, nil, tp)
`)

var heartbeatScript = redis.NewScript(changeLua + livenessLua + `
local p, id, app, now, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local k = p .. ':svc:' .. id
local cur = redis.call('HMGET', k, 'app', 'state', 'live', 'rev')
if not cur[1] then return redis.error_reply('KMEP_NOTFOUND service ' .. id) end
if cur[1] ~= app then return redis.error_reply('KMEP_FORBIDDEN service ' .. id) end
local l = tonumber(cur[3])
if l <= 0 then return redis.error_reply('KMEP_INVALID service ' .. id .. ' has no liveness') end
redis.call('ZADD', p .. ':liveness', kmep_deadline(now, l), id)
if cur[2] ~= 'SUSPENDED' then
  redis.call('HSET', k, 'hb', now)
  return {cur[3], cur[4], '', cur[2]}
end
local rev = tostring(tonumber(cur[4]) + 1)
redis.call('HSET', k, 'hb', now, 'state', 'ACTIVE', 'rev', rev)
local sid = kmep_service_change(p .. ':events', maxlen, 'STATE_CHANGED', id, kmep_record(k), nil, tp)
return {cur[3], rev, sid, 'ACTIVE'}
`)

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// CreateService stores a new service record (Rev 1) and appends ADDED to the
// change stream. It returns the stored record and the stream entry id.
// ErrConflict when rec.ID exists.
func (s *Store) CreateService(ctx context.Context, rec ServiceRecord) (ServiceRecord, string, error) {
	now := s.now()
	sid, err := createServiceScript.Run(ctx, s.rdb, nil,
		s.prefix, rec.ID, rec.AppInstanceID, rec.Name, rec.CategoryID, rec.State,
		rec.LivenessInterval, rec.Info, ms(now), s.maxLen, traceArg(ctx)).Text()
	if err != nil {
		return ServiceRecord{}, "", wrap("create service "+rec.ID, err)
	}
	rec.Rev = 1
	rec.LastHeartbeat = time.UnixMilli(now.UnixMilli())
	return rec, sid, nil
}

// UpdateService replaces the record of rec.ID on behalf of rec.AppInstanceID.
// ifRev > 0 makes it conditional (ErrPrecondition when stale). A change of
// state appends STATE_CHANGED, any other change ATTRIBUTES_CHANGED; an update
// that changes nothing appends nothing and keeps Rev (stream id "").
// ErrNotFound, ErrForbidden (another app's service).
func (s *Store) UpdateService(ctx context.Context, rec ServiceRecord, ifRev int64) (ServiceRecord, string, error) {
	cond := ""
	if ifRev > 0 {
		cond = strconv.FormatInt(ifRev, 10)
	}
	res, err := updateServiceScript.Run(ctx, s.rdb, nil,
		s.prefix, rec.ID, rec.AppInstanceID, rec.Name, rec.CategoryID, rec.State,
		rec.LivenessInterval, rec.Info, cond, ms(s.now()), s.maxLen, traceArg(ctx)).StringSlice()
	if err != nil {
		return ServiceRecord{}, "", wrap("update service "+rec.ID, err)
	}
	rec.Rev, _ = strconv.ParseInt(res[0], 10, 64)
	rec.LastHeartbeat = msTime(res[3])
	return rec, res[1], nil
}

// DeleteService removes a service of app (AnyApp for the platform) and
// appends REMOVED. ErrNotFound, ErrForbidden.
func (s *Store) DeleteService(ctx context.Context, app, id string) (string, error) {
	sid, err := deleteServiceScript.Run(ctx, s.rdb, nil, s.prefix, id, app, s.maxLen, traceArg(ctx)).Text()
	if err != nil {
		return "", wrap("delete service "+id, err)
	}
	return sid, nil
}

// Liveness is the outcome of a heartbeat.
type Liveness struct {
	// Interval is the liveness interval in force, in seconds.
	Interval int
	// State after the heartbeat.
	State string
	// Rev after the heartbeat.
	Rev int64
	// StreamID is the STATE_CHANGED entry when a SUSPENDED service came
	// back to ACTIVE, else "".
	StreamID string
}

// Heartbeat records a heartbeat of service id of app at the store's clock:
// it moves the liveness deadline to now + interval + Grace(interval), and a
// SUSPENDED service becomes ACTIVE again (STATE_CHANGED). Plain heartbeats do
// not append to the change stream: they change no state a consumer sees.
// ErrNotFound, ErrForbidden, ErrInvalid (no liveness for this service).
func (s *Store) Heartbeat(ctx context.Context, app, id string) (Liveness, error) {
	res, err := heartbeatScript.Run(ctx, s.rdb, nil, s.prefix, id, app, ms(s.now()), s.maxLen, traceArg(ctx)).StringSlice()
	if err != nil {
		return Liveness{}, wrap("heartbeat "+id, err)
	}
	l := Liveness{StreamID: res[2], State: res[3]}
	l.Interval, _ = strconv.Atoi(res[0])
	l.Rev, _ = strconv.ParseInt(res[1], 10, 64)
	return l, nil
}

// LivenessDeadline returns the current deadline of service id (for tests and
// the reaper's diagnostics). ErrNotFound when it has none.
func (s *Store) LivenessDeadline(ctx context.Context, id string) (time.Time, error) {
	v, err := s.rdb.ZScore(ctx, s.key("liveness"), id).Result()
	if err != nil {
		return time.Time{}, wrap("liveness deadline "+id, err)
	}
	return time.UnixMilli(int64(v)), nil
}

var recordFields = []string{"app", "name", "cat", "state", "rev", "live", "info", "hb"}

func recordFrom(id string, v []any) (ServiceRecord, bool) {
	if len(v) != len(recordFields) || v[0] == nil {
		return ServiceRecord{}, false
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	r := ServiceRecord{ID: id, AppInstanceID: str(0), Name: str(1), CategoryID: str(2), State: str(3), Info: []byte(str(6))}
	r.Rev, _ = strconv.ParseInt(str(4), 10, 64)
	r.LivenessInterval, _ = strconv.Atoi(str(5))
	r.LastHeartbeat = msTime(str(7))
	return r, true
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// GetService returns one service. ErrNotFound.
func (s *Store) GetService(ctx context.Context, id string) (ServiceRecord, error) {
	v, err := s.rdb.HMGet(ctx, s.key("svc", id), recordFields...).Result()
	if err != nil {
		return ServiceRecord{}, wrap("get service "+id, err)
	}
	r, ok := recordFrom(id, v)
	if !ok {
		return ServiceRecord{}, fmt.Errorf("get service %s: %w", id, ErrNotFound)
	}
	return r, nil
}

// ServicesByApp lists the services of one app instance.
func (s *Store) ServicesByApp(ctx context.Context, app string) ([]ServiceRecord, error) {
	return s.fromIndexes(ctx, s.key("idx", "app", app))
}

// ServicesByName lists the services with any of the names.
func (s *Store) ServicesByName(ctx context.Context, names ...string) ([]ServiceRecord, error) {
	return s.fromIndexes(ctx, s.keys("name", names)...)
}

// ServicesByCategory lists the services with any of the category ids.
func (s *Store) ServicesByCategory(ctx context.Context, cats ...string) ([]ServiceRecord, error) {
	return s.fromIndexes(ctx, s.keys("cat", cats)...)
}

// ServicesByID returns the services among ids that exist (missing ones are skipped).
func (s *Store) ServicesByID(ctx context.Context, ids ...string) ([]ServiceRecord, error) {
	return s.load(ctx, ids)
}

// AllServices lists every service.
func (s *Store) AllServices(ctx context.Context) ([]ServiceRecord, error) {
	return s.fromIndexes(ctx, s.key("idx", "all"))
}

func (s *Store) keys(kind string, vals []string) []string {
	ks := make([]string, len(vals))
	for i, v := range vals {
		ks[i] = s.key("idx", kind, v)
	}
	return ks
}

func (s *Store) fromIndexes(ctx context.Context, idx ...string) ([]ServiceRecord, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	ids, err := s.rdb.SUnion(ctx, idx...).Result()
	if err != nil {
		return nil, wrap("list services", err)
	}
	return s.load(ctx, ids)
}

func (s *Store) load(ctx context.Context, ids []string) ([]ServiceRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.key("svc", id), recordFields...)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("load services", err)
	}
	out := make([]ServiceRecord, 0, len(ids))
	for i, c := range cmds {
		if r, ok := recordFrom(ids[i], c.Val()); ok {
			out = append(out, r)
		}
	}
	return out, nil
}
