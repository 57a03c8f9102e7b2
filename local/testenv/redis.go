// Package testenv starts the real servers kmep's tests run against
// (redis-server, MinIO, etcd and kube-apiserver, CoreDNS, on free loopback
// ports), runs a function's binary in the test's process against a
// redis-server of its own (NewFunction), and cleans them up. It is the
// one shared harness: tests never start servers of their own.
package testenv

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/rediserver"
	"github.com/kmep-io/kmep/store"
)

// Redis is a redis-server child process on 127.0.0.1.
type Redis struct {
	// Addr is host:port.
	Addr string
	srv  *rediserver.Server
	dir  string
	ns   atomic.Int64 // key prefixes handed out by Prefix
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// AOF turns on the append-only file (so Restart keeps the data).
	// Zero value: no persistence at all.
	AOF bool
}

// StartRedis starts redis-server (from PATH) in a fresh temporary
// directory and waits until it answers.
func StartRedis(opts RedisOptions) (*Redis, error) {
	dir, err := os.MkdirTemp("", "kmep-redis-")
	if err != nil {
		return nil, err
	}
	srv, err := rediserver.Start(rediserver.Options{Dir: dir, AOF: opts.AOF})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &Redis{Addr: srv.Addr, srv: srv, dir: dir}, nil
}

// URL is the redis:// URL of the server (REDIS_URL).
func (r *Redis) URL() string { return r.srv.URL() }

// Stop kills the server (SIGKILL: like a crash).
func (r *Redis) Stop() { r.srv.Kill() }

// Pause freezes the server (SIGSTOP): a stall, not a crash. Resume ends it.
func (r *Redis) Pause() error { return r.srv.Pause() }

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() error { return r.srv.Resume() }

// Restart stops the server and starts it again on the same port and data.
func (r *Redis) Restart() error { return r.srv.Restart() }

// Close stops the server and removes its data.
func (r *Redis) Close() {
	r.srv.Kill()
	_ = os.RemoveAll(r.dir)
}

// NewRedis starts a redis-server for one test and closes it at cleanup.
// The test fails (it is not skipped) when redis-server is missing: these
// are the integration tests, and CI installs it.
func NewRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	r, err := StartRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Client returns a go-redis client for r with the options every kmep
// binary uses (store.Dial: no retries, short timeouts), closed at cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	c, err := store.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix no other caller of r got: tests sharing one
// server isolate themselves with it.
func (r *Redis) Prefix() string { return fmt.Sprintf("t%d", r.ns.Add(1)) }

// Store returns a store on r with a prefix of its own (opts.Client and
// opts.Prefix are set here); the test fails if it cannot be built.
func (r *Redis) Store(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	opts.Client = r.Client(t)
	opts.Prefix = r.Prefix()
	st, err := store.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) { return rediserver.FreePort() }

// MainWithRedis is a test package's TestMain body for tests that share one
// redis-server: it starts it into *r, runs the tests, stops it and exits.
// Tests isolate themselves with key prefixes of their own.
func MainWithRedis(m *testing.M, opts RedisOptions, r **Redis) {
	var err error
	if *r, err = StartRedis(opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	(*r).Close()
	os.Exit(code)
}
