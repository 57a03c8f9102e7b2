package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Package is an app package (CSAR) uploaded by a tenant: its metadata. The
// CSAR itself is an object in S3.
type Package struct {
	TenantID string `json:"tenantId"`
	ID       string `json:"packageId"`
	// Object is the S3 key of the CSAR.
	Object string `json:"object"`
	// Size in bytes and SHA256 (hex) of the CSAR.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// AppName, AppVersion and Provider come from the CSAR's manifest.
	AppName    string `json:"appName,omitempty"`
	AppVersion string `json:"appVersion,omitempty"`
	Provider   string `json:"provider,omitempty"`
	// Charts are the Helm charts' paths inside the CSAR.
	Charts []string `json:"charts"`
	// AppD is the APPD's path inside the CSAR.
	AppD      string    `json:"appd"`
	CreatedAt time.Time `json:"createdAt"`
}

// Distribution is where a package may be instantiated: MEC host address →
// status ("Distributed").
type Distribution map[string]string

// Host is a MEC host: a Kubernetes cluster reached with a kubeconfig.
type Host struct {
	// Address is the host's IP address, the id used in paths and requests.
	Address string `json:"mechostIp"`
	Name    string `json:"mechostName,omitempty"`
	City    string `json:"city,omitempty"`
	// Kubeconfig is in the clear here; it is sealed (AES-256-GCM) before it
	// reaches Redis and only GetHostKubeconfig returns it.
	Kubeconfig []byte    `json:"-"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// Instance states.
const (
	InstanceInstantiating = "INSTANTIATING"
	InstanceInstantiated  = "INSTANTIATED"
	InstanceFailed        = "FAILED"
	InstanceTerminating   = "TERMINATING"
)

// Instance is an app instance created by instantiate.
type Instance struct {
	AppInstanceID string `json:"appInstanceId"`
	TenantID      string `json:"tenantId"`
	HostAddress   string `json:"hostIp"`
	PackageID     string `json:"packageId"`
	AppName       string `json:"appName"`
	// Namespace and Release locate the Helm release on the host.
	Namespace string `json:"namespace"`
	Release   string `json:"release"`
	State     string `json:"state"`
	// Reason explains a FAILED state.
	Reason string `json:"reason,omitempty"`
	// Deadline is when an INSTANTIATING instance counts as interrupted.
	Deadline  time.Time `json:"deadline"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func (s *Store) getJSON(ctx context.Context, op, key string, v any) error {
	b, err := s.rdb.Get(ctx, key).Bytes()
	if err != nil {
		return wrap(op, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: decode record: %w", op, err)
	}
	return nil
}

func (s *Store) listJSON(ctx context.Context, op, set string, key func(string) string, each func([]byte) error) error {
	ids, err := s.rdb.SMembers(ctx, set).Result()
	if err != nil {
		return wrap(op, err)
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return wrap(op, err)
	}
	for _, v := range vals {
		if b, ok := v.(string); ok {
			if err := each([]byte(b)); err != nil {
				return fmt.Errorf("%s: decode record: %w", op, err)
			}
		}
	}
	return nil
}

func (s *Store) pkgKey(tenant, id string) string { return s.key("pkg", tenant, id) }

func checkKeyParts(what string, parts ...string) error {
	for _, p := range parts {
		if !keyPart(p) {
			return fmt.Errorf("%s %q: ids must be non-empty and contain no ':': %w", what, p, ErrInvalid)
		}
	}
	return nil
}

// CreatePackage records an uploaded package. ErrConflict when the id exists.
func (s *Store) CreatePackage(ctx context.Context, p Package) error {
	if err := checkKeyParts("package", p.TenantID, p.ID); err != nil {
		return err
	}
	b, _ := json.Marshal(p)
	return s.createIndexed(ctx, "create package "+p.ID, s.pkgKey(p.TenantID, p.ID), b, s.key("pkgs", p.TenantID), p.ID)
}

// createIndexed stores a new record and its index entry in one atomic
// step (MULTI/EXEC), so no failure leaves a record its list does not show.
// The index entry of a record that exists is there already. ErrConflict
// when the record exists.
func (s *Store) createIndexed(ctx context.Context, op, key string, rec []byte, index, member string) error {
	var created *redis.BoolCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		created = p.SetNX(ctx, key, rec, 0)
		p.SAdd(ctx, index, member)
		return nil
	})
	if err != nil {
		return wrap(op, err)
	}
	if !created.Val() {
		return fmt.Errorf("%s: %w", op, ErrConflict)
	}
	return nil
}

// GetPackage returns a tenant's package. ErrNotFound.
func (s *Store) GetPackage(ctx context.Context, tenant, id string) (Package, error) {
	var p Package
	if err := checkKeyParts("package", tenant, id); err != nil {
		return p, fmt.Errorf("get package: %w", ErrNotFound)
	}
	return p, s.getJSON(ctx, "get package "+id, s.pkgKey(tenant, id), &p)
}

// ListPackages returns a tenant's packages ordered by id.
func (s *Store) ListPackages(ctx context.Context, tenant string) ([]Package, error) {
	out := []Package{}
	err := s.listJSON(ctx, "list packages", s.key("pkgs", tenant), func(id string) string { return s.pkgKey(tenant, id) },
		func(b []byte) error {
			var p Package
			err := json.Unmarshal(b, &p)
			out = append(out, p)
			return err
		})
	return out, err
}

// DeletePackage removes a package's record and distribution. ErrNotFound.
func (s *Store) DeletePackage(ctx context.Context, tenant, id string) error {
	if err := checkKeyParts("package", tenant, id); err != nil {
		return fmt.Errorf("delete package: %w", ErrNotFound)
	}
	res, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.pkgKey(tenant, id), s.key("pkgdist", tenant, id))
		p.SRem(ctx, s.key("pkgs", tenant), id)
		return nil
	})
	if err != nil {
		return wrap("delete package "+id, err)
	}
	if res[0].(*redis.IntCmd).Val() == 0 {
		return fmt.Errorf("delete package %s: %w", id, ErrNotFound)
	}
	return nil
}

// Distribute records that a package may be instantiated on hosts.
// ErrNotFound when the package does not exist.
func (s *Store) Distribute(ctx context.Context, tenant, id string, hosts []string) (Distribution, error) {
	if _, err := s.GetPackage(ctx, tenant, id); err != nil {
		return nil, err
	}
	k := s.key("pkgdist", tenant, id)
	args := make([]any, 0, 2*len(hosts))
	for _, h := range hosts {
		args = append(args, h, "Distributed")
	}
	if err := s.rdb.HSet(ctx, k, args...).Err(); err != nil {
		return nil, wrap("distribute package "+id, err)
	}
	return s.Distribution(ctx, tenant, id)
}

// Distribution returns where a package is distributed (empty when nowhere).
func (s *Store) Distribution(ctx context.Context, tenant, id string) (Distribution, error) {
	m, err := s.rdb.HGetAll(ctx, s.key("pkgdist", tenant, id)).Result()
	return Distribution(m), wrap("package distribution "+id, err)
}

func hostAD(addr string) []byte { return []byte("kmep/kubeconfig\x00" + addr) }

// PutHost creates or replaces a MEC host; its kubeconfig is sealed.
// created reports whether it is new.
func (s *Store) PutHost(ctx context.Context, h Host) (created bool, err error) {
	if s.seal == nil {
		return false, errNoKey
	}
	if err := checkKeyParts("host", h.Address); err != nil {
		return false, err
	}
	sealed, err := s.seal.seal(h.Kubeconfig, hostAD(h.Address))
	if err != nil {
		return false, fmt.Errorf("seal kubeconfig: %w", err)
	}
	meta, _ := json.Marshal(h)
	k := s.key("host", h.Address)
	res, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Exists(ctx, k)
		p.HSet(ctx, k, "meta", meta, "kubeconfig", sealed)
		p.SAdd(ctx, s.key("hosts"), h.Address)
		return nil
	})
	if err != nil {
		return false, wrap("put host "+h.Address, err)
	}
	return res[0].(*redis.IntCmd).Val() == 0, nil
}

// GetHost returns a host without its kubeconfig. ErrNotFound.
func (s *Store) GetHost(ctx context.Context, addr string) (Host, error) {
	var h Host
	if !keyPart(addr) {
		return h, fmt.Errorf("get host: %w", ErrNotFound)
	}
	b, err := s.rdb.HGet(ctx, s.key("host", addr), "meta").Bytes()
	if err != nil {
		return h, wrap("get host "+addr, err)
	}
	return h, json.Unmarshal(b, &h)
}

// GetHostKubeconfig returns a host with its kubeconfig in the clear.
// ErrNotFound.
func (s *Store) GetHostKubeconfig(ctx context.Context, addr string) (Host, error) {
	if s.seal == nil {
		return Host{}, errNoKey
	}
	h, err := s.GetHost(ctx, addr)
	if err != nil {
		return h, err
	}
	sealed, err := s.rdb.HGet(ctx, s.key("host", addr), "kubeconfig").Result()
	if err != nil {
		return h, wrap("get host "+addr, err)
	}
	h.Kubeconfig, err = s.seal.open(sealed, hostAD(addr))
	if err != nil {
		return h, fmt.Errorf("open kubeconfig of %s: %w", addr, err)
	}
	return h, nil
}

// ListHosts returns the hosts ordered by address, without kubeconfigs,
// in two round trips whatever their number.
func (s *Store) ListHosts(ctx context.Context) ([]Host, error) {
	addrs, err := s.rdb.SMembers(ctx, s.key("hosts")).Result()
	if err != nil {
		return nil, wrap("list hosts", err)
	}
	sort.Strings(addrs)
	cmds := make([]*redis.StringCmd, len(addrs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range addrs {
			cmds[i] = p.HGet(ctx, s.key("host", a), "meta")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("list hosts", err)
	}
	out := []Host{}
	for _, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			continue // deleted meanwhile
		}
		var h Host
		if err := json.Unmarshal(b, &h); err != nil {
			return nil, fmt.Errorf("list hosts: decode record: %w", err)
		}
		out = append(out, h)
	}
	return out, nil
}

// DeleteHost removes a host. ErrNotFound.
func (s *Store) DeleteHost(ctx context.Context, addr string) error {
	if !keyPart(addr) {
		return fmt.Errorf("delete host: %w", ErrNotFound)
	}
	res, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.key("host", addr))
		p.SRem(ctx, s.key("hosts"), addr)
		return nil
	})
	if err != nil {
		return wrap("delete host "+addr, err)
	}
	if res[0].(*redis.IntCmd).Val() == 0 {
		return fmt.Errorf("delete host %s: %w", addr, ErrNotFound)
	}
	return nil
}

func (s *Store) instKey(app string) string { return s.key("inst", app) }

// CreateInstance records a new app instance. ErrConflict when one with the
// same appInstanceId exists (whatever its state).
func (s *Store) CreateInstance(ctx context.Context, in Instance) error {
	if err := checkKeyParts("app instance", in.AppInstanceID); err != nil {
		return err
	}
	b, _ := json.Marshal(in)
	return s.createIndexed(ctx, "create instance "+in.AppInstanceID, s.instKey(in.AppInstanceID), b, s.key("insts"), in.AppInstanceID)
}

// UpdateInstance overwrites an existing instance record. ErrNotFound when it
// was deleted meanwhile.
func (s *Store) UpdateInstance(ctx context.Context, in Instance) error {
	in.UpdatedAt = s.now().UTC()
	b, _ := json.Marshal(in)
	ok, err := s.rdb.SetXX(ctx, s.instKey(in.AppInstanceID), b, 0).Result()
	if err != nil {
		return wrap("update instance "+in.AppInstanceID, err)
	}
	if !ok {
		return fmt.Errorf("update instance %s: %w", in.AppInstanceID, ErrNotFound)
	}
	return nil
}

// GetInstance returns an app instance record. ErrNotFound.
func (s *Store) GetInstance(ctx context.Context, app string) (Instance, error) {
	var in Instance
	if !keyPart(app) {
		return in, fmt.Errorf("get instance: %w", ErrNotFound)
	}
	return in, s.getJSON(ctx, "get instance "+app, s.instKey(app), &in)
}

// ListInstances returns every instance record ordered by id.
func (s *Store) ListInstances(ctx context.Context) ([]Instance, error) {
	out := []Instance{}
	err := s.listJSON(ctx, "list instances", s.key("insts"), s.instKey, func(b []byte) error {
		var in Instance
		err := json.Unmarshal(b, &in)
		out = append(out, in)
		return err
	})
	return out, err
}

// DeleteInstance removes an instance record and its install spec (absent
// is fine).
func (s *Store) DeleteInstance(ctx context.Context, app string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.instKey(app), s.instSpecKey(app))
		p.SRem(ctx, s.key("insts"), app)
		return nil
	})
	return wrap("delete instance "+app, err)
}
