package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
)

// buildAgent builds the binary into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mep-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kmep-io/kmep/longrunning/mepagent/cmd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// platform is a minimal Mp1 platform for the binary: it issues a token to
// any signed request, accepts registrations with a 1 s liveness interval
// and every heartbeat and deletion, and counts what it was asked.
type platform struct {
	mu                              sync.Mutex
	tokens, registers, beats, calls int
}

func (p *platform) counts() (tokens, registers, beats, calls int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens, p.registers, p.beats, p.calls
}

func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	svc := "/mep/mec_service_mgmt/v1/applications/app-1/services"
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "POST" && r.URL.Path == "/mep/token":
		if !strings.Contains(r.Header.Get("Authorization"), "Access=AKAPP") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p.tokens++
		_, _ = io.WriteString(w, `{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`)
	case r.Method == "POST" && r.URL.Path == svc:
		p.registers++
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"serInstanceId":"s1","serName":"camera","livenessInterval":1,`+
			`"_links":{"self":{"href":"`+svc+`/s1"},"liveness":{"href":"`+svc+`/s1/liveness"}}}`)
	case r.Method == "PATCH" && r.URL.Path == svc+"/s1/liveness":
		p.beats++
		_, _ = io.WriteString(w, `{"state":"ACTIVE"}`)
	case r.Method == "DELETE" && r.URL.Path == svc+"/s1":
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// agentEnv is a complete environment for the binary against base, with
// its API and health ports.
func agentEnv(t *testing.T, base string) (env []string, api, health string) {
	t.Helper()
	info := filepath.Join(t.TempDir(), "app_instance_info.yaml")
	if err := os.WriteFile(info, []byte("appInstanceId: app-1\nserviceInfoPosts:\n  - serName: camera\n    version: 1.0.0\n"+
		"    serializer: JSON\n    livenessInterval: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := make([]string, 2)
	for i := range ports {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return []string{"KMEP_URL=" + base, "AK=AKAPP", "SK=secret", "APPINSTID=app-1", "APP_INSTANCE_INFO=" + info,
		"MEP_AGENT_ADDR=" + ports[0], "KMEP_HEALTH_ADDR=" + ports[1], "KMEP_LOG_LEVEL=debug"}, ports[0], ports[1]
}

// --version and -h answer and exit 0, any other argument exits 2, and none
// of them starts the agent: the platform is never called, and nothing
// listens on the agent's ports, though its environment is complete.
func TestCommandLine(t *testing.T) {
	bin := buildAgent(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"version", []string{"--version"}, 0, []string{"mep-agent "}, ""},
		{"help", []string{"-h"}, 0, []string{"Usage: mep-agent", "KMEP_URL", "MEP_IP", "MEP_APIGW_PORT", "AK", "SK",
			"(unset: ak)", "APPINSTID", "APP_INSTANCE_INFO", "MEP_AGENT_ADDR", "127.0.0.1:8090", "MEP_AGENT_DEREGISTER",
			"KMEP_HEALTH_ADDR", "GET /metrics", "KMEP_LOG_LEVEL"}, ""},
		{"long help", []string{"--help"}, 0, []string{"Usage: mep-agent"}, ""},
		{"a bad flag", []string{"--port=1"}, 2, nil, `unexpected argument "--port=1"`},
		{"an argument", []string{"start"}, 2, nil, "Usage: mep-agent [--version | -h]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &platform{}
			srv := httptest.NewServer(p)
			defer srv.Close()
			env, api, health := agentEnv(t, srv.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatalf("%v did not exit: it started\nstderr: %s", tc.args, stderr.String())
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if tc.stdout == nil && stdout.Len() != 0 {
				t.Errorf("stdout: %s, want nothing", stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) || tc.stderr == "" && stderr.Len() != 0 {
				t.Errorf("stderr: %s, want %q", stderr.String(), tc.stderr)
			}
			if strings.Contains(stderr.String(), "starting") {
				t.Errorf("the agent started: %s", stderr.String())
			}
			if _, _, _, calls := p.counts(); calls != 0 {
				t.Errorf("the platform was called %d times: the agent started", calls)
			}
			for _, addr := range []string{api, health} {
				if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
					res.Body.Close()
					t.Errorf("%s answers: the agent started", addr)
				}
			}
		})
	}
	t.Run("the version is the build's", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if v := strings.TrimSpace(strings.TrimPrefix(string(out), "mep-agent ")); v == "" || strings.Contains(v, "\n") {
			t.Errorf("--version printed %q, want one line: mep-agent <version>", out)
		}
	})
}

// The agent serves GET /metrics (and /healthz) on KMEP_HEALTH_ADDR: after
// it got a token, registered its service and heartbeated it, its counters
// say so, by outcome, beside the Go runtime's.
func TestMetricsAfterRegistration(t *testing.T) {
	bin := buildAgent(t)
	p := &platform{}
	srv := httptest.NewServer(p)
	defer srv.Close()
	env, _, health := agentEnv(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = env
	logs := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cancel()
			<-exited
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		if tokens, registers, beats, _ := p.counts(); tokens >= 1 && registers >= 1 && beats >= 1 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the agent exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token, registration and heartbeat within 20 s\n%s", logs)
		}
	}
	if code, body := get(t, "http://"+health+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	code, body := get(t, "http://"+health+"/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	for _, w := range []string{
		`kmep_mepagent_token_fetches_total{outcome="ok"} 1`,
		`kmep_mepagent_token_fetches_total{outcome="failed"} 0`,
		`kmep_mepagent_token_fetches_total{outcome="refused"} 0`,
		`kmep_mepagent_registrations_total{outcome="ok"} 1`,
		`kmep_mepagent_registrations_total{outcome="failed"} 0`,
		`kmep_mepagent_heartbeats_total{outcome="ok"} `,
		`kmep_mepagent_heartbeats_total{outcome="lost"} 0`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	if strings.Contains(body, `kmep_mepagent_heartbeats_total{outcome="ok"} 0`) {
		t.Errorf("/metrics counts no accepted heartbeat:\n%s", body)
	}
	if strings.Contains(body, "secret") || strings.Contains(body, "tok-1") {
		t.Errorf("/metrics shows a credential")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}
