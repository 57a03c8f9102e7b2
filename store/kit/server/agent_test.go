package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/server"
)

func TestHealthAddr(t *testing.T) {
	tests := []struct {
		name, addr, port, want string
	}{
		{"KMEP_HEALTH_ADDR", "127.0.0.1:9000", "", "127.0.0.1:9000"},
		{"KMEP_HEALTH_ADDR wins over PORT", "127.0.0.1:9000", "8080", "127.0.0.1:9000"},
		{"PORT only", "", "8080", ":8080"},
		{"neither", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := server.HealthAddr(tc.addr, tc.port); got != tc.want {
				t.Errorf("HealthAddr(%q, %q) = %q, want %q", tc.addr, tc.port, got, tc.want)
			}
		})
	}
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(b)
}

// blockUntilDone is an agent's Run: it returns nil once its context ends.
func blockUntilDone(ctx context.Context) error { <-ctx.Done(); return nil }

// While the agent runs, /healthz answers and the rest goes to Handler (404
// without one); when the context ends RunAgent returns the agent's result
// with the port closed.
func TestRunAgentServesBesideTheAgent(t *testing.T) {
	metrics := http.NewServeMux()
	metrics.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) })
	tests := []struct {
		name        string
		handler     http.Handler
		metricsCode int
		metricsBody string
	}{
		{"with a handler", metrics, http.StatusOK, "up 1\n"},
		{"without a handler", nil, http.StatusNotFound, "404 page not found\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + ln.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			go func() {
				ran <- server.RunAgent(ctx, server.AgentOptions{Listener: ln, Handler: tc.handler, Log: quietLog()}, blockUntilDone)
			}()

			if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
				t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
			}
			if code, body := get(t, base+"/metrics"); code != tc.metricsCode || body != tc.metricsBody {
				t.Errorf("/metrics: %d %q, want %d %q", code, body, tc.metricsCode, tc.metricsBody)
			}
			cancel()
			if err := <-ran; err != nil {
				t.Fatalf("RunAgent: %v", err)
			}
			if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				c.Close()
				t.Fatal("still accepting after RunAgent returned")
			}
		})
	}
}

// An agent that ends on its own ends RunAgent with its error, and the HTTP
// server is stopped before RunAgent returns.
func TestRunAgentReturnsTheAgentsError(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		http bool
	}{
		{"with an HTTP port", true},
		{"without an HTTP port", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o server.AgentOptions
			var ln net.Listener
			if tc.http {
				var err error
				if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
				o.Listener = ln
			}
			o.Log = quietLog()
			fail := make(chan struct{})
			ran := make(chan error, 1)
			go func() {
				ran <- server.RunAgent(context.Background(), o, func(ctx context.Context) error {
					select {
					case <-fail:
						return boom
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			}()
			if tc.http {
				if code, _ := get(t, "http://"+ln.Addr().String()+"/healthz"); code != http.StatusOK {
					t.Errorf("/healthz: %d", code)
				}
			}
			close(fail)
			if err := <-ran; !errors.Is(err, boom) {
				t.Fatalf("RunAgent = %v, want %v", err, boom)
			}
			if tc.http {
				if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Fatal("still accepting after RunAgent returned")
				}
			}
		})
	}
}

// A health address that cannot be listened on stops the agent and is the
// error returned.
func TestRunAgentCannotListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	stopped := make(chan struct{})
	err = server.RunAgent(context.Background(), server.AgentOptions{HealthAddr: taken.Addr().String(), Log: quietLog()},
		func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "health server: listen "+taken.Addr().String()) {
		t.Fatalf("RunAgent = %v, want health server: listen %s: ... address already in use", err, taken.Addr())
	}
	select {
	case <-stopped:
	default:
		t.Fatal("RunAgent returned before the agent stopped")
	}
}

func quietLog() *slog.Logger { return server.NewLogger(io.Discard, "test", "error") }
