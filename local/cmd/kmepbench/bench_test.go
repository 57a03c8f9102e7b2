package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs every phase with tiny sizes against a real
// redis-server and checks that each one measured successful requests and
// no errors. It needs redis-server on PATH (CI installs it) and the go
// command (the startup phase builds the function binaries).
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end benchmark run")
	}
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH: install it (Debian package redis-server); CI does")
	}
	goPath, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is not on PATH; the startup phase builds the function binaries with it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, config{Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Conns: 8,
		Services: 50, Gen: genGo, GoPath: goPath, RedisServer: redisServer, StartupRuns: 2})
	if err != nil {
		t.Fatal(err)
	}

	phases := map[string]int{}
	for _, r := range rep.Results {
		phases[r.Phase]++
		if r.Requests-r.Errors <= 0 || r.Errors != 0 {
			t.Errorf("%s %s: %d requests, %d errors (first: %s)", r.Phase, r.Target, r.Requests, r.Errors, r.FirstError)
		}
		if r.RPS <= 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms {
			t.Errorf("%s %s: rps %v p50 %v p99 %v", r.Phase, r.Target, r.RPS, r.P50Ms, r.P99Ms)
		}
	}
	want := map[string]int{phaseRegister: 1, phaseDiscovery: 2, phaseToken: 1, phaseHeartbeat: 1}
	for p, n := range want {
		if phases[p] != n {
			t.Errorf("%d results of phase %s, want %d", phases[p], p, n)
		}
	}
	if d := rep.Discovery; d == nil || d.Ratio <= 0 || d.BodyBytes < 100 {
		t.Errorf("discovery comparison: %+v", d)
	}
	if len(rep.Startup) != 2 {
		t.Fatalf("%d startup results, want 2 (token, services)", len(rep.Startup))
	}
	for _, s := range rep.Startup {
		if s.Runs != 2 || s.Failures != 0 || s.MinMs <= 0 || s.SizeBytes <= 0 {
			t.Errorf("startup %s: %+v", s.Binary, s)
		}
	}
	if n := rep.failed(); n != 0 {
		t.Errorf("report counts %d failed measurements", n)
	}

	var md, js bytes.Buffer
	if err := writeMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"GOMAXPROCS", "| register |", "| discovery | baseline |", "| discovery | kmep |",
		"| token |", "| heartbeat |", "kmep/baseline", "| token |", "| services |"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md.String())
		}
	}
	if err := writeJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Errorf("JSON does not read back (%v):\n%s", err, js.String())
	}
}
