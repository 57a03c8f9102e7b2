// Package rediserver runs a redis-server child process on a loopback port:
// the private store of the all-in-one platform and of the test harness,
// which also runs replicas and Redis Sentinels with it.
package rediserver

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
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure Start.
type Options struct {
	// Dir holds the data and the log. Required.
	Dir string
	// AOF turns on the append-only file (appendfsync everysec).
	// Zero value: no persistence.
	AOF bool
	// Port to listen on. Zero value: a free port.
	Port int
	// Binary is the redis-server path. Zero value: looked up on PATH.
	Binary string
	// ReplicaOf ("host:port") starts the server as a replica of that
	// primary. Zero value: a primary.
	ReplicaOf string
	// Sentinel, when set, runs a Redis Sentinel (redis-server --sentinel)
	// instead of a data server; AOF and ReplicaOf do not apply to it.
	Sentinel *SentinelConfig
}

// SentinelConfig is what a Sentinel watches. Sentinel keeps its state in
// sentinel.conf under Dir (it rewrites the file), so a restarted Sentinel
// remembers what it learnt.
type SentinelConfig struct {
	// Master is the name clients ask for. Required.
	Master string
	// Primary is the primary's host:port at start. Required.
	Primary string
	// Quorum is how many Sentinels must agree the primary is down. Zero
	// value: 2.
	Quorum int
	// DownAfter is how long the primary may not answer before a Sentinel
	// deems it down. Zero value: 1 s.
	DownAfter time.Duration
	// FailoverTimeout is Sentinel's failover-timeout. Zero value: 5 s.
	FailoverTimeout time.Duration
}

// Server is a running redis-server child.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	opts Options
	cmd  *exec.Cmd
}

// Start starts redis-server and waits until it answers PING. The child gets
// SIGKILL if this process dies first.
func Start(opts Options) (*Server, error) {
	if opts.Binary == "" {
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, fmt.Errorf("redis-server not on PATH: %w", err)
		}
		opts.Binary = bin
	}
	dir, err := filepath.Abs(opts.Dir) // redis-server chdirs into --dir
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	if opts.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		opts.Port = p
	}
	s := &Server{opts: opts, Addr: "127.0.0.1:" + strconv.Itoa(opts.Port)}
	return s, s.start()
}

func (s *Server) start() error {
	args := []string{"--port", strconv.Itoa(s.opts.Port), "--bind", "127.0.0.1", "--dir", s.opts.Dir,
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--logfile", filepath.Join(s.opts.Dir, "redis.log")}
	switch {
	case s.opts.Sentinel != nil:
		conf, err := s.sentinelConf()
		if err != nil {
			return err
		}
		args = append([]string{conf, "--sentinel"}, args...)
	case s.opts.AOF:
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
	default:
		args = append(args, "--save", "", "--appendonly", "no")
	}
	if s.opts.ReplicaOf != "" && s.opts.Sentinel == nil {
		host, port, err := net.SplitHostPort(s.opts.ReplicaOf)
		if err != nil {
			return fmt.Errorf("ReplicaOf %q: %w", s.opts.ReplicaOf, err)
		}
		args = append(args, "--replicaof", host, port)
	}
	s.cmd = exec.Command(s.opts.Binary, args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
			return fmt.Errorf("redis-server on %s did not answer: %s", s.Addr, s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sentinelConf writes sentinel.conf on the first start (a restart keeps
// what Sentinel rewrote into it) and returns its path.
func (s *Server) sentinelConf() (string, error) {
	p := filepath.Join(s.opts.Dir, "sentinel.conf")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	c := *s.opts.Sentinel
	if c.Master == "" || c.Primary == "" {
		return "", fmt.Errorf("sentinel: Master and Primary are required")
	}
	host, port, err := net.SplitHostPort(c.Primary)
	if err != nil {
		return "", fmt.Errorf("sentinel primary %q: %w", c.Primary, err)
	}
	if c.Quorum == 0 {
		c.Quorum = 2
	}
	if c.DownAfter == 0 {
		c.DownAfter = time.Second
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = 5 * time.Second
	}
	conf := fmt.Sprintf("sentinel monitor %s %s %s %d\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s %d\n"+
		"sentinel parallel-syncs %s 1\n",
		c.Master, host, port, c.Quorum,
		c.Master, c.DownAfter.Milliseconds(),
		c.Master, c.FailoverTimeout.Milliseconds(),
		c.Master)
	return p, os.WriteFile(p, []byte(conf), 0o600)
}

func (s *Server) logTail() string {
	f, err := os.Open(filepath.Join(s.opts.Dir, "redis.log"))
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

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Kill stops the server at once (SIGKILL, like a crash) and waits for it.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Stop asks the server to exit (SIGTERM: it flushes its AOF) and waits up
// to 5 s before killing it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Stopped reports whether the server was killed or stopped (and not
// restarted since).
func (s *Server) Stopped() bool { return s.cmd == nil }

// Pause stops the server process (SIGSTOP) without closing its sockets:
// clients connect and send, and nothing answers until Resume, as in a stall
// (a long fork, a swapped-out host, a frozen VM).
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT); it then serves what was sent
// to it meanwhile.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return fmt.Errorf("redis-server on %s is not running", s.Addr)
	}
	return syscall.Kill(s.cmd.Process.Pid, sig)
}

// Restart kills the server and starts it again on the same port and data.
func (s *Server) Restart() error {
	s.Kill()
	return s.start()
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
