package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rule states in the data plane, as the UPF agent records them.
const (
	// RuleApplied: the data plane holds the rule as Digest describes it.
	RuleApplied = "APPLIED"
	// RuleFailed: the last attempt failed (Reason); Permanent tells whether
	// the agent retries.
	RuleFailed = "FAILED"
	// RuleInactive: the rule is INACTIVE in the store and absent from the
	// data plane.
	RuleInactive = "INACTIVE"
)

// RuleKey names a rule of an app instance.
type RuleKey struct {
	AppInstanceID string
	ID            string
}

// String is "<appInstanceId>:<ruleId>" (neither may contain ':').
func (k RuleKey) String() string { return k.AppInstanceID + ":" + k.ID }

// ParseRuleKey reverses RuleKey.String.
func ParseRuleKey(s string) (RuleKey, bool) {
	app, id, ok := strings.Cut(s, ":")
	if !ok || !keyPart(app) || !keyPart(id) {
		return RuleKey{}, false
	}
	return RuleKey{AppInstanceID: app, ID: id}, true
}

// RuleStatus is what a UPF agent last did with a traffic rule: the record
// of the data plane's state (its "applied" side) and the status operators
// read.
type RuleStatus struct {
	AppInstanceID string `json:"appInstanceId"`
	RuleID        string `json:"trafficRuleId"`
	// State is RuleApplied, RuleFailed or RuleInactive.
	State string `json:"state"`
	// Reason says why the last attempt failed (RuleFailed).
	Reason string `json:"reason,omitempty"`
	// Permanent is true when the data plane cannot express the rule: the
	// agent does not retry until the rule changes.
	Permanent bool `json:"permanent,omitempty"`
	// Rev and Digest identify the rule's version this record is about.
	Rev    int64  `json:"rev"`
	Digest string `json:"digest"`
	// Index is the rule's allocated data-plane index (0: none).
	Index uint32 `json:"index,omitempty"`
	// Handle is the driver's own ids for what it created (ACL index, ...).
	Handle []uint32 `json:"handle,omitempty"`
	// Attempts counts consecutive failed attempts.
	Attempts int `json:"attempts,omitempty"`
	// Agent is the agent that wrote the record.
	Agent     string    `json:"agent,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Key is the status's RuleKey.
func (st RuleStatus) Key() RuleKey { return RuleKey{AppInstanceID: st.AppInstanceID, ID: st.RuleID} }

func (s *Store) upfStatusKey(upf string) string { return s.key("upf", upf, "status") }

func checkUPF(upf string) error {
	if !keyPart(upf) {
		return fmt.Errorf("upf name %q: must be non-empty without ':': %w", upf, ErrInvalid)
	}
	return nil
}

// GetTrafficRules returns the traffic rules named by keys in one round
// trip: nil where a rule does not exist.
func (s *Store) GetTrafficRules(ctx context.Context, keys []RuleKey) ([]*Rule, error) {
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			if checkRuleKey(k.AppInstanceID, k.ID) == nil {
				cmds[i] = p.HMGet(ctx, s.key("rule", RuleTraffic, k.AppInstanceID, k.ID), "state", "body", "rev")
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("get traffic rules", err)
	}
	out := make([]*Rule, len(keys))
	for i, c := range cmds {
		if c == nil {
			continue
		}
		v := c.Val()
		if len(v) != 3 || v[2] == nil {
			continue
		}
		r := &Rule{Kind: RuleTraffic, AppInstanceID: keys[i].AppInstanceID, ID: keys[i].ID, State: str(v[0]), Body: []byte(str(v[1]))}
		r.Rev, _ = strconv.ParseInt(str(v[2]), 10, 64)
		out[i] = r
	}
	return out, nil
}

// AllTrafficRules returns the traffic rules of every app instance (each
// app's in configuration order) in three round trips, however many apps
// there are: what RuleApps and a ListRules per app return, for an agent's
// resync. A rule deleted between the round trips is left out.
func (s *Store) AllTrafficRules(ctx context.Context) ([]Rule, error) {
	apps, err := s.RuleApps(ctx, RuleTraffic)
	if err != nil {
		return nil, err
	}
	lists := make([]*redis.StringSliceCmd, len(apps))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, app := range apps {
			lists[i] = p.LRange(ctx, s.key("rules", RuleTraffic, app), 0, -1)
		}
		return nil
	}); err != nil {
		return nil, wrap("list traffic rules", err)
	}
	var out []Rule
	for i, l := range lists {
		for _, id := range l.Val() {
			out = append(out, Rule{Kind: RuleTraffic, AppInstanceID: apps[i], ID: id})
		}
	}
	cmds := make([]*redis.SliceCmd, len(out))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range out {
			cmds[i] = p.HMGet(ctx, s.key("rule", RuleTraffic, out[i].AppInstanceID, out[i].ID), "state", "body", "rev")
		}
		return nil
	}); err != nil {
		return nil, wrap("load traffic rules", err)
	}
	kept := out[:0]
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 3 || v[2] == nil {
			continue
		}
		r := out[i]
		r.State, r.Body = str(v[0]), []byte(str(v[1]))
		r.Rev, _ = strconv.ParseInt(str(v[2]), 10, 64)
		kept = append(kept, r)
	}
	return kept, nil
}

// RuleStatuses returns the statuses upf's agent recorded for keys in one
// round trip: nil where there is none.
func (s *Store) RuleStatuses(ctx context.Context, upf string, keys []RuleKey) ([]*RuleStatus, error) {
	if err := checkUPF(upf); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	fields := make([]string, len(keys))
	for i, k := range keys {
		fields[i] = k.String()
	}
	v, err := s.rdb.HMGet(ctx, s.upfStatusKey(upf), fields...).Result()
	if err != nil {
		return nil, wrap("rule statuses of "+upf, err)
	}
	out := make([]*RuleStatus, len(keys))
	for i, x := range v {
		if x == nil {
			continue
		}
		var st RuleStatus
		if err := json.Unmarshal([]byte(str(x)), &st); err != nil {
			return nil, fmt.Errorf("rule status %s of %s: %w: %v", fields[i], upf, ErrInvalid, err)
		}
		out[i] = &st
	}
	return out, nil
}

// RuleStatus returns one rule's status on upf. ErrNotFound.
func (s *Store) RuleStatus(ctx context.Context, upf, app, id string) (RuleStatus, error) {
	sts, err := s.RuleStatuses(ctx, upf, []RuleKey{{AppInstanceID: app, ID: id}})
	if err != nil {
		return RuleStatus{}, err
	}
	if sts[0] == nil {
		return RuleStatus{}, fmt.Errorf("rule status %s:%s of %s: %w", app, id, upf, ErrNotFound)
	}
	return *sts[0], nil
}

// AllRuleStatuses returns every status recorded for upf.
func (s *Store) AllRuleStatuses(ctx context.Context, upf string) ([]RuleStatus, error) {
	if err := checkUPF(upf); err != nil {
		return nil, err
	}
	m, err := s.rdb.HGetAll(ctx, s.upfStatusKey(upf)).Result()
	if err != nil {
		return nil, wrap("rule statuses of "+upf, err)
	}
	out := make([]RuleStatus, 0, len(m))
	for f, v := range m {
		var st RuleStatus
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return nil, fmt.Errorf("rule status %s of %s: %w: %v", f, upf, ErrInvalid, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// The status script writes and deletes status records of one UPF (HSET
// and HDEL of up to 1000 fields at a time), fenced by the agents' lease:
// when ARGV[1] (a holder) is set and the lease key KEYS[2] holds someone
// else or has expired, it writes nothing.
var upfStatusScript = redis.NewScript(`
local holder = ARGV[1]
if holder ~= '' and redis.call('GET', KEYS[2]) ~= holder then
  return redis.error_reply('KMEP_FORBIDDEN lease not held by ' .. holder)
end
local n = tonumber(ARGV[2])
local puts = 2 + 2 * n
for c = 3, puts, 2000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, c, math.min(c + 1999, puts)))
end
for c = puts + 1, #ARGV, 1000 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, c, math.min(c + 999, #ARGV)))
end
return n
`)

// PutRuleStatuses records put and deletes the statuses of del for upf in
// one atomic step. With a holder, the step is fenced by lease (the name
// given to AcquireLease): ErrForbidden and nothing written when holder
// does not hold it, so an agent that lost its lease cannot overwrite what
// its successor recorded.
func (s *Store) PutRuleStatuses(ctx context.Context, upf, lease, holder string, put []RuleStatus, del []RuleKey) error {
	if err := checkUPF(upf); err != nil {
		return err
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	args := make([]any, 0, 2+2*len(put)+len(del))
	args = append(args, holder, len(put))
	for _, st := range put {
		if checkRuleKey(st.AppInstanceID, st.RuleID) != nil {
			return fmt.Errorf("rule status %s:%s: %w", st.AppInstanceID, st.RuleID, ErrInvalid)
		}
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("rule status %s: %w", st.Key(), err)
		}
		args = append(args, st.Key().String(), b)
	}
	for _, k := range del {
		args = append(args, k.String())
	}
	err := upfStatusScript.Run(ctx, s.rdb, []string{s.upfStatusKey(upf), s.key("lease", lease)}, args...).Err()
	return wrap("put rule statuses of "+upf, err)
}
