package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/rediserver"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/server"
)

// Phase names, in the order they run.
const (
	phaseRegister  = "register"
	phaseDiscovery = "discovery"
	phaseToken     = "token"
	phaseHeartbeat = "heartbeat"
	phaseStartup   = "startup"
)

var allPhases = []string{phaseRegister, phaseDiscovery, phaseToken, phaseHeartbeat, phaseStartup}

// Load generators.
const (
	genAuto = "auto"
	genGo   = "go"
	genWrk  = "wrk"
)

// config is what one benchmark run does. main fills it from the flags.
type config struct {
	// Duration is how long each timed phase measures. Required (> 0).
	Duration time.Duration
	// Warmup runs before each timed measurement, unrecorded. Zero value:
	// no warm-up.
	Warmup time.Duration
	// Conns is the number of concurrent keep-alive connections. Required.
	Conns int
	// Services is how many services are registered. Required.
	Services int
	// Apps is how many app instances own the services. Zero value: 10.
	Apps int
	// Gen is genAuto, genGo or genWrk; it picks the discovery phase's load
	// generator (the other phases sign or vary every request and always use
	// the Go generator). Zero value: genAuto.
	Gen string
	// Phases selects the phases to run (names from allPhases). Zero value:
	// all of them.
	Phases map[string]bool
	// WrkPath is the wrk binary. Zero value: wrk is not available.
	WrkPath string
	// GoPath is the go command that builds the function binaries. Required
	// for the startup phase.
	GoPath string
	// RedisServer is the redis-server binary. Zero value: looked up on PATH.
	RedisServer string
	// StartupRuns is how often each function binary is started. Zero
	// value: 10.
	StartupRuns int
	// Log receives progress. Zero value: discarded.
	Log *slog.Logger
	// PlatformLog is the platform's own logger. Zero value: discarded.
	PlatformLog *slog.Logger
}

// Defaults of the flags.
const (
	defaultDuration = 10 * time.Second
	defaultWarmup   = time.Second
)

// seedTimeout bounds the registration phase in time (it is bounded in
// count by config.Services).
const seedTimeout = 5 * time.Minute

func (c *config) fill() error {
	if c.Apps == 0 {
		c.Apps = 10
	}
	if c.Gen == "" {
		c.Gen = genAuto
	}
	if c.StartupRuns == 0 {
		c.StartupRuns = 10
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.PlatformLog == nil {
		c.PlatformLog = slog.New(slog.DiscardHandler)
	}
	if len(c.Phases) == 0 {
		c.Phases = map[string]bool{}
		for _, p := range allPhases {
			c.Phases[p] = true
		}
	}
	switch {
	case c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.Warmup < 0:
		return errors.New("warm-up must not be negative")
	case c.Conns <= 0:
		return errors.New("conns must be positive")
	case c.Services <= 0:
		return errors.New("services must be positive")
	case c.Apps < 0:
		return errors.New("apps must not be negative")
	case c.StartupRuns < 0:
		return errors.New("startup runs must not be negative")
	}
	switch c.Gen {
	case genAuto:
		c.Gen = genGo
		if c.WrkPath != "" {
			c.Gen = genWrk
		}
	case genWrk:
		if c.WrkPath == "" {
			return errors.New("-gen wrk: wrk is not on PATH (Debian package wrk)")
		}
	case genGo:
	default:
		return fmt.Errorf("generator %q: want go, wrk or auto", c.Gen)
	}
	if c.Phases[phaseStartup] && c.GoPath == "" {
		return errors.New("the startup phase builds the function binaries and needs the go command on PATH")
	}
	return nil
}

// parsePhases reads a comma-separated list of phase names.
func parsePhases(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if p == "all" {
			for _, q := range allPhases {
				out[q] = true
			}
			continue
		}
		known := false
		for _, q := range allPhases {
			known = known || p == q
		}
		if !known {
			return nil, fmt.Errorf("unknown phase %q: want a comma list of %s", p, strings.Join(allPhases, ", "))
		}
		out[p] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no phases: want a comma list of %s", strings.Join(allPhases, ", "))
	}
	return out, nil
}

// secrets are the platform's keys, shared by the all-in-one platform and
// the function binaries the startup phase runs, as one deployment would.
type secrets struct {
	AdminToken    string
	EncryptionKey []byte
	SigningKeyPEM []byte
}

func newSecrets() (secrets, error) {
	var s secrets
	tok := make([]byte, 32)
	s.EncryptionKey = make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return s, err
	}
	if _, err := rand.Read(s.EncryptionKey); err != nil {
		return s, err
	}
	s.AdminToken = base64.RawURLEncoding.EncodeToString(tok)
	pem, err := auth.GenerateSigningKeyPEM()
	if err != nil {
		return s, err
	}
	s.SigningKeyPEM = pem
	return s, nil
}

// run runs the selected phases against a platform it starts, and stops
// everything it started before it returns.
func run(ctx context.Context, cfg config) (*report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	log := cfg.Log
	rep := &report{Machine: machineFacts(cfg), Settings: settings{Conns: cfg.Conns, DurationS: cfg.Duration.Seconds(),
		WarmupS: cfg.Warmup.Seconds(), Services: cfg.Services, Apps: cfg.Apps, Generator: cfg.Gen}}
	for _, p := range allPhases {
		if cfg.Phases[p] {
			rep.Settings.Phases = append(rep.Settings.Phases, p)
		}
	}

	dir, err := os.MkdirTemp("", "kmepbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sec, err := newSecrets()
	if err != nil {
		return nil, fmt.Errorf("platform secrets: %w", err)
	}

	log.Info("starting redis-server", "dir", filepath.Join(dir, "redis"))
	rs, err := rediserver.Start(rediserver.Options{Dir: filepath.Join(dir, "redis"), AOF: true, Binary: cfg.RedisServer})
	if err != nil {
		return nil, err
	}
	defer rs.Stop()

	if cfg.Phases[phaseRegister] || cfg.Phases[phaseDiscovery] || cfg.Phases[phaseToken] || cfg.Phases[phaseHeartbeat] {
		pl, err := startPlatform(ctx, cfg, filepath.Join(dir, "kmep"), rs.URL(), sec)
		if err != nil {
			return nil, err
		}
		err = runHTTPPhases(ctx, cfg, pl.url, sec, rep)
		if serr := pl.stop(); serr != nil {
			log.Warn("platform stop", "err", serr)
		}
		if err != nil {
			return rep, err
		}
	}
	if cfg.Phases[phaseStartup] {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Startup, err = measureStartup(ctx, startupOptions{GoPath: cfg.GoPath, Dir: filepath.Join(dir, "bin"),
			Runs: cfg.StartupRuns, RedisURL: rs.URL(), Secrets: sec, Log: log})
		if err != nil {
			return rep, err
		}
	}
	return rep, ctx.Err()
}

// runningServer is an HTTP server this process started on loopback.
type runningServer struct {
	url  string
	stop func() error
}

// startServer runs serve(ctx, listener) on a fresh 127.0.0.1 listener
// until stop is called, and waits for ready (nil: ready once listening).
func startServer(ctx context.Context, name string, serve func(ctx context.Context, ln net.Listener, ready func()) error) (*runningServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", name, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	readyc := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- serve(sctx, ln, func() { close(readyc) }) }()
	stop := func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s did not stop within 30 s", name)
		}
	}
	select {
	case <-readyc:
	case err := <-errc:
		cancel()
		ln.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	case <-time.After(30 * time.Second):
		_ = stop()
		return nil, fmt.Errorf("%s did not start within 30 s", name)
	}
	return &runningServer{url: "http://" + ln.Addr().String(), stop: stop}, nil
}

// startPlatform runs the all-in-one platform in this process.
func startPlatform(ctx context.Context, cfg config, dataDir, redisURL string, sec secrets) (*runningServer, error) {
	cfg.Log.Info("starting kmep (all-in-one, in process)", "redis", redisURL)
	return startServer(ctx, "kmep", func(ctx context.Context, ln net.Listener, ready func()) error {
		return allinone.Run(ctx, allinone.Config{Listener: ln, DataDir: dataDir, RedisURL: redisURL, DNSAddr: "127.0.0.1:0",
			AdminToken: sec.AdminToken, EncryptionKey: sec.EncryptionKey, SigningKeyPEM: sec.SigningKeyPEM,
			Log: cfg.PlatformLog, Ready: func(string) { ready() }})
	})
}

// startBaseline runs the bare net/http server discovery is compared with:
// it answers every request with body as application/json, and is served
// the way kmep's functions are (server.Run on a loopback listener, in
// this process).
func startBaseline(ctx context.Context, cfg config, body []byte) (*runningServer, error) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return startServer(ctx, "baseline", func(ctx context.Context, ln net.Listener, ready func()) error {
		ready()
		return server.Run(ctx, server.Options{Listener: ln, Handler: h, Log: cfg.PlatformLog, DrainTimeout: 5 * time.Second})
	})
}

// machineFacts describes where the benchmark ran.
func machineFacts(cfg config) machine {
	m := machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	if cfg.WrkPath != "" {
		m.Wrk = wrkVersion(cfg.WrkPath)
	}
	bin := cfg.RedisServer
	if bin == "" {
		bin = "redis-server"
	}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
	}
	return m
}
