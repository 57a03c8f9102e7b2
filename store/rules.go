package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Rule kinds.
const (
	RuleTraffic = "traffic"
	RuleDNS     = "dns"
)

// Rule is a traffic rule or DNS rule of an app instance.
type Rule struct {
	// Kind is RuleTraffic or RuleDNS.
	Kind          string
	AppInstanceID string
	// ID is trafficRuleId or dnsRuleId.
	ID string
	// State is ACTIVE or INACTIVE.
	State string
	// Body is the rule's JSON (TrafficRule or DnsRule of MEC 011).
	Body []byte
	Rev  int64
}

func ruleKind(kind string) string {
	if kind == RuleDNS {
		return KindDNSRule
	}
	return KindTrafficRule
}

// AppD is an app instance's rule configuration from Mm5 (appd_configuration).
type AppD struct {
	AppInstanceID string
	AppName       string
	AppSupportMp1 bool
	Traffic, DNS  []Rule
	Rev           int64
}

var putRuleScript = redis.NewScript(changeLua + `
local p, kind, ckind, app, id, state, body, ifrev, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local k = p .. ':rule:' .. kind .. ':' .. app .. ':' .. id
local cur = redis.call('HMGET', k, 'state', 'body', 'rev')
if not cur[3] then return redis.error_reply('KMEP_NOTFOUND rule ' .. id) end
if ifrev ~= '' and ifrev ~= cur[3] then return redis.error_reply('KMEP_STALE rule ' .. id) end
if cur[1] == state and cur[2] == body then return {cur[3], ''} end
local rev = tostring(tonumber(cur[3]) + 1)
redis.call('HSET', k, 'state', state, 'body', body, 'rev', rev)
local sid = kmep_change(p .. ':events', maxlen, {kind = ckind, change = 'UPDATED', app = app, id = id, state = state, rev = rev, data = body, tp = tp})
return {rev, sid}
`)

// keyPart reports whether s can be one component of a composite key: rule
// keys join app and rule ids with ':', so neither may contain one (else app
// "a" rule "b:c" and app "a:b" rule "c" would share a key).
func keyPart(s string) bool { return s != "" && !strings.ContainsRune(s, ':') }

func checkRuleKey(app, id string) error {
	if !keyPart(app) || !keyPart(id) {
		return fmt.Errorf("rule %q of app %q: ids must be non-empty and contain no ':': %w", id, app, ErrInvalid)
	}
	return nil
}

// UpdateRule replaces an existing rule (Mp1 PUT). ifRev > 0 makes it
// conditional. An update that changes nothing keeps Rev and appends nothing.
// ErrNotFound, ErrPrecondition.
func (s *Store) UpdateRule(ctx context.Context, r Rule, ifRev int64) (Rule, string, error) {
	if err := checkRuleKey(r.AppInstanceID, r.ID); err != nil {
		return Rule{}, "", err
	}
	cond := ""
	if ifRev > 0 {
		cond = strconv.FormatInt(ifRev, 10)
	}
	res, err := putRuleScript.Run(ctx, s.rdb, nil, s.prefix, r.Kind, ruleKind(r.Kind), r.AppInstanceID, r.ID,
		r.State, r.Body, cond, s.maxLen, traceArg(ctx)).StringSlice()
	if err != nil {
		return Rule{}, "", wrap("update rule "+r.ID, err)
	}
	r.Rev, _ = strconv.ParseInt(res[0], 10, 64)
	return r, res[1], nil
}

// GetRule returns one rule. ErrNotFound.
func (s *Store) GetRule(ctx context.Context, kind, app, id string) (Rule, error) {
	if checkRuleKey(app, id) != nil {
		return Rule{}, fmt.Errorf("get rule %s: %w", id, ErrNotFound)
	}
	v, err := s.rdb.HMGet(ctx, s.key("rule", kind, app, id), "state", "body", "rev").Result()
	if err != nil {
		return Rule{}, wrap("get rule "+id, err)
	}
	if v[2] == nil {
		return Rule{}, fmt.Errorf("get rule %s: %w", id, ErrNotFound)
	}
	r := Rule{Kind: kind, AppInstanceID: app, ID: id, State: str(v[0]), Body: []byte(str(v[1]))}
	r.Rev, _ = strconv.ParseInt(str(v[2]), 10, 64)
	return r, nil
}

// ListRules lists an app instance's rules of one kind, in configuration order.
func (s *Store) ListRules(ctx context.Context, kind, app string) ([]Rule, error) {
	ids, err := s.rdb.LRange(ctx, s.key("rules", kind, app), 0, -1).Result()
	if err != nil {
		return nil, wrap("list rules", err)
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.key("rule", kind, app, id), "state", "body", "rev")
		}
		return nil
	})
	if err != nil {
		return nil, wrap("load rules", err)
	}
	out := make([]Rule, 0, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 3 || v[2] == nil {
			continue
		}
		r := Rule{Kind: kind, AppInstanceID: app, ID: ids[i], State: str(v[0]), Body: []byte(str(v[1]))}
		r.Rev, _ = strconv.ParseInt(str(v[2]), 10, 64)
		out = append(out, r)
	}
	return out, nil
}

// RuleApps lists the app instances that have rules of a kind (for agents
// that resynchronise everything: the UPF agent, the mesh DNS).
func (s *Store) RuleApps(ctx context.Context, kind string) ([]string, error) {
	apps, err := s.rdb.SMembers(ctx, s.key("rules", kind)).Result()
	return apps, wrap("rule apps", err)
}

// The appd script replaces an app's whole rule configuration: rules that
// disappear are REMOVED, new ones ADDED, changed ones UPDATED, each with
// its stream entry, all in one atomic step. mode: "create" fails when a
// configuration exists, "replace" when none does, "delete" removes it.
var appdScript = redis.NewScript(changeLua + `
local p, app, name, mp1, mode, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local ak = p .. ':appd:' .. app
local exists = redis.call('EXISTS', ak) == 1
if mode == 'create' and exists then return redis.error_reply('KMEP_CONFLICT appd configuration exists') end
if mode ~= 'create' and not exists then return redis.error_reply('KMEP_NOTFOUND appd configuration of ' .. app) end
local function ev(ckind, change, id, state, rev, body)
  kmep_change(p .. ':events', maxlen, {kind = ckind, change = change, app = app, id = id, state = state, rev = rev, data = body, tp = tp})
end
local i = 8
for _, kind in ipairs({'traffic', 'dns'}) do
  local ckind = kind == 'dns' and 'dnsrule' or 'trafficrule'
  local n = tonumber(ARGV[i]); i = i + 1
  local want, order = {}, {}
  for j = 1, n do
    want[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]}
    table.insert(order, ARGV[i])
    i = i + 3
  end
  if mode == 'delete' then want, order = {}, {} end
  local lk = p .. ':rules:' .. kind .. ':' .. app
  for _, id in ipairs(redis.call('LRANGE', lk, 0, -1)) do
    if not want[id] then
      local rk = p .. ':rule:' .. kind .. ':' .. app .. ':' .. id
      local cur = redis.call('HMGET', rk, 'state', 'body', 'rev')
      redis.call('DEL', rk)
      ev(ckind, 'REMOVED', id, cur[1] or '', tostring(tonumber(cur[3] or '0') + 1), cur[2] or '')
    end
  end
  redis.call('DEL', lk)
  for _, id in ipairs(order) do
    local rk = p .. ':rule:' .. kind .. ':' .. app .. ':' .. id
    local cur = redis.call('HMGET', rk, 'state', 'body', 'rev')
    local state, body = want[id][1], want[id][2]
    redis.call('RPUSH', lk, id)
    if not cur[3] then
      redis.call('HSET', rk, 'state', state, 'body', body, 'rev', 1)
      ev(ckind, 'ADDED', id, state, '1', body)
    elseif cur[1] ~= state or cur[2] ~= body then
      local rev = tostring(tonumber(cur[3]) + 1)
      redis.call('HSET', rk, 'state', state, 'body', body, 'rev', rev)
      ev(ckind, 'UPDATED', id, state, rev, body)
    end
  end
  if #order > 0 then redis.call('SADD', p .. ':rules:' .. kind, app) else redis.call('SREM', p .. ':rules:' .. kind, app) end
end
if mode == 'delete' then
  redis.call('DEL', ak)
  ev('appd', 'DELETED', app, '', '', '')
  return 0
end
local rev = redis.call('HINCRBY', ak, 'rev', 1)
redis.call('HSET', ak, 'name', name, 'mp1', mp1)
ev('appd', rev == 1 and 'CREATED' or 'UPDATED', app, '', tostring(rev), '')
return rev
`)

func (s *Store) appd(ctx context.Context, d AppD, mode string) (int64, error) {
	for _, rules := range [][]Rule{d.Traffic, d.DNS} {
		for _, r := range rules {
			if err := checkRuleKey(d.AppInstanceID, r.ID); err != nil {
				return 0, err
			}
		}
	}
	if !keyPart(d.AppInstanceID) {
		return 0, fmt.Errorf("appd of %q: %w", d.AppInstanceID, ErrInvalid)
	}
	args := []any{s.prefix, d.AppInstanceID, d.AppName, strconv.FormatBool(d.AppSupportMp1), mode, s.maxLen, traceArg(ctx)}
	for _, rules := range [][]Rule{d.Traffic, d.DNS} {
		args = append(args, len(rules))
		for _, r := range rules {
			args = append(args, r.ID, r.State, r.Body)
		}
	}
	rev, err := appdScript.Run(ctx, s.rdb, nil, args...).Int64()
	return rev, wrap(mode+" appd configuration "+d.AppInstanceID, err)
}

// CreateAppD stores an app instance's rule configuration. ErrConflict when
// one exists. Rule ids must be unique within their kind (the caller checks).
func (s *Store) CreateAppD(ctx context.Context, d AppD) (AppD, error) {
	rev, err := s.appd(ctx, d, "create")
	d.Rev = rev
	return d, err
}

// ReplaceAppD replaces an app instance's rule configuration. ErrNotFound.
func (s *Store) ReplaceAppD(ctx context.Context, d AppD) (AppD, error) {
	rev, err := s.appd(ctx, d, "replace")
	d.Rev = rev
	return d, err
}

// DeleteAppD removes an app instance's rule configuration and its rules.
// ErrNotFound.
func (s *Store) DeleteAppD(ctx context.Context, app string) error {
	_, err := s.appd(ctx, AppD{AppInstanceID: app}, "delete")
	return err
}

// GetAppD returns an app instance's rule configuration with its rules.
// ErrNotFound.
func (s *Store) GetAppD(ctx context.Context, app string) (AppD, error) {
	v, err := s.rdb.HMGet(ctx, s.key("appd", app), "name", "mp1", "rev").Result()
	if err != nil {
		return AppD{}, wrap("get appd "+app, err)
	}
	if v[2] == nil {
		return AppD{}, fmt.Errorf("get appd %s: %w", app, ErrNotFound)
	}
	d := AppD{AppInstanceID: app, AppName: str(v[0]), AppSupportMp1: str(v[1]) == "true"}
	d.Rev, _ = strconv.ParseInt(str(v[2]), 10, 64)
	if d.Traffic, err = s.ListRules(ctx, RuleTraffic, app); err != nil {
		return AppD{}, err
	}
	if d.DNS, err = s.ListRules(ctx, RuleDNS, app); err != nil {
		return AppD{}, err
	}
	return d, nil
}
