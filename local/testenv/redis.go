// Package testenv starts the real servers kmep's tests run against (today a
// redis-server on a free loopback port) and cleans them up. It is the one
// shared harness: tests never start servers of their own.
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server child process on 127.0.0.1.
type Redis struct {
	Addr string
	dir  string
	port int
	cmd  *exec.Cmd
	aof  bool
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// AOF turns on the append-only file (so Restart keeps the data).
	// Zero value: no persistence at all.
	AOF bool
	// Dir holds the data; zero value: a fresh temporary directory.
	Dir string
}

// StartRedis starts redis-server (from PATH) and waits until it answers.
func StartRedis(opts RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (apt-get install redis-server): %w", err)
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kmep-redis-"); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{dir: dir, port: port, aof: opts.AOF, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	if err := r.start(bin); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(bin string) error {
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--logfile", filepath.Join(r.dir, "redis.log")}
	if r.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	r.cmd = exec.Command(bin, args...)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = r.cmd.Process.Kill()
			return fmt.Errorf("redis-server on %s did not answer: %s", r.Addr, r.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (r *Redis) logTail() string {
	f, err := os.Open(filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// URL is the redis:// URL of the server (REDIS_URL).
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Stop kills the server (SIGKILL: like a crash) and waits for it.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Restart stops the server and starts it again on the same port and data.
func (r *Redis) Restart() error {
	r.Stop()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	return r.start(bin)
}

// Close stops the server and removes its data.
func (r *Redis) Close() {
	r.Stop()
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

// Client returns a go-redis client for r, closed at cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
