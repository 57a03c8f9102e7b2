package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Throttle policy of token requests. Failures are counted per live access
// key and source address: MaxFailures bad signatures from one source within
// FailureWindow of the first lock that source out of that AK for
// LockDuration. A locked source's requests for the AK are refused, good
// signatures too (a correct guess must look like any other); other sources,
// the app's own among them, are not affected. A good signature clears its
// source's failures. Unknown AKs get no state at all.
const (
	MaxFailures   = 3
	FailureWindow = 5 * time.Minute
	LockDuration  = 15 * time.Minute
)

// Keys of the throttle, for a live AK ak (which cannot contain ':') and a
// source src: the hash kmep:fail:{ak}:{src} (n: attempts counted, start: when
// the window began, until: end of the lock; times are Unix ms of the store's
// clock), and the sorted set kmep:fails:{ak} of the sources with such a hash
// (score: when it expires), which the admin's view reads.

// Credential is what the token function needs to check a signed request.
type Credential struct {
	AppInstanceID string
	// SecretKey is the SK in the clear.
	SecretKey []byte
	// Generation is the token generation to issue under (see
	// RevocationRetention): read in the same atomic step as the SK.
	Generation int64
}

// CredentialByAK looks up an access key id in one round trip: its app
// instance, its opened secret and the current token generation. It touches
// no throttle state. ErrNotFound when the AK is unknown.
func (s *Store) CredentialByAK(ctx context.Context, ak string) (Credential, error) {
	if s.seal == nil {
		return Credential{}, errNoKey
	}
	v, err := credentialScript.Run(ctx, s.rdb, nil, s.prefix, ak).StringSlice()
	if err != nil {
		return Credential{}, wrap("credential", err)
	}
	if len(v) == 0 {
		return Credential{}, fmt.Errorf("credential: %w", ErrNotFound)
	}
	return s.openCredential(ak, v[0], v[1], v[2])
}

var credentialScript = redis.NewScript(`
local p, ak = ARGV[1], ARGV[2]
local app = redis.call('GET', p .. ':ak:' .. ak)
if not app then return {} end
return {app, redis.call('HGET', p .. ':conf:' .. app, 'sk') or '', redis.call('GET', p .. ':tokgen') or '0'}
`)

func (s *Store) openCredential(ak, app, sealed, gen string) (Credential, error) {
	c := Credential{AppInstanceID: app}
	c.Generation, _ = strconv.ParseInt(gen, 10, 64)
	sk, err := s.seal.open(sealed, credentialAD(app, ak))
	if err != nil {
		return Credential{}, fmt.Errorf("credential of %s: %w", app, err)
	}
	c.SecretKey = sk
	return c, nil
}

// Admission is the answer of AdmitTokenRequest.
type Admission struct {
	// Credential is the AK's, when the request was admitted.
	Credential
	// LockedFor > 0: the source is locked out of the AK for that long
	// still; the request was not admitted and must be refused unchecked.
	LockedFor time.Duration
}

var admitScript = redis.NewScript(`
local p, ak, src, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local app = redis.call('GET', p .. ':ak:' .. ak)
if not app then return {'unknown'} end
local lock = tonumber(redis.call('HGET', p .. ':fail:' .. ak .. ':' .. src, 'until') or '0')
if lock > now then return {'locked', tostring(lock - now)} end
return {'admitted', app, redis.call('HGET', p .. ':conf:' .. app, 'sk') or '', redis.call('GET', p .. ':tokgen') or '0'}
`)

// AdmitTokenRequest is the first step of checking a signed token request
// for access key ak from source (an address, see the token function): it
// looks the AK up and tells whether source is locked out of it, writing
// nothing. ErrNotFound when the AK is unknown. The signature is then checked
// and the outcome recorded with RecordAuthFailure or AcceptSignature, which
// decide atomically.
func (s *Store) AdmitTokenRequest(ctx context.Context, ak, source string) (Admission, error) {
	if s.seal == nil {
		return Admission{}, errNoKey
	}
	v, err := admitScript.Run(ctx, s.rdb, nil, s.prefix, ak, source, s.now().UnixMilli()).StringSlice()
	if err != nil {
		return Admission{}, wrap("admit token request", err)
	}
	switch v[0] {
	case "unknown":
		return Admission{}, fmt.Errorf("admit token request: %w", ErrNotFound)
	case "locked":
		return Admission{LockedFor: msDuration(v[1])}, nil
	}
	c, err := s.openCredential(ak, v[1], v[2], v[3])
	if err != nil {
		return Admission{}, err
	}
	return Admission{Credential: c}, nil
}

func msDuration(v string) time.Duration {
	n, _ := strconv.ParseInt(v, 10, 64)
	return time.Duration(n) * time.Millisecond
}

// AuthFailure is the answer of RecordAuthFailure.
type AuthFailure struct {
	// Refused: source was locked out of the AK already (by concurrent
	// failures), so this one was not counted and must be answered as a
	// lock, not as a checked signature.
	Refused bool
	// Locks: this failure was the MaxFailures-th and locked source out.
	Locks bool
	// LockedFor is how long source is locked out still (Refused or Locks).
	LockedFor time.Duration
}

var failureScript = redis.NewScript(`
local p, ak, src, now, window, max, lockms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if not redis.call('GET', p .. ':ak:' .. ak) then return {'unknown'} end
local fk = p .. ':fail:' .. ak .. ':' .. src
local cur = redis.call('HMGET', fk, 'n', 'start', 'until')
local n, start, lock = tonumber(cur[1] or '0'), tonumber(cur[2] or '0'), tonumber(cur[3] or '0')
if lock > now then return {'locked', tostring(lock - now)} end
if lock > 0 or start + window <= now then n, start, lock = 0, now, 0 end
n = n + 1
if n >= max then lock = now + lockms end
redis.call('HSET', fk, 'n', n, 'start', start, 'until', lock)
local exp = math.max(start + window, lock)
redis.call('PEXPIRE', fk, exp - now)
local ik = p .. ':fails:' .. ak
redis.call('ZREMRANGEBYSCORE', ik, '-inf', now)
redis.call('ZADD', ik, exp, src)
redis.call('PEXPIRE', ik, window + lockms)
if lock > 0 then return {'locks', tostring(lock - now)} end
return {'counted'}
`)

// RecordAuthFailure counts a bad signature for the live AK ak from source,
// in one atomic step with the check of source's lock, so that however many
// bad signatures arrive at once, exactly MaxFailures are counted (and
// answered as bad signatures) before the lock refuses the rest. It writes
// nothing when the AK is unknown (ErrNotFound).
func (s *Store) RecordAuthFailure(ctx context.Context, ak, source string) (AuthFailure, error) {
	v, err := failureScript.Run(ctx, s.rdb, nil, s.prefix, ak, source, s.now().UnixMilli(), FailureWindow.Milliseconds(),
		MaxFailures, LockDuration.Milliseconds()).StringSlice()
	if err != nil {
		return AuthFailure{}, wrap("record auth failure", err)
	}
	switch v[0] {
	case "unknown":
		return AuthFailure{}, fmt.Errorf("record auth failure: %w", ErrNotFound)
	case "locked":
		return AuthFailure{Refused: true, LockedFor: msDuration(v[1])}, nil
	case "locks":
		return AuthFailure{Locks: true, LockedFor: msDuration(v[1])}, nil
	}
	return AuthFailure{}, nil
}

var acceptScript = redis.NewScript(`
local p, ak, src, sig, ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local fk, ik = p .. ':fail:' .. ak .. ':' .. src, p .. ':fails:' .. ak
local lock = tonumber(redis.call('HGET', fk, 'until') or '0')
if lock > now then return {'locked', tostring(lock - now)} end
if not redis.call('SET', p .. ':sig:' .. ak .. ':' .. sig, '1', 'NX', 'PX', ttl) then return {'replayed'} end
redis.call('DEL', fk)
redis.call('ZREM', ik, src)
return {'accepted'}
`)

// AcceptSignature records the outcome of a request whose signature proved
// good, in one atomic step: unless source was locked out of ak meanwhile
// (then it returns how long still, and the request must be refused like
// any other from a locked source), it records the signature as used for
// ttl (until the request's date falls out of the clock-skew window) and
// clears source's failures for ak. ErrConflict when the signature was used
// before: a replay, which is not counted as a failure.
func (s *Store) AcceptSignature(ctx context.Context, ak, source, signature string, ttl time.Duration) (time.Duration, error) {
	v, err := acceptScript.Run(ctx, s.rdb, nil, s.prefix, ak, source, signature, max(ttl.Milliseconds(), 1), s.now().UnixMilli()).StringSlice()
	if err != nil {
		return 0, wrap("accept signature", err)
	}
	switch v[0] {
	case "locked":
		return msDuration(v[1]), nil
	case "replayed":
		return 0, fmt.Errorf("accept signature: used before: %w", ErrConflict)
	}
	return 0, nil
}

// SourceLockout is the throttle state of one source for one AK.
type SourceLockout struct {
	// Source is the address (an IPv4 address or an IPv6 /64 prefix).
	Source string
	// Failures counts the bad signatures of the current window.
	Failures int
	// WindowStart is when the first of them came.
	WindowStart time.Time
	// LockedFor > 0: the source is locked out for that long still.
	LockedFor time.Duration
}

// Lockout is an app instance's throttle state.
type Lockout struct {
	AppInstanceID string
	AccessKeyID   string
	// Sources with failures in their window, or locked; locked ones first,
	// then by address.
	Sources []SourceLockout
}

var lockoutScript = redis.NewScript(`
local p, app, now, clear = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local ak = redis.call('HGET', p .. ':conf:' .. app, 'ak')
if not ak then return redis.error_reply('KMEP_NOTFOUND app conf ' .. app) end
local ik = p .. ':fails:' .. ak
local out = {ak}
for _, src in ipairs(redis.call('ZRANGEBYSCORE', ik, '(' .. now, '+inf')) do
  local fk = p .. ':fail:' .. ak .. ':' .. src
  local cur = redis.call('HMGET', fk, 'n', 'start', 'until')
  if cur[1] then
    out[#out + 1] = src
    out[#out + 1] = cur[1]
    out[#out + 1] = cur[2]
    out[#out + 1] = cur[3]
  end
  if clear then redis.call('DEL', fk) end
end
if clear then redis.call('DEL', ik) end
return out
`)

// Lockout returns the throttle state of app's AK: the sources with failures
// or locked out. ErrNotFound when app has no configuration.
func (s *Store) Lockout(ctx context.Context, app string) (Lockout, error) {
	return s.lockout(ctx, app, false)
}

// ClearLockout forgets the throttle state of app's AK, unlocking every
// source, and returns what it was. ErrNotFound when app has no
// configuration.
func (s *Store) ClearLockout(ctx context.Context, app string) (Lockout, error) {
	return s.lockout(ctx, app, true)
}

func (s *Store) lockout(ctx context.Context, app string, clear bool) (Lockout, error) {
	now := s.now().UnixMilli()
	flag := "0"
	if clear {
		flag = "1"
	}
	v, err := lockoutScript.Run(ctx, s.rdb, nil, s.prefix, app, now, flag).StringSlice()
	if err != nil {
		return Lockout{}, wrap("lockout of "+app, err)
	}
	l := Lockout{AppInstanceID: app, AccessKeyID: v[0], Sources: []SourceLockout{}}
	for i := 1; i+3 < len(v); i += 4 {
		n, _ := strconv.Atoi(v[i+1])
		until, _ := strconv.ParseInt(v[i+3], 10, 64)
		sl := SourceLockout{Source: v[i], Failures: n, WindowStart: msTime(v[i+2])}
		if until > now {
			sl.LockedFor = time.Duration(until-now) * time.Millisecond
		}
		l.Sources = append(l.Sources, sl)
	}
	sort.Slice(l.Sources, func(i, j int) bool {
		a, b := l.Sources[i], l.Sources[j]
		if (a.LockedFor > 0) != (b.LockedFor > 0) {
			return a.LockedFor > 0
		}
		return a.Source < b.Source
	})
	return l, nil
}
