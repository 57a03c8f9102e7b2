package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/store/kit/trace"
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
	// Kind is what the change is about: one of the Kind constants.
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
	// Bulk reports that the change is one of many made together by the
	// platform (the reaper's expiries, an app's purge) rather than one a
	// client asked for: the relay and the broker let the other changes
	// pass it (see package relay), keeping the order of each subject.
	Bulk bool
	// TraceParent is the W3C traceparent of the request that made the
	// change (of its span: the function's server span), which the relay
	// passes on in the change's event; "" for a change no traced request
	// made (the reaper's, an app's purge, a request without trace
	// context). The store writes only the traceparent of a valid span
	// context, and the relay ignores one that is malformed.
	TraceParent string
	// TraceState is the W3C tracestate of that span context (vendors'
	// entries, e.g. an app's own, passed on beside the traceparent); ""
	// when it has none or there is no TraceParent.
	TraceState string
}

// Change-stream entry fields. changeFields is their one definition: the Lua
// in changeLua, spliced into every script that appends a change, writes
// only these fields, in this order, and fails on any other; changeFrom
// reads them back with set. Adding a field is one line here, plus the
// script that has its value.
const (
	fieldKind       = "kind"
	fieldChange     = "change"
	fieldID         = "id"
	fieldApp        = "app"
	fieldState      = "state"
	fieldRev        = "rev"
	fieldData       = "data"
	fieldRevoke     = "revoke"
	fieldLane       = "lane"
	fieldTrace      = "tp"
	fieldTraceState = "ts"
)

// laneBulk is the lane field's one value: the entry is a bulk change
// (Change.Bulk). Entries of the live lane have no lane field.
const laneBulk = "bulk"

// changeField is one field of a change-stream entry.
type changeField struct {
	name string
	// set stores the field's value ("" when the entry lacks it) in c; nil
	// when changeFrom leaves it to a reader of its own.
	set func(c *Change, v string)
}

var changeFields = []changeField{
	{fieldKind, func(c *Change, v string) { c.Kind = v }},
	{fieldChange, func(c *Change, v string) { c.Type = v }},
	{fieldID, func(c *Change, v string) { c.ID = v }},
	{fieldApp, func(c *Change, v string) { c.AppInstanceID = v }},
	// The service record's fields (recordFields), for KindService.
	{"name", func(c *Change, v string) { c.Service.Name = v }},
	{"cat", func(c *Change, v string) { c.Service.CategoryID = v }},
	{fieldState, func(c *Change, v string) { c.State = v }},
	{fieldRev, func(c *Change, v string) { c.Rev, _ = strconv.ParseInt(v, 10, 64) }},
	{"live", func(c *Change, v string) { c.Service.LivenessInterval, _ = strconv.Atoi(v) }},
	{"info", func(c *Change, v string) { c.Service.Info = []byte(v) }},
	{"hb", func(c *Change, v string) { c.Service.LastHeartbeat = msTime(v) }},
	{fieldData, func(c *Change, v string) { c.Data = []byte(v) }},
	// The token generation an entry revokes; ReadRevocations reads it.
	{fieldRevoke, nil},
	// "bulk" for a change made with many others (Change.Bulk), else absent.
	{fieldLane, func(c *Change, v string) { c.Bulk = v == laneBulk }},
	// The traceparent of the request that made the change
	// (Change.TraceParent), else absent.
	{fieldTrace, func(c *Change, v string) { c.TraceParent = v }},
	// Its tracestate (Change.TraceState), when it has one; else absent.
	{fieldTraceState, func(c *Change, v string) { c.TraceState = v }},
}

// changeLua defines, for the scripts that append to the change stream:
//   - kmep_change(stream, maxlen, e): XADD of the entry e, a table from
//     field name to value, with the fields of changeFields in their order
//     (absent ones left out, and tp when it is empty); a field not in
//     changeFields is an error. e.tp is the request's trace context as
//     traceArg makes it, the traceparent and, after a newline, its
//     tracestate: written as the fields tp and ts;
//   - kmep_record(k): the service record hash k as a table by field name
//     (recordFields), nil when it does not exist;
//   - kmep_service_change(stream, maxlen, change, id, r, lane, tp): the
//     entry of a change of service id whose record (after the change) is
//     r; lane is kmep_bulk for one change of many (Change.Bulk), else nil;
//     tp is the request's trace context (traceArg; nil or the empty
//     string: none);
//   - kmep_bulk: the lane field's value of a bulk change.
var changeLua = `
local kmep_change_fields = {` + luaStrings(fieldNames(changeFields)) + `}
local kmep_record_fields = {` + luaStrings(recordFields) + `}
local kmep_change_known = {}
for _, f in ipairs(kmep_change_fields) do kmep_change_known[f] = true end
local function kmep_change(stream, maxlen, e)
  for f in pairs(e) do
    if not kmep_change_known[f] then error('kmep_change: unknown change-stream field ' .. tostring(f)) end
  end
  if e.` + fieldTrace + ` == '' then e.` + fieldTrace + ` = nil end
  if e.` + fieldTrace + ` then
    local nl = string.find(e.` + fieldTrace + `, '\n', 1, true)
    if nl then
      e.` + fieldTraceState + ` = string.sub(e.` + fieldTrace + `, nl + 1)
      e.` + fieldTrace + ` = string.sub(e.` + fieldTrace + `, 1, nl - 1)
    end
  end
  local args = {'XADD', stream, 'MAXLEN', '~', maxlen, '*'}
  for _, f in ipairs(kmep_change_fields) do
    if e[f] ~= nil then
      args[#args + 1] = f
      args[#args + 1] = e[f]
    end
  end
  return redis.call(unpack(args))
end
local function kmep_record(k)
  local v = redis.call('HMGET', k, unpack(kmep_record_fields))
  if not v[1] then return nil end
  local r = {}
  for i, f in ipairs(kmep_record_fields) do r[f] = v[i] or nil end
  return r
end
local kmep_bulk = '` + laneBulk + `'
local function kmep_service_change(stream, maxlen, change, id, r, lane, tp)
  local e = {kind = 'service', change = change, id = id, lane = lane, tp = tp}
  for _, f in ipairs(kmep_record_fields) do e[f] = r[f] end
  return kmep_change(stream, maxlen, e)
end
`

// traceArg is the trace context of ctx's span as the scripts take it
// (kmep_change's tp): its traceparent, and after a newline its tracestate
// when it has one (neither may hold a newline); "" without a valid span
// context.
func traceArg(ctx context.Context) string {
	tp, ts := trace.Inject(ctx)
	if tp == "" || ts == "" {
		return tp
	}
	return tp + "\n" + ts
}

func fieldNames(fs []changeField) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

// luaStrings renders names as the items of a Lua table constructor.
func luaStrings(names []string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	return b.String()
}

func changeFrom(m redis.XMessage) Change {
	c := Change{StreamID: m.ID}
	for _, f := range changeFields {
		if f.set != nil {
			v, _ := m.Values[f.name].(string)
			f.set(&c, v)
		}
	}
	if c.Kind != KindService {
		c.Service = ServiceRecord{}
		return c
	}
	// A service change carries its record in Service only.
	c.Service.ID, c.Service.AppInstanceID, c.Service.State, c.Service.Rev = c.ID, c.AppInstanceID, c.State, c.Rev
	c.ID, c.State, c.Rev, c.Data = "", "", 0, nil
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
