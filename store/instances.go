package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KindInstance is the change kind of an app instance's install work: the
// instantiate function records it, the installer trigger does the work.
const KindInstance = "instance"

// Change types of KindInstance.
const (
	// ChangeInstantiate: the instance was recorded INSTANTIATING; install it.
	ChangeInstantiate = "INSTANTIATE"
	// ChangeTerminate: the instance was recorded TERMINATING; remove it.
	// The change's Data is {"gracefulTimeout": seconds}.
	ChangeTerminate = "TERMINATE"
)

// InstallSpec is what the installer needs to install an instance, all
// checked by the instantiate function already. It is sealed at rest (it
// holds the secret key and the caller's parameters).
type InstallSpec struct {
	// Object and Size locate the package's CSAR in the bucket.
	Object string `json:"object"`
	Size   int64  `json:"size"`
	// Values are the chart's values, as rendered.
	Values map[string]any `json:"values"`
	// AK and SK are the instance's credentials.
	AK string `json:"ak"`
	SK []byte `json:"sk"`
	// AppD is the APPD's rule configuration; none when it has no rules.
	AppD AppD `json:"appd"`
}

// TerminateData is the Data of a ChangeTerminate entry.
type TerminateData struct {
	GracefulTimeout int `json:"gracefulTimeout"`
}

func (s *Store) instSpecKey(app string) string { return s.key("instspec", app) }

func instSpecAD(app string) []byte { return []byte("instspec:" + app) }

var startInstanceScript = redis.NewScript(changeLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('KMEP_CONFLICT app instance exists') end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return kmep_change(KEYS[4], ARGV[4], {kind = 'instance', change = 'INSTANTIATE', app = ARGV[2], id = ARGV[2], tp = ARGV[5]})
`)

// StartInstance records a new app instance (state as given, normally
// INSTANTIATING), its sealed install spec and an INSTANTIATE change, in one
// atomic step. It returns the change's stream id. ErrConflict when an
// instance with that id exists (whatever its state).
func (s *Store) StartInstance(ctx context.Context, in Instance, spec InstallSpec) (string, error) {
	if err := checkKeyParts("app instance", in.AppInstanceID); err != nil {
		return "", err
	}
	if s.seal == nil {
		return "", errNoKey
	}
	rec, _ := json.Marshal(in)
	plain, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode install spec: %w", err)
	}
	sealed, err := s.seal.seal(plain, instSpecAD(in.AppInstanceID))
	if err != nil {
		return "", fmt.Errorf("seal install spec: %w", err)
	}
	app := in.AppInstanceID
	sid, err := startInstanceScript.Run(ctx, s.rdb,
		[]string{s.instKey(app), s.key("insts"), s.instSpecKey(app), s.streamKey()},
		rec, app, sealed, s.maxLen, traceArg(ctx)).Text()
	return sid, wrap("start instance "+app, err)
}

// GetInstallSpec returns an instance's install spec. ErrNotFound.
func (s *Store) GetInstallSpec(ctx context.Context, app string) (InstallSpec, error) {
	var spec InstallSpec
	if s.seal == nil {
		return spec, errNoKey
	}
	if !keyPart(app) {
		return spec, fmt.Errorf("get install spec: %w", ErrNotFound)
	}
	sealed, err := s.rdb.Get(ctx, s.instSpecKey(app)).Result()
	if err != nil {
		return spec, wrap("get install spec "+app, err)
	}
	plain, err := s.seal.open(sealed, instSpecAD(app))
	if err != nil {
		return spec, fmt.Errorf("open install spec of %s: %w", app, err)
	}
	if err := json.Unmarshal(plain, &spec); err != nil {
		return spec, fmt.Errorf("decode install spec of %s: %w", app, err)
	}
	return spec, nil
}

var terminateInstanceScript = redis.NewScript(changeLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('KMEP_NOTFOUND app instance') end
redis.call('SET', KEYS[1], ARGV[1])
return kmep_change(KEYS[2], ARGV[4], {kind = 'instance', change = 'TERMINATE', app = ARGV[2], id = ARGV[2], data = ARGV[3], tp = ARGV[5]})
`)

// RequestTermination overwrites an existing instance record (its state is
// normally TERMINATING) and appends a TERMINATE change with the graceful
// timeout, in one atomic step. It returns the change's stream id.
// ErrNotFound when the record is gone.
func (s *Store) RequestTermination(ctx context.Context, in Instance, graceful time.Duration) (string, error) {
	in.UpdatedAt = s.now().UTC()
	rec, _ := json.Marshal(in)
	data, _ := json.Marshal(TerminateData{GracefulTimeout: int((graceful + time.Second - 1) / time.Second)})
	app := in.AppInstanceID
	sid, err := terminateInstanceScript.Run(ctx, s.rdb, []string{s.instKey(app), s.streamKey()},
		rec, app, data, s.maxLen, traceArg(ctx)).Text()
	return sid, wrap("request termination "+app, err)
}

var updateInstanceIfScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return redis.error_reply('KMEP_NOTFOUND app instance') end
if cjson.decode(cur)['state'] ~= ARGV[2] then return redis.error_reply('KMEP_CONFLICT app instance state changed') end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// UpdateInstanceIf overwrites an instance record only while its state is
// still from (a compare-and-set: the installer's outcome never overwrites a
// termination requested meanwhile). ErrNotFound when the record is gone,
// ErrConflict when its state is no longer from.
func (s *Store) UpdateInstanceIf(ctx context.Context, in Instance, from string) error {
	in.UpdatedAt = s.now().UTC()
	rec, _ := json.Marshal(in)
	err := updateInstanceIfScript.Run(ctx, s.rdb, []string{s.instKey(in.AppInstanceID)}, rec, from).Err()
	return wrap("update instance "+in.AppInstanceID+" if "+from, err)
}

// ParseTerminateData reads a TERMINATE change's Data (zero when empty).
func ParseTerminateData(data []byte) (TerminateData, error) {
	var d TerminateData
	if len(data) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("terminate data %s: %w", strconv.Quote(string(data)), err)
	}
	return d, nil
}
