package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// AppConf is an app instance's configuration from Mm5: its AK/SK and app info.
type AppConf struct {
	AppInstanceID string
	// AccessKeyID is the AK; unique across app instances.
	AccessKeyID string
	// SecretKey is the SK in the clear. It is sealed before it reaches Redis
	// and is only ever returned by CredentialByAK.
	SecretKey []byte
	// AppName and RequiredServices are appInfo.
	AppName          string
	RequiredServices []string
	// Rev increases with every PUT.
	Rev int64
}

var putConfScript = redis.NewScript(`
local p, app, ak, sk, name, req, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local akKey = p .. ':ak:' .. ak
local owner = redis.call('GET', akKey)
if owner and owner ~= app then return redis.error_reply('KMEP_CONFLICT access key id in use') end
local k = p .. ':conf:' .. app
local old = redis.call('HMGET', k, 'ak', 'rev')
if old[1] and old[1] ~= ak then redis.call('DEL', p .. ':ak:' .. old[1]) end
local rev = 1
if old[2] then rev = tonumber(old[2]) + 1 end
redis.call('SET', akKey, app)
redis.call('HSET', k, 'ak', ak, 'sk', sk, 'name', name, 'req', req, 'rev', rev)
redis.call('XADD', p .. ':events', 'MAXLEN', '~', maxlen, '*', 'kind', 'appconf', 'change', 'PUT', 'app', app, 'rev', tostring(rev))
return rev
`)

var deleteConfScript = redis.NewScript(`
local p, app, maxlen = ARGV[1], ARGV[2], ARGV[3]
local k = p .. ':conf:' .. app
local ak = redis.call('HGET', k, 'ak')
if not ak then return redis.error_reply('KMEP_NOTFOUND app conf ' .. app) end
redis.call('DEL', k, p .. ':ak:' .. ak)
return redis.call('XADD', p .. ':events', 'MAXLEN', '~', maxlen, '*', 'kind', 'appconf', 'change', 'DELETED', 'app', app)
`)

func credentialAD(app, ak string) []byte { return []byte("kmep/aksk\x00" + app + "\x00" + ak) }

var errNoKey = errors.New("credentials need KMEP_ENCRYPTION_KEY")

// PutAppConf creates or replaces an app instance's configuration. The SK is
// sealed with AES-256-GCM before it is written. ErrConflict when the AK
// belongs to another app instance.
func (s *Store) PutAppConf(ctx context.Context, c AppConf) (AppConf, error) {
	if s.seal == nil {
		return AppConf{}, errNoKey
	}
	sealed, err := s.seal.seal(c.SecretKey, credentialAD(c.AppInstanceID, c.AccessKeyID))
	if err != nil {
		return AppConf{}, fmt.Errorf("seal secret key: %w", err)
	}
	req, _ := json.Marshal(c.RequiredServices)
	rev, err := putConfScript.Run(ctx, s.rdb, nil, s.prefix, c.AppInstanceID, c.AccessKeyID, sealed,
		c.AppName, req, s.maxLen).Int64()
	if err != nil {
		return AppConf{}, wrap("put app conf "+c.AppInstanceID, err)
	}
	c.Rev = rev
	return c, nil
}

// GetAppConf returns an app instance's configuration without its secret.
func (s *Store) GetAppConf(ctx context.Context, app string) (AppConf, error) {
	v, err := s.rdb.HMGet(ctx, s.key("conf", app), "ak", "name", "req", "rev").Result()
	if err != nil {
		return AppConf{}, wrap("get app conf "+app, err)
	}
	if v[0] == nil {
		return AppConf{}, fmt.Errorf("get app conf %s: %w", app, ErrNotFound)
	}
	c := AppConf{AppInstanceID: app, AccessKeyID: v[0].(string), AppName: str(v[1])}
	_ = json.Unmarshal([]byte(str(v[2])), &c.RequiredServices)
	c.Rev, _ = strconv.ParseInt(str(v[3]), 10, 64)
	return c, nil
}

func str(v any) string { s, _ := v.(string); return s }

// DeleteAppConf removes an app instance's configuration and frees its AK.
func (s *Store) DeleteAppConf(ctx context.Context, app string) error {
	_, err := deleteConfScript.Run(ctx, s.rdb, nil, s.prefix, app, s.maxLen).Result()
	return wrap("delete app conf "+app, err)
}

// Credential is what the token function needs to check a signed request.
type Credential struct {
	AppInstanceID string
	SecretKey     []byte
	// LockedFor > 0 means the AK is locked out for that long still.
	LockedFor time.Duration
}

// CredentialByAK looks up an access key id in one round trip: its app
// instance, its opened secret, and whether it is locked out.
// ErrNotFound when the AK is unknown.
func (s *Store) CredentialByAK(ctx context.Context, ak string) (Credential, error) {
	if s.seal == nil {
		return Credential{}, errNoKey
	}
	v, err := credentialScript.Run(ctx, s.rdb, nil, s.prefix, ak).Slice()
	if err != nil {
		return Credential{}, wrap("credential", err)
	}
	lock, _ := v[0].(int64)
	c := Credential{LockedFor: time.Duration(lock) * time.Millisecond}
	if len(v) < 3 {
		if c.LockedFor > 0 {
			return c, nil
		}
		return Credential{}, fmt.Errorf("credential: %w", ErrNotFound)
	}
	c.AppInstanceID = str(v[1])
	sk, err := s.seal.open(str(v[2]), credentialAD(c.AppInstanceID, ak))
	if err != nil {
		return Credential{}, fmt.Errorf("credential of %s: %w", c.AppInstanceID, err)
	}
	c.SecretKey = sk
	return c, nil
}

var credentialScript = redis.NewScript(`
local p, ak = ARGV[1], ARGV[2]
local lock = redis.call('PTTL', p .. ':lock:' .. ak)
if lock < 0 then lock = 0 end
local app = redis.call('GET', p .. ':ak:' .. ak)
if not app then return {lock} end
return {lock, app, redis.call('HGET', p .. ':conf:' .. app, 'sk')}
`)

// Lockout policy: MaxFailures bad signatures within FailureWindow lock the
// AK for LockDuration.
const (
	MaxFailures   = 3
	FailureWindow = 5 * time.Minute
	LockDuration  = 15 * time.Minute
)

var failureScript = redis.NewScript(`
local p, ak, now, window, max, lockms, nonce = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local fk = p .. ':fail:' .. ak
redis.call('ZREMRANGEBYSCORE', fk, '-inf', now - window)
redis.call('ZADD', fk, now, nonce)
redis.call('PEXPIRE', fk, window)
if redis.call('ZCARD', fk) >= max then
  redis.call('SET', p .. ':lock:' .. ak, '1', 'PX', lockms)
  redis.call('DEL', fk)
  return lockms
end
return 0
`)

func nonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RecordAuthFailure counts a bad signature for ak (sliding window) and locks
// the AK when the count reaches MaxFailures. It returns how long the AK is
// now locked (0 when it is not).
func (s *Store) RecordAuthFailure(ctx context.Context, ak string) (time.Duration, error) {
	now := s.now()
	lock, err := failureScript.Run(ctx, s.rdb, nil, s.prefix, ak, now.UnixMilli(), FailureWindow.Milliseconds(),
		MaxFailures, LockDuration.Milliseconds(), nonce()).Int64()
	if err != nil {
		return 0, wrap("record auth failure", err)
	}
	return time.Duration(lock) * time.Millisecond, nil
}

// PublishJWKS replaces the published token-verification keys (a JWKS
// document) that every function reads through JWKS.
func (s *Store) PublishJWKS(ctx context.Context, jwks []byte) error {
	return wrap("publish jwks", s.rdb.Set(ctx, s.key("jwks"), jwks, 0).Err())
}

// JWKS returns the published key set. ErrNotFound when none was published.
func (s *Store) JWKS(ctx context.Context) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.key("jwks")).Bytes()
	if err != nil {
		return nil, wrap("jwks", err)
	}
	return b, nil
}
