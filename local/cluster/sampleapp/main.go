// Command sampleapp is the local cluster's test app, one small binary
// (built with ko into the loopback registry) for the pods make e2e needs:
//
//	sampleapp [serve]      an HTTP server on $PORT (8080): GET / says hello
//	                       with the pod's name; GET /healthz; POST /notify
//	                       records a notification (a MEC subscriber's
//	                       callback) with its traceparent and tracestate
//	                       headers, GET /received lists them, POST
//	                       /fail?for=30s answers 503 to /notify for a while
//	                       (a subscriber that is down)
//	sampleapp dig NAME SERVER:PORT
//	                       one DNS A query; prints the addresses, exits 1
//	                       on an error or an empty answer
//	sampleapp get URL      one GET; prints the status and the body, exits
//	                       1 on an error or a status other than 2xx
//
// It keeps what it receives in memory only: the tests read it back over
// HTTP while the pod lives.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch {
	case cmd == "serve" && len(args) == 0:
		err = serve()
	case cmd == "dig" && len(args) == 2:
		err = dig(args[0], args[1])
	case cmd == "get" && len(args) == 1:
		err = get(args[0])
	default:
		err = errors.New("usage: sampleapp [serve] | dig NAME SERVER:PORT | get URL")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampleapp:", err)
		os.Exit(1)
	}
}

// notification is one POST /notify as received, with the W3C trace
// context headers it came with.
type notification struct {
	At          time.Time       `json:"at"`
	Body        json.RawMessage `json:"body"`
	TraceParent string          `json:"traceparent,omitempty"`
	TraceState  string          `json:"tracestate,omitempty"`
}

// receiver keeps the notifications and the failure window.
type receiver struct {
	mu        sync.Mutex
	got       []notification
	failUntil time.Time
}

func serve() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	rc := &receiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /notify", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !json.Valid(body) {
			http.Error(w, "a JSON body, please", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if time.Now().Before(rc.failUntil) {
			http.Error(w, "down for a while", http.StatusServiceUnavailable)
			return
		}
		rc.got = append(rc.got, notification{At: time.Now(), Body: body,
			TraceParent: r.Header.Get("traceparent"), TraceState: r.Header.Get("tracestate")})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(append([]notification{}, rc.got...))
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("for"))
		if err != nil || d < 0 || d > time.Hour {
			http.Error(w, "for: a duration up to 1h", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.failUntil = time.Now().Add(d)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

func dig(name, server string) error {
	if _, _, err := net.SplitHostPort(server); err != nil {
		return fmt.Errorf("server %q: %w", server, err)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.Exchange(m, server)
	if err != nil {
		return err
	}
	var n int
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			fmt.Println(a.A)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%s: no A record (%s)", name, dns.RcodeToString[in.Rcode])
	}
	return nil
}

func get(url string) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("%d\n%s", resp.StatusCode, body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
