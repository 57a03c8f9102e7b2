// Package binaries_test runs kmep's binaries as processes, the way a
// cluster runs them.
package binaries_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
)

const module = "github.com/kmep-io/kmep/"

// Every kind of binary (a function, a trigger, two agents) answers GET
// /metrics on the port it already serves, with its own metrics beside the
// runtime's, and GET /healthz beside it.
func TestEachBinaryAnswersMetrics(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	for _, tc := range []struct {
		name, pkg string
		env       []string
		want      []string
	}{
		{"services", "functions/services/cmd", nil,
			[]string{"kmep_services_registrations_total 0", `kmep_services{state="ACTIVE"} 0`, "kmep_discovery_cache_staleness_seconds", "go_goroutines"}},
		{"notify", "triggers/notify/cmd", nil,
			[]string{"kmep_notify_events_total 0", `kmep_notify_deliveries_total{outcome="delivered"} 0`, "process_cpu_seconds_total"}},
		{"reaper", "longrunning/reaper/cmd", nil,
			[]string{"kmep_reaper_expiries_total 0", "kmep_reaper_lateness_seconds_count 0"}},
		{"relay", "longrunning/relay/cmd", []string{"K_SINK=http://127.0.0.1:9/"},
			[]string{"kmep_relay_published_total 0", "kmep_relay_publish_errors_total 0", "kmep_relay_lag_seconds_count 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, tc.name)
			if out, err := exec.Command("go", "build", "-o", bin, module+tc.pkg).CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", tc.pkg, err, out)
			}
			port := freePort(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append([]string{"PORT=" + strconv.Itoa(port), "REDIS_URL=" + r.URL(), "KMEP_LOG_LEVEL=warn"}, tc.env...)
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = cmd.Wait() }()
			base := "http://127.0.0.1:" + strconv.Itoa(port)
			deadline := time.Now().Add(20 * time.Second)
			for {
				if code, _ := get(base + "/healthz"); code == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not healthy:\n%s", tc.name, logs.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			code, body := get(base + "/metrics")
			if code != http.StatusOK {
				t.Fatalf("GET /metrics: %d %s", code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("/metrics lacks %q", w)
				}
			}
		})
	}
}

func get(url string) (int, string) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
