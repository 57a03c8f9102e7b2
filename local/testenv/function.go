package testenv

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/server"
)

// Function is a function's binary run inside the test's process as its
// main runs it: its run function (the one server.Main calls) with the
// config server.Parse reads from the environment, on a redis-server of its
// own, where app tokens that Token issues verify because their signing
// key's JWKS is published there, as the token function publishes it.
type Function struct {
	// URL is the function's base URL, http://127.0.0.1:PORT.
	URL string
	// Store is a store on the function's Redis with the binary's default
	// key prefix: the test seeds and checks through it.
	Store  *store.Store
	signer *auth.Signer
}

// FunctionOptions configure NewFunction.
type FunctionOptions struct {
	// Env is set in the environment (t.Setenv) before the config is read,
	// besides PORT (a free port) and REDIS_URL (the function's Redis).
	// Zero value: nothing more.
	Env map[string]string
	// Ready is a path whose GET with an app token answers anything but
	// 503 once the binary's Verifier has its keys and revocations:
	// NewFunction waits for it. Zero value: only GET /healthz is awaited.
	Ready string
}

// NewFunction runs run (a binary's run) until the test ends, then stops
// it and fails the test if it returned an error. It returns once the
// function answers GET /healthz (and opts.Ready); it fails the test when
// the config does not parse or run returns first.
func NewFunction[C any](t *testing.T, opts FunctionOptions, run func(context.Context, *slog.Logger, C) error) *Function {
	t.Helper()
	r := NewRedis(t, RedisOptions{})
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORT", strconv.Itoa(port))
	t.Setenv("REDIS_URL", r.URL())
	for k, v := range opts.Env {
		t.Setenv(k, v)
	}
	st, closeStore, err := store.Open(r.URL(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeStore() })
	pem, err := auth.GenerateSigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.ParseSigningKeys(pem)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner(keys, auth.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PublishJWKS(context.Background(), signer.JWKS()); err != nil {
		t.Fatal(err)
	}
	f := &Function{URL: "http://127.0.0.1:" + strconv.Itoa(port), Store: st, signer: signer}

	var cfg C
	if err := server.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	logs := &LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(slog.NewTextHandler(logs, nil)), cfg) }()
	stopped := false
	t.Cleanup(func() {
		cancel()
		if !stopped {
			if err := <-done; err != nil {
				t.Errorf("run: %v\n%s", err, logs)
			}
		}
	})
	probe := f.Token(t, "ready-probe")
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range []struct{ path, token string }{{"/healthz", ""}, {opts.Ready, probe}} {
		if p.path == "" {
			continue
		}
		for {
			if code, _ := f.get(p.path, p.token); code != 0 && code != http.StatusServiceUnavailable {
				break
			}
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("run returned before %s answered: %v\n%s", p.path, err, logs)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s did not answer within 20 s\n%s", p.path, logs)
			}
		}
	}
	return f
}

// Token returns a token for app instance app, issued as the token
// function issues it (generation 0: the app's tokens were never revoked).
func (f *Function) Token(t testing.TB, app string) string {
	t.Helper()
	tok, _, err := f.signer.Issue(app, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Do sends one request to the function with token as its bearer (none
// when empty) and body as JSON (none when empty), and returns the status
// and body of the answer.
func (f *Function) Do(t testing.TB, method, path, token, body string) (int, string) {
	t.Helper()
	code, b := Call(t, method, f.URL+path, token, body)
	return code, string(b)
}

// Call sends one request to url with token as its bearer (none when
// empty) and body as JSON (none when empty), and returns the status and
// body of the answer; a request that gets no answer fails t.
func Call(t testing.TB, method, url, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// get is Do without a test to fail: 0 when the function does not answer.
func (f *Function) get(path, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, f.URL+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
