// Package rediserver runs a redis-server child process on a loopback port:
// the private store of the all-in-one platform and of the test harness.
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
		"--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--logfile", filepath.Join(s.opts.Dir, "redis.log")}
	if s.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
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
