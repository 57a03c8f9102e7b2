package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/server"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serveRoutes runs server.Run with a mux of one templated route and returns its
// base URL; the server stops when the test ends.
func serveRoutes(t *testing.T, o server.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/applications/{appInstanceId}/things", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	})
	mux.HandleFunc("/v1/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	o.Listener, o.Handler = ln, mux
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- server.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func getWith(t *testing.T, url string, hdr ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

// Every request but /healthz is one info line naming the route template,
// the status, the duration as a string and the app; neither the query nor
// the Authorization header reaches the log.
func TestAccessLog(t *testing.T) {
	logs := &syncBuffer{}
	base := serveRoutes(t, server.Options{Log: server.NewLogger(logs, "test", "info")})
	const secret = "Bearer eyJ-secret-token"
	getWith(t, base+"/healthz")
	getWith(t, base+"/v1/applications/app-7/things?access_token=querysecret", "Authorization", secret)
	getWith(t, base+"/v1/ok")
	getWith(t, base+"/nowhere")

	lines := logs.lines(t, "request")
	if len(lines) != 3 {
		t.Fatalf("%d request lines, want 3 (no /healthz):\n%s", len(lines), logs)
	}
	for i, want := range []struct {
		route  string
		status float64
		app    any
	}{
		{"/v1/applications/{appInstanceId}/things", 403, "app-7"},
		{"/v1/ok", 200, nil},
		{server.UnmatchedRoute, 404, nil},
	} {
		l := lines[i]
		if l["level"] != "INFO" || l["method"] != "GET" || l["route"] != want.route || l["status"] != want.status || l["appInstanceId"] != want.app {
			t.Errorf("line %d = %v, want route %s status %v app %v at INFO", i, l, want.route, want.status, want.app)
		}
		d, ok := l["duration"].(string)
		if _, err := time.ParseDuration(d); !ok || err != nil {
			t.Errorf("line %d: duration %v (%T), want a duration string", i, l["duration"], l["duration"])
		}
	}
	if s := logs.String(); strings.Contains(s, "secret") {
		t.Errorf("the log holds a secret:\n%s", s)
	}
}

func TestAccessLogOff(t *testing.T) {
	logs := &syncBuffer{}
	base := serveRoutes(t, server.Options{Log: server.NewLogger(logs, "test", "info"), NoAccessLog: true})
	getWith(t, base+"/v1/ok")
	getWith(t, base+"/v1/applications/app-7/things")
	if n := len(logs.lines(t, "request")); n != 0 {
		t.Fatalf("NoAccessLog: %d request lines:\n%s", n, logs)
	}
	if n := len(logs.lines(t, "serving")); n != 1 {
		t.Fatalf("the logger logs nothing at all (%d serving lines):\n%s", n, logs)
	}
}

// NewLogger writes durations as strings, also inside groups and With.
func TestLoggerDurationsAsStrings(t *testing.T) {
	var b bytes.Buffer
	log := server.NewLogger(&b, "test", "info").With("every", 90*time.Second)
	log.Info("tick", "took", 1500*time.Millisecond, "n", 3, slog.Group("retry", "after", 250*time.Millisecond))
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	retry, _ := m["retry"].(map[string]any)
	if m["took"] != "1.5s" || m["every"] != "1m30s" || m["n"] != float64(3) || retry["after"] != "250ms" {
		t.Fatalf("log line %s: want took 1.5s, every 1m30s, n 3, retry.after 250ms", b.Bytes())
	}
}
