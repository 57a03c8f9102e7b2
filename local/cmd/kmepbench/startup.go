package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kmep-io/kmep/local/rediserver"
)

// startupOptions configure measureStartup.
type startupOptions struct {
	// GoPath is the go command. Required.
	GoPath string
	// Dir receives the binaries. Required.
	Dir string
	// Runs is how often each binary is started. Required (> 0).
	Runs int
	// RedisURL is the REDIS_URL the binaries get. Required.
	RedisURL string
	// Secrets are the keys the token binary gets.
	Secrets secrets
	// Log receives progress. Required.
	Log *slog.Logger
}

// functionBinary is a function's binary and the environment it needs
// besides PORT.
type functionBinary struct {
	name, pkg string
	env       []string
}

// healthTimeout bounds how long one start may take to answer /healthz.
const healthTimeout = 10 * time.Second

// measureStartup builds each function binary (stripped) and starts it
// o.Runs times, timing exec to the first 200 from /healthz.
func measureStartup(ctx context.Context, o startupOptions) ([]startupResult, error) {
	common := []string{"REDIS_URL=" + o.RedisURL, "KMEP_LOG_LEVEL=warn"}
	bins := []functionBinary{
		{name: "token", pkg: "github.com/kmep-io/kmep/functions/token/cmd", env: append(slices.Clone(common),
			"KMEP_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(o.Secrets.EncryptionKey),
			"KMEP_TOKEN_SIGNING_KEY="+string(o.Secrets.SigningKeyPEM),
			"KMEP_ADMIN_TOKEN="+o.Secrets.AdminToken)},
		{name: "services", pkg: "github.com/kmep-io/kmep/functions/services/cmd", env: common},
	}
	var out []startupResult
	for _, b := range bins {
		path := filepath.Join(o.Dir, b.name)
		o.Log.Info("building", "binary", b.name, "pkg", b.pkg)
		if err := build(ctx, o.GoPath, b.pkg, path); err != nil {
			return out, err
		}
		st, err := os.Stat(path)
		if err != nil {
			return out, err
		}
		r := startupResult{Binary: b.name, SizeBytes: st.Size()}
		var times []time.Duration
		for i := 0; i < o.Runs && ctx.Err() == nil; i++ {
			d, err := startOnce(ctx, path, b.env)
			if err != nil {
				r.Failures++
				if r.FirstError == "" {
					r.FirstError = err.Error()
				}
				o.Log.Warn("start failed", "binary", b.name, "run", i, "err", err)
				continue
			}
			times = append(times, d)
		}
		r.Runs = len(times)
		r.fill(times)
		o.Log.Info("started", "binary", b.name, "runs", r.Runs, "median_ms", r.MedianMs)
		out = append(out, r)
	}
	return out, ctx.Err()
}

// build runs go build -ldflags "-s -w" -o out pkg.
func build(ctx context.Context, goPath, pkg, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goPath, "build", "-ldflags", "-s -w", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, snippet(b))
	}
	return nil
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil // enough to explain a failure
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startOnce execs bin with env and PORT set to a free port, polls
// /healthz every millisecond until the first 200 and returns the time from
// just before exec to that answer. It stops the process with SIGTERM (and
// SIGKILL after 10 s) before it returns; an unclean exit is an error.
func startOnce(ctx context.Context, bin string, env []string) (time.Duration, error) {
	port, err := rediserver.FreePort()
	if err != nil {
		return 0, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	client := &http.Client{Timeout: 100 * time.Millisecond,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var logs lockedBuffer
	cmd := exec.Command(bin)
	cmd.Env = append(slices.Clone(env), "PORT="+strconv.Itoa(port)) // nothing inherited
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	limit := time.NewTimer(healthTimeout)
	defer limit.Stop()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec %s: %w", bin, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()

	var took time.Duration
	for {
		if healthy(client, url) {
			took = time.Since(t0)
			break
		}
		select {
		case <-tick.C:
		case <-done:
			return 0, fmt.Errorf("%s exited before answering /healthz (%v): %s", filepath.Base(bin), waitErr, snippet([]byte(logs.String())))
		case <-limit.C:
			stopProcess(cmd, done)
			return 0, fmt.Errorf("%s did not answer /healthz within %s: %s", filepath.Base(bin), healthTimeout, snippet([]byte(logs.String())))
		case <-ctx.Done():
			stopProcess(cmd, done)
			return 0, ctx.Err()
		}
	}
	client.CloseIdleConnections()
	if !stopProcess(cmd, done) {
		return took, fmt.Errorf("%s ignored SIGTERM for 10 s and was killed", filepath.Base(bin))
	}
	if waitErr != nil {
		return took, fmt.Errorf("%s exited uncleanly after SIGTERM (%v): %s", filepath.Base(bin), waitErr, snippet([]byte(logs.String())))
	}
	return took, nil
}

// healthy reports whether GET url answered 200.
func healthy(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stopProcess sends SIGTERM and waits for done, killing the process after
// 10 s. It reports whether the process stopped on SIGTERM.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) bool {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = cmd.Process.Kill()
	}
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}
