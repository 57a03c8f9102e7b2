package reaper_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
)

// TestMeasureReaper measures the reaper binary against a redis-server of its
// own, and logs the figures (it asserts only correctness, never timings).
// It takes about a minute and a half, so it runs only on request:
//
//	KMEP_REAPER_MEASURE=1 go test -run Measure -v -count=1 -timeout 10m ./longrunning/reaper/
//
// Phases: (1) expiry latency with nothing else going on: 2,000 services with
// 1–3 s intervals stop heartbeating; latency is the Redis time of each
// STATE_CHANGED→SUSPENDED entry (its stream id) minus the deadline it acted
// on (last heartbeat + interval + grace, as the entry carries them).
// (2) 100,000 services with 10 s intervals heartbeat through store.Heartbeat
// from 8 goroutines at ~10,000/s, and the reaper process's CPU (utime+stime
// from /proc/<pid>/stat) is sampled over 20 s. (3) The latency of phase 1
// again, under that load. (4) The heartbeats stop: all 100,000 expire within
// 10 s (~10,000/s) and their latency is measured.
func TestMeasureReaper(t *testing.T) {
	if testing.Short() || os.Getenv("KMEP_REAPER_MEASURE") == "" {
		t.Skip("set KMEP_REAPER_MEASURE=1 to run the measurement")
	}
	const (
		services = 100_000
		interval = 10 * time.Second
		window   = 20 * time.Second
		expiring = 2000
	)
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	bin := buildReaper(t)
	rdb, err := store.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := store.New(store.Options{Client: rdb}) // the binary's default prefix
	if err != nil {
		t.Fatal(err)
	}
	tck := clockTicks(t)
	redisPID := redisServerPID(t, r.Addr)
	t.Logf("machine: %d CPUs, shared with other work; CLK_TCK %d", numCPU(), tck)

	// (1) Latency, idle.
	p := startProcess(t, bin, r.URL())
	expire(t, s, expiring, "idle", "latency, idle")
	p.stop(t)

	// (2) 100,000 services heartbeating; the reaper starts once every one
	// has heartbeaten once since its registration.
	began := time.Now()
	ids := register(t, s, services, "svc", func(int) int { return int(interval / time.Second) })
	t.Logf("registered %d services in %s", services, time.Since(began).Round(time.Millisecond))
	ctx, stopLoad := context.WithCancel(context.Background())
	load := startLoad(ctx, s, ids, interval, 8)
	<-load.firstRound
	p = startProcess(t, bin, r.URL())
	sp := newSuspensions(t, s)
	c := sampleCPU(t, tck, p.cmd.Process.Pid, redisPID)
	h0 := load.sent.Load()
	time.Sleep(window)
	hbRate := float64(load.sent.Load()-h0) / window.Seconds()
	c.report(t, "heartbeat load", fmt.Sprintf("%.0f heartbeats/s (target 10,000), heartbeat errors %d, max lag behind schedule %s",
		hbRate, load.errs.Load(), time.Duration(load.maxLag.Load()).Round(time.Millisecond)))
	sp.poll(t)
	if sp.total != 0 {
		t.Errorf("%d services suspended although they heartbeat (the load fell behind?)", sp.total)
	}

	// (3) Latency under that load.
	c = sampleCPU(t, tck, p.cmd.Process.Pid, redisPID)
	expire(t, s, expiring, "load", "latency, under heartbeat load")
	c.report(t, "expiring 2,000 under load", "")

	// (4) Every heartbeat stops: 100,000 expiries within 10 s.
	stopLoad()
	load.wg.Wait()
	c = sampleCPU(t, tck, p.cmd.Process.Pid, redisPID)
	sp = newSuspensions(t, s)
	sp.waitTotal(t, services, 2*interval)
	sp.exactlyOnce(t, ids)
	c.report(t, "mass expiry of 100,000", "")
	latencies(t, "latency, mass expiry (100,000 within 10 s)", sp)
	p.stop(t)
}

// expire registers n services with 1–3 s intervals that never heartbeat,
// waits for all their suspensions and logs the latency.
func expire(t *testing.T, s *store.Store, n int, prefix, what string) {
	t.Helper()
	sp := newSuspensions(t, s)
	ids := register(t, s, n, prefix, func(i int) int { return 1 + i%3 })
	sp.waitTotal(t, n, 30*time.Second)
	sp.exactlyOnce(t, ids)
	latencies(t, what, sp)
}

// latencies logs the distribution of the suspensions' lateness.
func latencies(t *testing.T, what string, sp *suspensions) {
	t.Helper()
	var ls []time.Duration
	for _, l := range sp.late {
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		t.Errorf("%s: no suspensions", what)
		return
	}
	slices.Sort(ls)
	q := func(p float64) time.Duration { return ls[min(len(ls)-1, int(p*float64(len(ls))))] }
	t.Logf("%s: n=%d min %s p50 %s p90 %s p99 %s max %s (target p99 <= 1s)",
		what, len(ls), ls[0], q(0.50), q(0.90), q(0.99), ls[len(ls)-1])
	if ls[0] < 0 {
		t.Errorf("%s: a service was suspended %s before its deadline", what, -ls[0])
	}
}

// heartbeatLoad sends one heartbeat per service per interval, spread evenly.
type heartbeatLoad struct {
	sent, errs atomic.Uint64
	maxLag     atomic.Int64 // nanoseconds behind schedule, the worst seen
	firstRound chan struct{}
	wg         sync.WaitGroup
}

func startLoad(ctx context.Context, s *store.Store, ids []string, interval time.Duration, workers int) *heartbeatLoad {
	l := &heartbeatLoad{firstRound: make(chan struct{})}
	var round sync.WaitGroup
	round.Add(workers)
	go func() { round.Wait(); close(l.firstRound) }()
	begin := time.Now()
	for w := range workers {
		var mine []string
		for i := w; i < len(ids); i += workers {
			mine = append(mine, ids[i])
		}
		step := interval / time.Duration(len(mine))
		l.wg.Go(func() {
			for r := 0; ; r++ {
				start := begin.Add(time.Duration(r) * interval)
				for j, id := range mine {
					due := start.Add(time.Duration(j) * step)
					if d := time.Until(due); d > 2*time.Millisecond {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					} else if lag := -d; int64(lag) > l.maxLag.Load() {
						l.maxLag.Store(int64(lag)) // racy max across workers: good enough for a figure
					}
					if ctx.Err() != nil {
						return
					}
					if _, err := s.Heartbeat(ctx, "app", id); err != nil {
						l.errs.Add(1)
					}
					l.sent.Add(1)
				}
				if r == 0 {
					round.Done()
				}
			}
		})
	}
	return l
}

// process is the reaper binary running.
type process struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func buildReaper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "reaper")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/kmep-io/kmep/longrunning/reaper/cmd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startProcess(t *testing.T, bin, redisURL string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), out: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "KMEP_LOG_LEVEL=warn", "KMEP_HEALTH_ADDR=", "PORT=")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("reaper exited: %v\n%s", err, p.out)
	}
	if strings.Contains(p.out.String(), `"level":"WARN"`) || strings.Contains(p.out.String(), `"level":"ERROR"`) {
		t.Logf("reaper log:\n%s", p.out)
	}
}

// cpuSample is CPU time of the reaper, Redis and this test process (the
// heartbeat driver) from a starting point.
type cpuSample struct {
	tck   int64
	pids  []int
	ticks []int64
	at    time.Time
}

func sampleCPU(t *testing.T, tck int64, reaperPID, redisPID int) cpuSample {
	c := cpuSample{tck: tck, pids: []int{reaperPID, redisPID, os.Getpid()}, at: time.Now()}
	for _, pid := range c.pids {
		c.ticks = append(c.ticks, procTicks(t, pid))
	}
	return c
}

func (c cpuSample) report(t *testing.T, what, extra string) {
	t.Helper()
	el := time.Since(c.at).Seconds()
	pct := make([]float64, len(c.pids))
	for i, pid := range c.pids {
		if pid == 0 {
			continue
		}
		pct[i] = float64(procTicks(t, pid)-c.ticks[i]) / float64(c.tck) / el * 100
	}
	rs := "n/a"
	if c.pids[1] != 0 {
		rs = fmt.Sprintf("%.1f%%", pct[1])
	}
	t.Logf("%s over %.1fs: reaper %.2f%% of one core (target <= 5%%); redis-server %s; test process (driver) %.1f%%. %s",
		what, el, pct[0], rs, pct[2], extra)
}

// procTicks is utime+stime of pid in clock ticks (0 for pid 0).
func procTicks(t *testing.T, pid int) int64 {
	t.Helper()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after "(comm)": state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func clockTicks(t *testing.T) int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil && n > 0 {
		return n
	}
	t.Log("getconf CLK_TCK failed: assuming 100")
	return 100
}

// redisServerPID finds the redis-server listening on addr (0 when it
// cannot tell). redis-server rewrites its command line to "redis-server
// host:port".
func redisServerPID(t *testing.T, addr string) int {
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.TrimSpace(string(comm)) == "redis-server" &&
			(bytes.Contains(cl, []byte(addr)) || bytes.Contains(cl, []byte("--port\x00"+port+"\x00"))) {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	t.Log("redis-server pid not found: its CPU is not reported")
	return 0
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
