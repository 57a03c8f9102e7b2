package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registration is an app instance's AppInfo (MEC 011 v3 /registrations).
type Registration struct {
	AppInstanceID string
	// Body is the AppInfo JSON as served.
	Body []byte
	Rev  int64
}

var putRegScript = redis.NewScript(changeLua + `
local p, app, body, mode, ifrev, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local k = p .. ':reg:' .. app
local cur = redis.call('HMGET', k, 'body', 'rev')
if mode == 'create' and cur[2] then return redis.error_reply('KMEP_CONFLICT registration exists') end
if mode == 'replace' and not cur[2] then return redis.error_reply('KMEP_NOTFOUND registration of ' .. app) end
if ifrev ~= '' and ifrev ~= cur[2] then return redis.error_reply('KMEP_STALE registration') end
local rev = tostring(tonumber(cur[2] or '0') + 1)
redis.call('HSET', k, 'body', body, 'rev', rev)
kmep_change(p .. ':events', maxlen, {kind = 'registration', change = mode == 'create' and 'CREATED' or 'UPDATED',
  app = app, id = app, rev = rev, data = body, tp = tp})
return rev
`)

func (s *Store) putRegistration(ctx context.Context, r Registration, mode string, ifRev int64) (Registration, error) {
	cond := ""
	if ifRev > 0 {
		cond = strconv.FormatInt(ifRev, 10)
	}
	rev, err := putRegScript.Run(ctx, s.rdb, nil, s.prefix, r.AppInstanceID, r.Body, mode, cond, s.maxLen,
		traceArg(ctx)).Int64()
	if err != nil {
		return Registration{}, wrap(mode+" registration "+r.AppInstanceID, err)
	}
	r.Rev = rev
	return r, nil
}

// CreateRegistration stores an app instance's AppInfo. ErrConflict.
func (s *Store) CreateRegistration(ctx context.Context, r Registration) (Registration, error) {
	return s.putRegistration(ctx, r, "create", 0)
}

// UpdateRegistration replaces it (ifRev > 0: conditional). ErrNotFound, ErrPrecondition.
func (s *Store) UpdateRegistration(ctx context.Context, r Registration, ifRev int64) (Registration, error) {
	return s.putRegistration(ctx, r, "replace", ifRev)
}

// GetRegistration returns an app instance's AppInfo. ErrNotFound.
func (s *Store) GetRegistration(ctx context.Context, app string) (Registration, error) {
	v, err := s.rdb.HMGet(ctx, s.key("reg", app), "body", "rev").Result()
	if err != nil {
		return Registration{}, wrap("get registration "+app, err)
	}
	if v[1] == nil {
		return Registration{}, fmt.Errorf("get registration %s: %w", app, ErrNotFound)
	}
	r := Registration{AppInstanceID: app, Body: []byte(str(v[0]))}
	r.Rev, _ = strconv.ParseInt(str(v[1]), 10, 64)
	return r, nil
}

var deleteRegScript = redis.NewScript(changeLua + `
local p, app, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p .. ':reg:' .. app
local cur = redis.call('HMGET', k, 'body', 'rev')
if not cur[2] then return redis.error_reply('KMEP_NOTFOUND registration of ' .. app) end
redis.call('DEL', k)
return kmep_change(p .. ':events', maxlen, {kind = 'registration', change = 'DELETED', app = app, id = app,
  rev = tostring(tonumber(cur[2]) + 1), data = cur[1], tp = tp})
`)

// DeleteRegistration removes an app instance's AppInfo. ErrNotFound.
func (s *Store) DeleteRegistration(ctx context.Context, app string) error {
	_, err := deleteRegScript.Run(ctx, s.rdb, nil, s.prefix, app, s.maxLen, traceArg(ctx)).Result()
	return wrap("delete registration "+app, err)
}

// Termination is the state of an app instance's termination.
type Termination struct {
	AppInstanceID string
	// Confirmed is true once the app called confirm_termination.
	Confirmed bool
	// Deadline is when the platform stops waiting for the confirmation.
	Deadline time.Time
	// MaxGracefulTimeout is the graceful period announced, in seconds.
	MaxGracefulTimeout int
}

var startTermScript = redis.NewScript(changeLua + `
local p, app, deadline, timeout, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local k = p .. ':term:' .. app
local cur = redis.call('HMGET', k, 'deadline', 'timeout', 'confirmed')
if cur[1] then return {cur[1], cur[2], cur[3], ''} end
redis.call('HSET', k, 'deadline', deadline, 'timeout', timeout, 'confirmed', '0')
local sid = kmep_change(p .. ':events', maxlen, {kind = 'app', change = 'TERMINATING', app = app, id = app,
  data = '{"maxGracefulTimeout":' .. timeout .. '}', tp = tp})
return {deadline, timeout, '0', sid}
`)

func termFrom(app string, v []string) Termination {
	t := Termination{AppInstanceID: app, Deadline: msTime(v[0]), Confirmed: v[2] == "1"}
	t.MaxGracefulTimeout, _ = strconv.Atoi(v[1])
	return t
}

// StartTermination begins an app instance's termination: it records the
// deadline and appends TERMINATING (the notify trigger sends the
// AppTerminationNotification). Starting again while one is in progress
// returns the one in progress and appends nothing (stream id "").
func (s *Store) StartTermination(ctx context.Context, app string, graceful time.Duration) (Termination, string, error) {
	secs := int((graceful + time.Second - 1) / time.Second)
	res, err := startTermScript.Run(ctx, s.rdb, nil, s.prefix, app, ms(s.now().Add(graceful)), secs, s.maxLen,
		traceArg(ctx)).StringSlice()
	if err != nil {
		return Termination{}, "", wrap("start termination "+app, err)
	}
	return termFrom(app, res), res[3], nil
}

var confirmTermScript = redis.NewScript(changeLua + `
local p, app, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p .. ':term:' .. app
if redis.call('EXISTS', k) == 0 then return redis.error_reply('KMEP_CONFLICT no termination in progress') end
if redis.call('HGET', k, 'confirmed') == '1' then return '' end
redis.call('HSET', k, 'confirmed', '1')
return kmep_change(p .. ':events', maxlen, {kind = 'app', change = 'TERMINATION_CONFIRMED', app = app, id = app, tp = tp})
`)

// ConfirmTermination records the app's confirm_termination. ErrConflict
// when no termination is in progress. It returns the stream id of the
// confirmation ("" when it was already confirmed).
func (s *Store) ConfirmTermination(ctx context.Context, app string) (string, error) {
	sid, err := confirmTermScript.Run(ctx, s.rdb, nil, s.prefix, app, s.maxLen, traceArg(ctx)).Text()
	return sid, wrap("confirm termination "+app, err)
}

// GetTermination returns the termination in progress. ErrNotFound when none.
func (s *Store) GetTermination(ctx context.Context, app string) (Termination, error) {
	v, err := s.rdb.HMGet(ctx, s.key("term", app), "deadline", "timeout", "confirmed").Result()
	if err != nil {
		return Termination{}, wrap("get termination "+app, err)
	}
	if v[0] == nil {
		return Termination{}, fmt.Errorf("get termination %s: %w", app, ErrNotFound)
	}
	return termFrom(app, []string{str(v[0]), str(v[1]), str(v[2])}), nil
}

var confirmReadyScript = redis.NewScript(changeLua + `
local p, app, now, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('SET', p .. ':ready:' .. app, now)
return kmep_change(p .. ':events', maxlen, {kind = 'app', change = 'READY', app = app, id = app, tp = tp})
`)

// ConfirmReady records the app's confirm_ready and appends READY.
func (s *Store) ConfirmReady(ctx context.Context, app string) (string, error) {
	sid, err := confirmReadyScript.Run(ctx, s.rdb, nil, s.prefix, app, ms(s.now()), s.maxLen, traceArg(ctx)).Text()
	if err != nil {
		return "", wrap("confirm ready "+app, err)
	}
	return sid, nil
}

// ReadyAt is when the app last confirmed ready. ErrNotFound when never.
func (s *Store) ReadyAt(ctx context.Context, app string) (time.Time, error) {
	v, err := s.rdb.Get(ctx, s.key("ready", app)).Result()
	if err != nil {
		return time.Time{}, wrap("ready "+app, err)
	}
	return msTime(v), nil
}

// purgeScript removes everything an app instance has, in one atomic step:
// its services (each REMOVED, as a delete would, but in the bulk lane: an
// app may have many, and they go together), subscriptions, rules and
// rule configuration, registration, readiness, credentials and termination
// state; revokes its tokens (see revokeLua); then appends TERMINATED.
var purgeScript = redis.NewScript(changeLua + revokeLua + `
local p, app, maxlen = ARGV[1], ARGV[2], ARGV[3]
local stream = p .. ':events'
local function ev(e) return kmep_change(stream, maxlen, e) end
for _, id in ipairs(redis.call('SMEMBERS', p .. ':idx:app:' .. app)) do
  local k = p .. ':svc:' .. id
  local r = kmep_record(k)
  if r then
    redis.call('SREM', p .. ':idx:name:' .. r.name, id)
    if r.cat ~= '' then redis.call('SREM', p .. ':idx:cat:' .. r.cat, id) end
    redis.call('SREM', p .. ':idx:all', id)
    redis.call('ZREM', p .. ':liveness', id)
    redis.call('DEL', k)
    r.app, r.rev = app, tostring(tonumber(r.rev) + 1)
    kmep_service_change(stream, maxlen, 'REMOVED', id, r, kmep_bulk)
  end
end
redis.call('DEL', p .. ':idx:app:' .. app)
for _, id in ipairs(redis.call('SMEMBERS', p .. ':subs:app:' .. app)) do
  local k = p .. ':sub:' .. id
  local cur = redis.call('HMGET', k, 'idx', 'body', 'rev')
  if cur[1] then
    for _, ix in ipairs(cjson.decode(cur[1])) do redis.call('SREM', ix, id) end
    redis.call('DEL', k)
    ev({kind = 'subscription', change = 'DELETED', app = app, id = id, rev = tostring(tonumber(cur[3]) + 1), data = cur[2]})
  end
end
redis.call('DEL', p .. ':subs:app:' .. app, p .. ':subs:term:' .. app)
for _, kind in ipairs({'traffic', 'dns'}) do
  local ckind = kind == 'dns' and 'dnsrule' or 'trafficrule'
  local lk = p .. ':rules:' .. kind .. ':' .. app
  for _, id in ipairs(redis.call('LRANGE', lk, 0, -1)) do
    local rk = p .. ':rule:' .. kind .. ':' .. app .. ':' .. id
    local cur = redis.call('HMGET', rk, 'state', 'body', 'rev')
    redis.call('DEL', rk)
    ev({kind = ckind, change = 'REMOVED', app = app, id = id, state = cur[1] or '', rev = tostring(tonumber(cur[3] or '0') + 1), data = cur[2] or ''})
  end
  redis.call('DEL', lk)
  redis.call('SREM', p .. ':rules:' .. kind, app)
end
if redis.call('DEL', p .. ':appd:' .. app) == 1 then ev({kind = 'appd', change = 'DELETED', app = app, id = app}) end
if redis.call('DEL', p .. ':reg:' .. app) == 1 then ev({kind = 'registration', change = 'DELETED', app = app, id = app}) end
local gen = kmep_revoke(p, app)
local ak = redis.call('HGET', p .. ':conf:' .. app, 'ak')
if ak then
  redis.call('DEL', p .. ':conf:' .. app, p .. ':ak:' .. ak)
  ev({kind = 'appconf', change = 'DELETED', app = app, revoke = gen})
end
redis.call('DEL', p .. ':ready:' .. app, p .. ':term:' .. app)
return ev({kind = 'app', change = 'TERMINATED', app = app, id = app, revoke = gen})
`)

// PurgeApp removes everything of an app instance (the end of its
// termination) and returns the stream id of TERMINATED. Its services'
// REMOVED entries are bulk changes (Change.Bulk).
func (s *Store) PurgeApp(ctx context.Context, app string) (string, error) {
	sid, err := purgeScript.Run(ctx, s.rdb, nil, s.prefix, app, s.maxLen).Text()
	return sid, wrap("purge app "+app, err)
}
