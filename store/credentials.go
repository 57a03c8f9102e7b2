package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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

// putConfScript revokes the app's tokens when its AK changes (see revokeLua).
var putConfScript = redis.NewScript(changeLua + revokeLua + `
local p, app, ak, sk, name, req, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local akKey = p .. ':ak:' .. ak
local owner = redis.call('GET', akKey)
if owner and owner ~= app then return redis.error_reply('KMEP_CONFLICT access key id in use') end
local k = p .. ':conf:' .. app
local old = redis.call('HMGET', k, 'ak', 'rev')
local revoke = nil
if old[1] and old[1] ~= ak then
  redis.call('DEL', p .. ':ak:' .. old[1])
  revoke = kmep_revoke(p, app)
end
local rev = 1
if old[2] then rev = tonumber(old[2]) + 1 end
redis.call('SET', akKey, app)
redis.call('HSET', k, 'ak', ak, 'sk', sk, 'name', name, 'req', req, 'rev', rev)
kmep_change(p .. ':events', maxlen, {kind = 'appconf', change = 'PUT', app = app, rev = tostring(rev), revoke = revoke, tp = tp})
return rev
`)

// deleteConfScript revokes the app's tokens (see revokeLua).
var deleteConfScript = redis.NewScript(changeLua + revokeLua + `
local p, app, maxlen, tp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p .. ':conf:' .. app
local ak = redis.call('HGET', k, 'ak')
if not ak then return redis.error_reply('KMEP_NOTFOUND app conf ' .. app) end
redis.call('DEL', k, p .. ':ak:' .. ak)
return kmep_change(p .. ':events', maxlen, {kind = 'appconf', change = 'DELETED', app = app, revoke = kmep_revoke(p, app), tp = tp})
`)

func credentialAD(app, ak string) []byte { return []byte("kmep/aksk\x00" + app + "\x00" + ak) }

var errNoKey = errors.New("credentials need KMEP_ENCRYPTION_KEY")

// PutAppConf creates or replaces an app instance's configuration. The SK is
// sealed with AES-256-GCM before it is written. A new AK for the app revokes
// the tokens it was issued so far. ErrConflict when the AK belongs to another
// app instance.
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
		c.AppName, req, s.maxLen, traceArg(ctx)).Int64()
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

// DeleteAppConf removes an app instance's configuration, frees its AK and
// revokes the tokens it was issued.
func (s *Store) DeleteAppConf(ctx context.Context, app string) error {
	_, err := deleteConfScript.Run(ctx, s.rdb, nil, s.prefix, app, s.maxLen, traceArg(ctx)).Result()
	return wrap("delete app conf "+app, err)
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
