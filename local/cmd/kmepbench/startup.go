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
	// Secrets are the keys the binaries get.
	Secrets secrets
	// S3 is the object store packages and instantiate get. Zero Endpoint:
	// those two are not measured (packages checks its bucket before it
	// serves, so a made-up endpoint would time the S3 client's retries).
	S3 s3Settings
	// Binaries names the binaries to measure (see functionBinaries). Zero
	// value: token and services.
	Binaries []string
	// Log receives progress. Required.
	Log *slog.Logger
}

// s3Settings are the S3_* settings of packages and instantiate.
type s3Settings struct {
	Endpoint, AccessKey, SecretKey string
}

// functionBinary is a function's binary and the environment it needs
// besides PORT.
type functionBinary struct {
	name, pkg string
	env       []string
	// heavy: the binary links Helm and client-go (no size goal).
	heavy bool
	// needsS3: not measured without an S3 endpoint.
	needsS3 bool
}

// healthTimeout bounds how long one start may take to answer /healthz.
const healthTimeout = 10 * time.Second

// goalBinaryBytes is the size goal of a function binary that links
// neither Helm nor client-go.
const goalBinaryBytes = 25 << 20

// functionBinaries lists every HTTP function's binary (the Knative
// Services of manifests/) with the environment it needs to start.
func functionBinaries(o startupOptions) []functionBinary {
	common := []string{"REDIS_URL=" + o.RedisURL, "KMEP_LOG_LEVEL=warn"}
	with := func(extra ...string) []string { return append(slices.Clone(common), extra...) }
	enc := "KMEP_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(o.Secrets.EncryptionKey)
	admin := "KMEP_ADMIN_TOKEN=" + o.Secrets.AdminToken
	s3 := []string{"S3_ENDPOINT=" + o.S3.Endpoint, "S3_ACCESS_KEY=" + o.S3.AccessKey, "S3_SECRET_KEY=" + o.S3.SecretKey}
	const m = "github.com/kmep-io/kmep/"
	return []functionBinary{
		{name: "token", pkg: m + "functions/token/cmd", env: with(enc, admin, "KMEP_TOKEN_SIGNING_KEY="+string(o.Secrets.SigningKeyPEM))},
		{name: "services", pkg: m + "functions/services/cmd", env: common},
		{name: "subscriptions", pkg: m + "functions/subscriptions/cmd", env: common},
		{name: "appsupport", pkg: m + "functions/appsupport/cmd", env: common},
		{name: "lcm", pkg: m + "functions/lcm/cmd", env: with(admin)},
		{name: "packages", pkg: m + "functions/packages/cmd", env: with(append([]string{enc, admin}, s3...)...), needsS3: true},
		{name: "instantiate", pkg: m + "functions/instantiate/cmd", env: with(append([]string{enc, admin}, s3...)...), needsS3: true, heavy: true},
		{name: "notify", pkg: m + "triggers/notify/cmd", env: common},
		{name: "deadletter", pkg: m + "triggers/deadletter/cmd", env: common},
	}
}

// measureStartup builds each function binary as .ko.yaml does (static:
// CGO_ENABLED=0, -trimpath, stripped: -ldflags "-s -w") and starts it
// o.Runs times, timing exec to the first 200 from /healthz.
func measureStartup(ctx context.Context, o startupOptions) ([]startupResult, error) {
	want := o.Binaries
	if len(want) == 0 {
		want = []string{"token", "services"}
	}
	var bins []functionBinary
	for _, b := range functionBinaries(o) {
		if slices.Contains(want, b.name) && (!b.needsS3 || o.S3.Endpoint != "") {
			bins = append(bins, b)
		}
	}
	var out []startupResult
	for _, b := range bins {
		r, err := startupOf(ctx, o, b)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, ctx.Err()
}

// startupOf builds b and starts it o.Runs times.
func startupOf(ctx context.Context, o startupOptions, b functionBinary) (startupResult, error) {
	path := filepath.Join(o.Dir, b.name)
	o.Log.Info("building", "binary", b.name, "pkg", b.pkg)
	if err := build(ctx, o.GoPath, b.pkg, path); err != nil {
		return startupResult{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return startupResult{}, err
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
	o.Log.Info("started", "binary", b.name, "runs", r.Runs, "median_ms", r.MedianMs, "bytes", r.SizeBytes)
	return r, nil
}

// build builds pkg into out as a static, stripped linux binary with
// reproducible paths: the flags of .ko.yaml.
func build(ctx context.Context, goPath, pkg, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goPath, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
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
