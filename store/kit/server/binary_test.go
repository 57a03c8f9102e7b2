package server_test

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/server"
)

// mainModeEnv tells the test binary, run again as a child, to be a kmep
// binary whose run behaves as the value says.
const mainModeEnv = "KMEP_SERVER_TEST_MAIN"

// TestMainChild is the child's body; it does nothing in a normal run.
func TestMainChild(t *testing.T) {
	mode := os.Getenv(mainModeEnv)
	if mode == "" {
		t.Skip("only run as the child of TestMainProcess")
	}
	type config struct{ server.Serve }
	os.Args = os.Args[:1] // the -test flags are not the binary's
	server.Main("testbin", func(ctx context.Context, log *slog.Logger, _ config) error {
		log.Debug("debug line")
		log.Info("ready")
		switch mode {
		case "fail":
			return errors.New("boom")
		case "wait":
			<-ctx.Done()
			log.Info("stopping")
		}
		return nil
	})
	os.Exit(0) // Main returned: run succeeded; skip the test framework's output.
}

// Main logs at KMEP_LOG_LEVEL with the component, ends the context on
// SIGTERM, and exits 1 with an "exit" line when run fails.
func TestMainProcess(t *testing.T) {
	tests := []struct {
		name, mode, level string
		env               []string
		signal            bool
		code              int
		want, dontWant    []string
	}{
		{name: "run fails", mode: "fail", code: 1,
			want:     []string{`"msg":"ready"`, `"component":"testbin"`, `"level":"ERROR","msg":"exit"`, `"err":"boom"`},
			dontWant: []string{"debug line"}},
		{name: "run succeeds", mode: "ok", code: 0, want: []string{`"msg":"ready"`}, dontWant: []string{`"msg":"exit"`}},
		{name: "debug level", mode: "ok", level: "debug", code: 0, want: []string{"debug line"}},
		{name: "warn level", mode: "ok", level: "warn", code: 0, dontWant: []string{"ready"}},
		{name: "SIGTERM ends the context", mode: "wait", signal: true, code: 0, want: []string{`"msg":"stopping"`}},
		{name: "trace settings it cannot honour", mode: "ok", code: 1,
			env:      []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"},
			want:     []string{`"level":"ERROR","msg":"exit"`, `OTEL_EXPORTER_OTLP_PROTOCOL: \"http/json\"`},
			dontWant: []string{`"msg":"ready"`}},
		{name: "exporting traces", mode: "ok", code: 0,
			env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_BSP_EXPORT_TIMEOUT=100"},
			want: []string{`"msg":"exporting traces over OTLP"`, `"protocol":"http/protobuf"`, `"msg":"ready"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
			// GORACE: a child built with -race would otherwise wait 1 s at exit.
			cmd.Env = append(os.Environ(), mainModeEnv+"="+tc.mode, "KMEP_LOG_LEVEL="+tc.level, "GORACE=atexit_sleep_ms=0")
			cmd.Env = append(cmd.Env, tc.env...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if tc.signal && strings.Contains(sc.Text(), `"msg":"ready"`) {
					if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
						t.Fatal(err)
					}
				}
			}
			err = cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stderr lacks %s:\n%s", w, out.String())
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("stderr has %s:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestEnv(t *testing.T) {
	const key = "KMEP_SERVER_TEST_VALUE"
	tests := []struct {
		name, value string
		set         bool
		str         string
		dur         time.Duration
		durErr      bool
		num         int
		numErr      bool
	}{
		{name: "unset", str: "def", dur: 5 * time.Second, num: 8},
		{name: "empty", set: true, value: "", str: "def", dur: 5 * time.Second, num: 8},
		{name: "duration", set: true, value: "250ms", str: "250ms", dur: 250 * time.Millisecond, numErr: true},
		{name: "integer", set: true, value: "3", str: "3", durErr: true, num: 3},
		{name: "zero", set: true, value: "0", str: "0", durErr: true, numErr: true},
		{name: "negative", set: true, value: "-1s", str: "-1s", durErr: true, numErr: true},
		{name: "junk", set: true, value: "soon", str: "soon", durErr: true, numErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set {
				t.Setenv(key, tc.value)
			} else {
				t.Setenv(key, "x") // restored after the test
				os.Unsetenv(key)
			}
			if got := server.Env(key, "def"); got != tc.str {
				t.Errorf("Env = %q, want %q", got, tc.str)
			}
			d, err := server.EnvDuration(key, 5*time.Second)
			if tc.durErr {
				if err == nil || !strings.HasPrefix(err.Error(), key+": want a positive duration like 5s") {
					t.Errorf("EnvDuration = %v, %v; want an error naming %s", d, err, key)
				}
			} else if err != nil || d != tc.dur {
				t.Errorf("EnvDuration = %v, %v; want %v", d, err, tc.dur)
			}
			n, err := server.EnvInt(key, 8)
			if tc.numErr {
				if err == nil || err.Error() != key+": want a positive integer" {
					t.Errorf("EnvInt = %d, %v; want an error naming %s", n, err, key)
				}
			} else if err != nil || n != tc.num {
				t.Errorf("EnvInt = %d, %v; want %d", n, err, tc.num)
			}
		})
	}
}
