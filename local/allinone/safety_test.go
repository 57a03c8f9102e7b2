package allinone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/kit/server"
)

// started is one all-in-one started by start.
type started struct {
	base   string
	logs   *testenv.LogBuffer
	banner *testenv.LogBuffer
}

// start runs the all-in-one on dataDir with the logger every binary uses
// (server.NewLogger) until the test ends, and waits until it is ready.
func start(t *testing.T, dataDir string, cfg allinone.Config) started {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := started{base: "http://" + ln.Addr().String(), logs: &testenv.LogBuffer{}, banner: &testenv.LogBuffer{}}
	cfg.Listener, cfg.DataDir, cfg.DNSAddr = ln, dataDir, "127.0.0.1:0"
	cfg.Log = server.NewLogger(s.logs, "kmep", "info")
	cfg.Banner = s.banner
	ready := make(chan struct{})
	cfg.Ready = func(string) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- allinone.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("not ready:\n%s", s.logs)
	}
	return s
}

// logLines returns the JSON log lines whose msg is msg.
func logLines(t *testing.T, logs *testenv.LogBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// redisServersOn counts the redis-server processes working in dir/redis
// (redis-server chdirs into its --dir; it rewrites its command line).
func redisServersOn(t *testing.T, dir string) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Abs(filepath.Join(dir, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range procs {
		comm, err := os.ReadFile(filepath.Join(p, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
			continue // gone meanwhile, or another program
		}
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && cwd == want {
			n++
		}
	}
	return n
}

// A second start on a data directory in use fails at once, naming the
// holder's pid, and starts nothing: no second redis-server on the same
// data, not even a store log line.
func TestSecondStartOnOneDataDirFails(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH: the all-in-one would embed its store")
	}
	dir := t.TempDir()
	first := start(t, dir, allinone.Config{AdminToken: admin})
	if n := redisServersOn(t, dir); n != 1 {
		t.Fatalf("%d redis-servers on %s after the first start, want 1", n, dir)
	}
	pid, err := os.ReadFile(filepath.Join(dir, allinone.LockFile))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q (%v), want this process's pid %d", pid, err, os.Getpid())
	}

	logs := &testenv.LogBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = allinone.Run(ctx, allinone.Config{Addr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", DataDir: dir, AdminToken: admin,
		Log: server.NewLogger(logs, "kmep", "debug")})
	if !errors.Is(err, allinone.ErrDataDirInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Run: %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	if ctx.Err() != nil {
		t.Fatal("the second Run waited for the lock")
	}
	if logs.String() != "" {
		t.Errorf("the second Run started something before failing:\n%s", logs)
	}
	if n := redisServersOn(t, dir); n != 1 {
		t.Fatalf("%d redis-servers on %s after the second start, want 1", n, dir)
	}
	// The first platform still serves.
	res, err := http.Get(first.base + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first platform after the second start: %v %v", res, err)
	}
	res.Body.Close()
}

// The lock goes with the platform: a start after a clean stop succeeds.
func TestLockReleasedOnStop(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		logs := &testenv.LogBuffer{}
		done := make(chan error, 1)
		go func() {
			done <- allinone.Run(ctx, allinone.Config{Listener: ln, DNSAddr: "127.0.0.1:0", DataDir: dir, AdminToken: admin,
				NoRedisServer: true, Log: server.NewLogger(logs, "kmep", "info"), Ready: func(string) { cancel() }})
		}()
		if err := <-done; err != nil {
			t.Fatalf("start %d: %v\n%s", i+1, err, logs)
		}
		cancel()
	}
}

// The banner names the URL, the DNS address, where the admin token is, and
// whether Redis and S3 are embedded; the "ready" log line carries the same.
func TestBanner(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, allinone.Config{NoRedisServer: true})
	b := s.banner.String()
	tokenFile := filepath.Join(dir, "admin-token")
	for _, want := range []string{
		"kmep is up\n",
		"  URL          " + s.base + "\n",
		"  DNS          127.0.0.1:0 (udp and tcp)\n",
		"  admin token  in the file " + tokenFile + "\n",
		"  Redis        EMBEDDED in-process server (miniredis) at ",
		"  S3           embedded S3 server on disk under " + filepath.Join(dir, "s3") + " (set S3_ENDPOINT for a real one)\n",
		"  try          kmepctl --server " + s.base + " --token-file " + tokenFile + " list services\n",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("banner misses %q:\n%s", want, b)
		}
	}
	ready := logLines(t, s.logs, "ready")
	if len(ready) != 1 || ready[0]["url"] != s.base || ready[0]["adminToken"] != "in the file "+tokenFile ||
		!strings.HasPrefix(ready[0]["redis"].(string), "EMBEDDED") || !strings.HasPrefix(ready[0]["s3"].(string), "embedded") {
		t.Fatalf("ready log lines: %v", ready)
	}

	// With the admin token and the store from the environment.
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	s = start(t, t.TempDir(), allinone.Config{AdminToken: admin, RedisURL: r.URL()})
	for _, want := range []string{
		"  admin token  KMEP_ADMIN_TOKEN (set in the environment)\n",
		"  Redis        external Redis from REDIS_URL at " + r.Addr + "\n",
		"  try          kmepctl --server " + s.base + " list services\n",
	} {
		if !strings.Contains(s.banner.String(), want) {
			t.Errorf("banner misses %q:\n%s", want, s.banner)
		}
	}
	if strings.Contains(s.banner.String()+s.logs.String(), admin) {
		t.Error("the admin token itself is in the banner or the log")
	}
}

// Every request is one info line with its route template, status, duration
// (a string) and app; a refusal adds its reason; KMEP_ACCESS_LOG=false
// (NoAccessLog) turns the request lines off.
func TestAccessLogOfThePlatform(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	for _, off := range []bool{false, true} {
		s := start(t, t.TempDir(), allinone.Config{AdminToken: admin, RedisURL: r.URL(), NoAccessLog: off})
		c := client{t, s.base}
		res, b := c.do("GET", "/mep/mec_service_mgmt/v1/applications/app-9/services", "not-a-token", "")
		c.expect(res, b, http.StatusUnauthorized)
		lines := logLines(t, s.logs, "request")
		if off {
			if len(lines) != 0 {
				t.Fatalf("NoAccessLog: request lines %v", lines)
			}
			continue
		}
		if len(lines) != 1 {
			t.Fatalf("%d request lines, want 1:\n%s", len(lines), s.logs)
		}
		l := lines[0]
		d, _ := l["duration"].(string)
		if _, err := time.ParseDuration(d); err != nil || l["level"] != "INFO" || l["method"] != "GET" || l["status"] != float64(401) ||
			l["route"] != "/mep/mec_service_mgmt/v1/applications/{appInstanceId}/services" || l["appInstanceId"] != "app-9" {
			t.Errorf("request line %v", l)
		}
		refused := logLines(t, s.logs, "request refused")
		if len(refused) != 1 || refused[0]["level"] != "INFO" || refused[0]["reason"] == "" {
			t.Errorf("refusal lines %v, want one at INFO with a reason", refused)
		}
		if strings.Contains(s.logs.String(), "not-a-token") {
			t.Error("the bearer token is in the log")
		}
	}
}
