package auth_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/server"
)

// platform is one Redis shared by a writer (what the token and lcm
// functions do) and two instances of a function, each with its own Redis
// client and Verifier following the revocations, behind its own real HTTP
// server.
type platform struct {
	redis     *testenv.Redis
	st        *store.Store
	signer    *auth.Signer
	instances []*httptest.Server
	verifiers []*auth.Verifier
	// open is another store over the same keys, with a client of its own.
	open func() *store.Store
}

func newPlatform(tb testing.TB, opts testenv.RedisOptions) *platform {
	tb.Helper()
	r := testenv.NewRedis(tb, opts)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	prefix := r.Prefix()
	open := func() *store.Store {
		st, err := store.New(store.Options{Client: r.Client(tb), Prefix: prefix, EncryptionKey: key})
		if err != nil {
			tb.Fatal(err)
		}
		return st
	}
	p := &platform{redis: r, st: open(), signer: newSigner(tb, auth.SignerOptions{}, newKey(tb)), open: open}
	if err := p.st.PublishJWKS(context.Background(), p.signer.JWKS()); err != nil {
		tb.Fatal(err)
	}
	for range 2 {
		st := open()
		v := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = v.Run(ctx) }()
		tb.Cleanup(func() { cancel(); <-done })
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := v.App(r); err != nil {
				problem.Write(nil, w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		tb.Cleanup(srv.Close)
		p.instances = append(p.instances, srv)
		p.verifiers = append(p.verifiers, v)
	}
	return p
}

// provision gives app the AK ak and returns a token issued as the token
// function issues it: with the generation read with the credential.
func (p *platform) provision(tb testing.TB, app, ak string) string {
	tb.Helper()
	ctx := context.Background()
	if _, err := p.st.PutAppConf(ctx, store.AppConf{AppInstanceID: app, AccessKeyID: ak, SecretKey: []byte("secret-" + ak)}); err != nil {
		tb.Fatal(err)
	}
	c, err := p.st.CredentialByAK(ctx, ak)
	if err != nil {
		tb.Fatal(err)
	}
	tok, _, err := p.signer.IssueGeneration(app, c.Generation, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// statusOf is what instance i answers to tok.
func (p *platform) statusOf(i int, tok string) (int, error) {
	req, _ := http.NewRequest("GET", p.instances[i].URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := p.instances[i].Client().Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// status is statusOf on the test's goroutine.
func (p *platform) status(tb testing.TB, i int, tok string) int {
	tb.Helper()
	code, err := p.statusOf(i, tok)
	if err != nil {
		tb.Fatal(err)
	}
	return code
}

// revocationDelays provisions rounds apps, and for each: checks that both
// instances accept its token, revokes it (deleting the credentials, giving
// another AK, or purging the app, in turn) and measures, on both instances
// at once, the time from the start of the revoking call to the first 401
// over HTTP. It also counts the 503s (an instance that had not followed
// the stream for a second) and the other answers that were neither 204 nor
// 401.
func (p *platform) revocationDelays(tb testing.TB, rounds int) (delays [2][]time.Duration, stale, odd int) {
	tb.Helper()
	ctx := context.Background()
	revoke := []func(app string) error{
		func(app string) error { return p.st.DeleteAppConf(ctx, app) },
		func(app string) error {
			_, err := p.st.PutAppConf(ctx, store.AppConf{AppInstanceID: app, AccessKeyID: "rotated-" + app, SecretKey: []byte("secret")})
			return err
		},
		func(app string) error { _, err := p.st.PurgeApp(ctx, app); return err },
	}
	for round := range rounds {
		app := fmt.Sprintf("app-%d", round)
		tok := p.provision(tb, app, "ak-"+app)
		for i := range p.instances {
			deadline := time.Now().Add(10 * time.Second)
			for p.status(tb, i, tok) != http.StatusNoContent {
				if time.Now().After(deadline) {
					tb.Fatalf("instance %d never accepted the token of %s", i, app)
				}
				time.Sleep(time.Millisecond)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := time.Now()
		for i := range p.instances {
			wg.Go(func() {
				for {
					code, err := p.statusOf(i, tok)
					if err != nil {
						tb.Error(err)
						return
					}
					if code == http.StatusUnauthorized {
						d := time.Since(start)
						mu.Lock()
						delays[i] = append(delays[i], d)
						mu.Unlock()
						return
					}
					if code != http.StatusNoContent {
						mu.Lock()
						if code == http.StatusServiceUnavailable {
							stale++
						} else {
							odd++
						}
						mu.Unlock()
					}
					if time.Since(start) > 10*time.Second {
						tb.Errorf("instance %d still accepts the token of %s 10 s after its revocation", i, app)
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			})
		}
		if err := revoke[round%len(revoke)](app); err != nil {
			tb.Fatal(err)
		}
		wg.Wait()
	}
	return delays, stale, odd
}

// percentile returns the q-quantile (0..1) of sorted ds, nearest rank.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func summary(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return fmt.Sprintf("n=%d min=%v p50=%v p90=%v p99=%v max=%v", len(ds), ds[0].Round(time.Microsecond),
		percentile(ds, .5).Round(time.Microsecond), percentile(ds, .9).Round(time.Microsecond),
		percentile(ds, .99).Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond))
}

// TestRevocationDelay is issue 13's item 1 across function instances: two
// instances sharing one real redis-server, each following the change
// stream with its own connection; every revocation (credentials deleted,
// AK rotated, app purged) turns the app's token into a 401 on both, within
// the issue's bound of one second. The measured delay distribution is
// logged.
func TestRevocationDelay(t *testing.T) {
	p := newPlatform(t, testenv.RedisOptions{})
	delays, stale, odd := p.revocationDelays(t, 60)
	var all []time.Duration
	for i, ds := range delays {
		t.Logf("revocation delay, instance %d: %s", i, summary(ds))
		all = append(all, ds...)
	}
	t.Logf("revocation delay, both instances: %s; 503 answers (stream not followed for 1 s): %d", summary(all), stale)
	if odd != 0 {
		t.Errorf("%d answers were neither 204 nor 401", odd)
	}
	for _, d := range all {
		if d > time.Second {
			t.Errorf("a revocation took %v to reach an instance, want within 1 s", d)
		}
	}
}

// BenchmarkRevocationDelay reports the revocation delay's p50 and p99 over
// b.N revocations (each measured on two instances at once).
func BenchmarkRevocationDelay(b *testing.B) {
	p := newPlatform(b, testenv.RedisOptions{})
	b.ResetTimer()
	delays, stale, odd := p.revocationDelays(b, b.N)
	b.StopTimer()
	all := append(delays[0], delays[1]...)
	slices.Sort(all)
	b.ReportMetric(float64(percentile(all, .5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, .99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(stale), "503s")
	if odd != 0 {
		b.Errorf("%d answers were neither 204 nor 401", odd)
	}
}

// TestRevocationRedisDown: with Redis gone, an instance cannot know of
// revocations; after the staleness bound it answers 503 with Retry-After,
// not 204, and it follows again on its own once Redis is back.
func TestRevocationRedisDown(t *testing.T) {
	p := newPlatform(t, testenv.RedisOptions{AOF: true})
	tok := p.provision(t, "app-1", "ak-1")
	eventually(t, "accepted", func() error {
		if c := p.status(t, 0, tok); c != http.StatusNoContent {
			return fmt.Errorf("status %d", c)
		}
		return nil
	})
	p.redis.Stop()
	stopped := time.Now()
	eventually(t, "503 while Redis is down", func() error {
		req, _ := http.NewRequest("GET", p.instances[0].URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		return nil
	})
	t.Logf("503 after %v without Redis", time.Since(stopped).Round(time.Millisecond))
	if err := p.redis.Restart(); err != nil {
		t.Fatal(err)
	}
	// The AOF is fsynced every second: the kill may have lost the last
	// writes. Put them again (the same AK revokes nothing).
	if _, err := p.st.PutAppConf(context.Background(), store.AppConf{AppInstanceID: "app-1", AccessKeyID: "ak-1", SecretKey: []byte("secret-ak-1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "accepted again", func() error {
		if c := p.status(t, 0, tok); c != http.StatusNoContent {
			return fmt.Errorf("status %d", c)
		}
		return nil
	})
	if err := p.st.DeleteAppConf(context.Background(), "app-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "revoked after the restart", func() error {
		if c := p.status(t, 0, tok); c != http.StatusUnauthorized {
			return fmt.Errorf("status %d", c)
		}
		return nil
	})
}

// TestReadyWaitsForRevocations: a function's /healthz (server.Run with
// Ready: the Verifier's) answers 503 while its revocations cannot be
// loaded, here Redis down as the pod starts, so Knative sends it nothing
// it would refuse; 200 once they are, and a token is then accepted at
// once; and it stays 200 when Redis goes later, the requests being the
// ones that answer 503.
func TestReadyWaitsForRevocations(t *testing.T) {
	p := newPlatform(t, testenv.RedisOptions{AOF: true})
	tok := p.provision(t, "app-1", "ak-1")
	// The AOF is fsynced every second: let the provisioning reach it.
	time.Sleep(1100 * time.Millisecond)
	p.redis.Stop()

	st := p.open()
	v := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan struct{})
	go func() { defer close(followed); _ = v.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := v.App(r); err != nil {
			problem.Write(nil, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	served := make(chan error, 1)
	go func() {
		served <- server.Run(ctx, server.Options{Listener: ln, Handler: h, Ready: v.Ready, NoAccessLog: true,
			Log: slog.New(slog.DiscardHandler), DrainTimeout: time.Second})
	}()
	defer func() {
		cancel()
		<-followed
		if err := <-served; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	for range 5 {
		code, body, hdr := get("/healthz")
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" ||
			body != "starting: token revocations unavailable: not loaded yet\n" {
			t.Fatalf("/healthz with Redis down at start: %d %q, Retry-After %q", code, body, hdr.Get("Retry-After"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := p.redis.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/healthz ready", func() error {
		if code, body, _ := get("/healthz"); code != http.StatusOK || body != "ok\n" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	if code, body, _ := get("/x"); code != http.StatusNoContent {
		t.Fatalf("first request once ready: %d %s", code, body)
	}

	p.redis.Stop()
	eventually(t, "503 while Redis is down", func() error {
		if code, _, hdr := get("/x"); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	if code, body, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz once ready, Redis gone later: %d %q, want 200", code, body)
	}
}
