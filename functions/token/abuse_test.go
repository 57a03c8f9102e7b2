package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/token"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/aksk"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem/problemtest"
)

// live is a token function on a real HTTP server (127.0.0.1).
type live struct {
	*env
	url string
}

func newLive(t *testing.T) *live {
	t.Helper()
	e := newEnv(t, nil)
	s := httptest.NewServer(e.h)
	t.Cleanup(s.Close)
	return &live{env: e, url: s.URL}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address from (127.0.0.2, ...): a source of its own for the throttle.
func clientFrom(t *testing.T, from string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// signedRequest is a token request to l signed with ak/sk at the given
// date; the same arguments give the same signature.
func (l *live) signedRequest(t *testing.T, ak, sk string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", l.url+token.TokenPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := aksk.Sign(req, nil, ak, []byte(sk), []string{"host", "x-sdk-date"}, at); err != nil {
		t.Fatal(err)
	}
	return req
}

// resend copies req's signed headers into a new request: a replay.
func resend(t *testing.T, req *http.Request) *http.Request {
	t.Helper()
	r, err := http.NewRequest(req.Method, req.URL.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = req.Header.Clone()
	return r
}

// send does req with c and returns the response read in full, as a
// recorder, so that problemtest
// can check it.
func send(t *testing.T, c *http.Client, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	rec.WriteHeader(resp.StatusCode)
	_, _ = rec.Write(body)
	return rec
}

func (l *live) admin(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, l.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, http.DefaultClient, req)
}

func (l *live) lockout(t *testing.T, app string) token.Lockout {
	t.Helper()
	rec := l.admin(t, "GET", lockoutPath(app), "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET lockout: %d %s", rec.Code, rec.Body)
	}
	var lo token.Lockout
	if err := json.Unmarshal(rec.Body.Bytes(), &lo); err != nil {
		t.Fatal(err)
	}
	return lo
}

// TestConcurrentBadSignatures is the attack of issue 13: 40 concurrent bad
// signatures for the app's AK from one address while the app itself asks
// for tokens from another. Exactly MaxFailures of them are answered as bad
// signatures (401), the other 37 as locked (429); every correctly signed
// request of the app gets its token. The attacker's address stays locked even with
// a good signature until the platform admin, who sees the lock over Mm5,
// clears it.
func TestConcurrentBadSignatures(t *testing.T) {
	l := newLive(t)
	l.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	attacker, app := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	var mu sync.Mutex
	codes := map[int]int{}
	var appCodes []int
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 40 {
		req := l.signedRequest(t, "ak-1", fmt.Sprintf("guess-%d", i), now)
		wg.Go(func() {
			<-start
			rec := send(t, attacker, req)
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		})
	}
	for i := range 10 {
		req := l.signedRequest(t, "ak-1", "secret-of-app-1", now.Add(-time.Duration(i)*time.Second))
		wg.Go(func() {
			<-start
			rec := send(t, app, req)
			mu.Lock()
			appCodes = append(appCodes, rec.Code)
			mu.Unlock()
			if rec.Code == http.StatusOK {
				l.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("attacker's 40 bad signatures: %v; the app's 10 good ones: %v", codes, appCodes)
	if codes[http.StatusUnauthorized] != store.MaxFailures || codes[http.StatusTooManyRequests] != 40-store.MaxFailures {
		t.Errorf("attacker got %v, want %d × 401 and %d × 429", codes, store.MaxFailures, 40-store.MaxFailures)
	}
	for _, c := range appCodes {
		if c != http.StatusOK {
			t.Errorf("the app's correctly signed requests got %v, want all 200", appCodes)
			break
		}
	}

	// Locked means locked: the attacker's address is refused even when
	// its signature is good.
	rec := send(t, attacker, l.signedRequest(t, "ak-1", "secret-of-app-1", now.Add(time.Second)))
	problemtest.Want(t, rec, token.TokenPath, http.StatusTooManyRequests, "")
	if ra := rec.Header().Get("Retry-After"); ra != fmt.Sprint(int(store.LockDuration/time.Second)) {
		t.Errorf("Retry-After = %q", ra)
	}

	// The admin sees the lock, and only the attacker's address.
	lo := l.lockout(t, "app-1")
	if lo.AccessKeyID != "ak-1" || lo.MaxFailures != store.MaxFailures || len(lo.Sources) != 1 {
		t.Fatalf("lockout = %+v", lo)
	}
	if s := lo.Sources[0]; s.Source != "127.0.0.2" || s.Failures != store.MaxFailures || !s.Locked || s.RetryAfter != int(store.LockDuration/time.Second) {
		t.Errorf("locked source = %+v", s)
	}
	for _, tc := range []struct {
		name, app string
		status    int
		field     string
	}{{"unknown app", "app-9", http.StatusNotFound, ""}, {"bad appInstanceId", "-x", http.StatusBadRequest, "appInstanceId"}} {
		for _, m := range []string{"GET", "DELETE"} {
			problemtest.Want(t, l.admin(t, m, lockoutPath(tc.app), ""), lockoutPath(tc.app), tc.status, tc.field)
		}
	}

	// ... and clears it.
	if rec := l.admin(t, "DELETE", lockoutPath("app-1"), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE lockout: %d %s", rec.Code, rec.Body)
	}
	if lo := l.lockout(t, "app-1"); len(lo.Sources) != 0 {
		t.Fatalf("after clearing: %+v", lo)
	}
	rec = send(t, attacker, l.signedRequest(t, "ak-1", "secret-of-app-1", now.Add(2*time.Second)))
	l.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
}

// TestReplay: a signed request is good for one token, however often and
// however concurrently it is sent again within the skew window; replays are
// 401s that do not lock the sender out.
func TestReplay(t *testing.T) {
	l := newLive(t)
	l.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	c := clientFrom(t, "127.0.0.4")

	orig := l.signedRequest(t, "ak-1", "secret-of-app-1", now)
	codes := map[int]int{}
	for i := range 10 {
		rec := send(t, c, resend(t, orig))
		codes[rec.Code]++
		if i == 0 {
			l.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
			continue
		}
		problemtest.Want(t, rec, token.TokenPath, http.StatusUnauthorized, "")
		problemtest.Golden(t, "replayed", rec.Body.Bytes())
	}
	t.Logf("10 sends of one signed request: %v", codes)

	orig = l.signedRequest(t, "ak-1", "secret-of-app-1", now.Add(time.Second))
	var mu sync.Mutex
	concurrent := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 10 {
		req := resend(t, orig)
		wg.Go(func() {
			<-start
			rec := send(t, c, req)
			mu.Lock()
			concurrent[rec.Code]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	t.Logf("10 concurrent sends of one signed request: %v", concurrent)
	if concurrent[http.StatusOK] != 1 || concurrent[http.StatusUnauthorized] != 9 {
		t.Errorf("concurrent replays: %v, want one 200 and nine 401", concurrent)
	}

	// Replays were no failures: a fresh signature from the same address works.
	rec := send(t, c, l.signedRequest(t, "ak-1", "secret-of-app-1", now.Add(2*time.Second)))
	l.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
	if lo := l.lockout(t, "app-1"); len(lo.Sources) != 0 {
		t.Errorf("replays left throttle state: %+v", lo)
	}
}

// following is a Verifier over e's store that follows its revocations.
func (e *env) following(t *testing.T) *auth.Verifier {
	t.Helper()
	if err := e.st.PublishJWKS(context.Background(), e.signer.JWKS()); err != nil {
		t.Fatal(err)
	}
	// A generous staleness bound: a loaded machine must not turn the
	// checks below into 503s; the delay is what is measured.
	v := auth.NewVerifier(e.st, auth.VerifierOptions{Now: func() time.Time { return now }, Revocations: e.st,
		RevocationMaxStaleness: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = v.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return v
}

// tokenOver gets a token for ak/sk over l's HTTP API, signed at the given date.
func (l *live) tokenOver(t *testing.T, ak, sk string, at time.Time) string {
	t.Helper()
	rec := send(t, http.DefaultClient, l.signedRequest(t, ak, sk, at))
	if rec.Code != http.StatusOK {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr.AccessToken
}

// revokedWithin waits until v refuses tok as revoked; it fails the test if
// that takes longer than the bound of one second.
func revokedWithin(t *testing.T, v *auth.Verifier, tok string, since time.Time) time.Duration {
	t.Helper()
	for {
		_, err := v.Verify(context.Background(), tok)
		if errors.Is(err, auth.ErrTokenRevoked) {
			d := time.Since(since)
			if d > time.Second {
				t.Errorf("revoked after %v, want within 1 s", d)
			}
			return d
		}
		if err != nil && !errors.Is(err, auth.ErrRevocationsUnavailable) {
			t.Fatalf("verify: %v", err)
		}
		if time.Since(since) > 10*time.Second {
			t.Fatalf("token still accepted %v after its revocation (err %v)", time.Since(since), err)
		}
		time.Sleep(time.Millisecond)
	}
}

// valid waits until v has followed the revocations and checks that tok
// verifies as app's.
func valid(t *testing.T, v *auth.Verifier, tok, app string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, err := v.Verify(context.Background(), tok)
		if errors.Is(err, auth.ErrRevocationsUnavailable) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil || cl.Subject != app {
			t.Fatalf("token of %s: %+v, %v", app, cl, err)
		}
		return
	}
}

// TestTokensRevoked: deleting an app's credentials over Mm5, giving it
// another AK, and terminating it each revoke the tokens it holds, within a
// second, on a verifier that follows the store; putting the same
// credentials back does not revive them, and a new token is needed and works.
func TestTokensRevoked(t *testing.T) {
	l := newLive(t)
	v := l.following(t)
	l.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	at := now
	next := func() time.Time { at = at.Add(time.Second); return at }

	old := l.tokenOver(t, "ak-1", "secret-of-app-1", next())
	valid(t, v, old, "app-1")
	since := time.Now()
	if rec := l.admin(t, "DELETE", confsPath("app-1"), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE confs: %d %s", rec.Code, rec.Body)
	}
	t.Logf("DELETE confs: token revoked after %v", revokedWithin(t, v, old, since))

	l.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	time.Sleep(50 * time.Millisecond) // the PUT's stream entry has been followed by now
	if _, err := v.Verify(context.Background(), old); !errors.Is(err, auth.ErrTokenRevoked) {
		t.Fatalf("old token after the credentials came back: %v", err)
	}
	fresh := l.tokenOver(t, "ak-1", "secret-of-app-1", next())
	valid(t, v, fresh, "app-1")

	since = time.Now()
	l.putConf(t, "app-1", "ak-2", "secret-of-app-1")
	t.Logf("AK rotation: token revoked after %v", revokedWithin(t, v, fresh, since))
	rotated := l.tokenOver(t, "ak-2", "secret-of-app-1", next())
	valid(t, v, rotated, "app-1")
	l.putConf(t, "app-1", "ak-2", "another-secret-of-app-1") // same AK: no revocation
	time.Sleep(50 * time.Millisecond)
	valid(t, v, rotated, "app-1")

	since = time.Now()
	if _, err := l.st.PurgeApp(context.Background(), "app-1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("termination (purge): token revoked after %v", revokedWithin(t, v, rotated, since))
}
