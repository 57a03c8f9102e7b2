package token_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/problem/problemtest"

	"github.com/kmep-io/kmep/functions/token"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/aksk"
	"github.com/kmep-io/kmep/store/kit/auth"
)

const adminToken = "kmep-admin-token-0123456789"

var (
	// srv is the redis-server the tests share; each env has a prefix of its own.
	srv *testenv.Redis
	// now is the clock of every env: the handler, the store and the verifier.
	now = time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
)

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

type env struct {
	h      http.Handler
	st     *store.Store
	signer *auth.Signer
}

// newEnv is a token handler over its own prefix of r (nil: the shared server).
func newEnv(t *testing.T, r *testenv.Redis) *env {
	t.Helper()
	if r == nil {
		r = srv
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	clock := func() time.Time { return now }
	st := r.Store(t, store.Options{EncryptionKey: key, Now: clock})
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
	admin, err := auth.NewAdmin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	h := token.New(token.Deps{Store: st, Signer: signer, Admin: admin, Log: slog.New(slog.DiscardHandler), Now: clock})
	return &env{h: h, st: st, signer: signer}
}

func confsPath(app string) string { return "/mep/appMng/v1/applications/" + app + "/confs" }

func lockoutPath(app string) string { return "/mep/appMng/v1/applications/" + app + "/lockout" }

func confBody(ak, sk string) string {
	return `{"authInfo":{"credentials":{"accessKeyId":"` + ak + `","secretKey":"` + sk + `"}},"appInfo":{"appName":"demo","requiredServices":["rni"]}}`
}

func (e *env) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// do sends a request with the given Authorization ("" for none).
func (e *env) do(method, path, authorization, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return e.serve(req)
}

// putConf gives app the credentials ak/sk through Mm5.
func (e *env) putConf(t *testing.T, app, ak, sk string) {
	t.Helper()
	rec := e.do("PUT", confsPath(app), "Bearer "+adminToken, confBody(ak, sk))
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		t.Fatalf("PUT confs of %s: %d %s", app, rec.Code, rec.Body)
	}
}

// signed is a POST /mep/token signed with ak/sk at the given time.
func signed(t *testing.T, ak, sk string, at time.Time) *http.Request {
	t.Helper()
	req := httptest.NewRequest("POST", token.TokenPath, nil)
	if err := aksk.Sign(req, nil, ak, []byte(sk), []string{"host", "x-sdk-date"}, at); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestConfsLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	const secret = "s3cret-key-of-app-1"
	admin := "Bearer " + adminToken
	path := confsPath("app-1")

	steps := []struct {
		name, method, body string
		status             int
		etag               string
	}{
		{"create", "PUT", confBody("ak-1", secret), http.StatusCreated, `"1"`},
		{"replace", "PUT", confBody("ak-1", secret+"-2"), http.StatusOK, `"2"`},
		{"read", "GET", "", http.StatusOK, `"2"`},
		{"delete", "DELETE", "", http.StatusNoContent, ""},
		{"delete again", "DELETE", "", http.StatusNotFound, ""},
		{"read deleted", "GET", "", http.StatusNotFound, ""},
		{"create again", "PUT", confBody("ak-1", secret), http.StatusCreated, `"1"`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			rec := e.do(s.method, path, admin, s.body)
			if s.status == http.StatusNotFound {
				problemtest.Want(t, rec, path, s.status, "")
				return
			}
			if rec.Code != s.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, s.status, rec.Body)
			}
			if got := rec.Header().Get("ETag"); got != s.etag {
				t.Errorf("ETag = %q, want %q", got, s.etag)
			}
			if s.status == http.StatusNoContent {
				if rec.Body.Len() != 0 {
					t.Errorf("204 with a body: %s", rec.Body)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if strings.Contains(rec.Body.String(), "s3cret") || strings.Contains(rec.Body.String(), "secretKey") {
				t.Fatalf("the secret left the store: %s", rec.Body)
			}
			var c token.AppConf
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
				t.Fatal(err)
			}
			if c.AuthInfo.Credentials.AccessKeyID != "ak-1" || c.AppInfo.AppName != "demo" || !reflect.DeepEqual(c.AppInfo.RequiredServices, []string{"rni"}) {
				t.Errorf("conf = %s", rec.Body)
			}
		})
	}
}

func TestConfsAuth(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	jwt, _, err := e.signer.Issue("app-1", now)
	if err != nil {
		t.Fatal(err)
	}
	credentials := []struct{ name, authorization string }{
		{"no Authorization", ""},
		{"wrong admin token", "Bearer " + adminToken + "x"},
		{"an app JWT", "Bearer " + jwt},
		{"admin token in another scheme", "Basic " + adminToken},
	}
	for _, c := range credentials {
		for _, m := range []struct{ method, path, body string }{
			{"PUT", confsPath("app-1"), confBody("ak-2", "another-secret")}, {"GET", confsPath("app-1"), ""}, {"DELETE", confsPath("app-1"), ""},
			{"GET", lockoutPath("app-1"), ""}, {"DELETE", lockoutPath("app-1"), ""},
		} {
			t.Run(c.name+" "+m.method+" "+m.path, func(t *testing.T) {
				rec := e.do(m.method, m.path, c.authorization, m.body)
				problemtest.Want(t, rec, m.path, http.StatusUnauthorized, "")
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without a challenge")
				}
				// Nothing changed: the conf is still app-1's with ak-1.
				c, err := e.st.GetAppConf(context.Background(), "app-1")
				if err != nil || c.AccessKeyID != "ak-1" || c.Rev != 1 {
					t.Errorf("conf after a refused %s: %+v, %v", m.method, c, err)
				}
			})
		}
	}
}

func TestConfsRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	admin := "Bearer " + adminToken
	tests := []struct {
		name, path, body string
		status           int
		field            string
		golden           string
	}{
		{name: "AK of another app", path: confsPath("app-2"), body: confBody("ak-1", "secret-of-app-2"), status: http.StatusConflict,
			field: "authInfo.credentials.accessKeyId", golden: "ak_in_use"},
		{name: "malformed JSON", path: confsPath("app-2"), body: `{"authInfo":`, status: http.StatusBadRequest, field: "body"},
		{name: "empty body", path: confsPath("app-2"), body: ``, status: http.StatusBadRequest, field: "body"},
		{name: "trailing data", path: confsPath("app-2"), body: confBody("ak-2", "secret-of-app-2") + `}`, status: http.StatusBadRequest, field: "body"},
		{name: "no accessKeyId", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"secretKey":"secret-of-app-2"}}}`, status: http.StatusBadRequest,
			field: "authInfo.credentials.accessKeyId", golden: "missing_access_key"},
		{name: "accessKeyId with a space", path: confsPath("app-2"), body: confBody("ak 2", "secret-of-app-2"), status: http.StatusBadRequest, field: "authInfo.credentials.accessKeyId"},
		{name: "accessKeyId too long", path: confsPath("app-2"), body: confBody(strings.Repeat("a", 129), "secret-of-app-2"), status: http.StatusBadRequest, field: "authInfo.credentials.accessKeyId"},
		{name: "accessKeyId a number", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"accessKeyId":2,"secretKey":"secret-of-app-2"}}}`, status: http.StatusBadRequest,
			field: "authInfo.credentials.accessKeyId"},
		{name: "no secretKey", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"accessKeyId":"ak-2"}}}`, status: http.StatusBadRequest, field: "authInfo.credentials.secretKey"},
		{name: "secretKey too short", path: confsPath("app-2"), body: confBody("ak-2", "short"), status: http.StatusBadRequest, field: "authInfo.credentials.secretKey"},
		{name: "secretKey too long", path: confsPath("app-2"), body: confBody("ak-2", strings.Repeat("s", 257)), status: http.StatusBadRequest, field: "authInfo.credentials.secretKey"},
		{name: "appName too long", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"accessKeyId":"ak-2","secretKey":"secret-of-app-2"}},"appInfo":{"appName":"` + strings.Repeat("n", 257) + `"}}`,
			status: http.StatusBadRequest, field: "appInfo.appName"},
		{name: "too many required services", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"accessKeyId":"ak-2","secretKey":"secret-of-app-2"}},"appInfo":{"requiredServices":[` + strings.Repeat(`"s",`, 100) + `"s"]}}`,
			status: http.StatusBadRequest, field: "appInfo.requiredServices"},
		{name: "requiredServices not an array", path: confsPath("app-2"), body: `{"authInfo":{"credentials":{"accessKeyId":"ak-2","secretKey":"secret-of-app-2"}},"appInfo":{"requiredServices":"rni"}}`,
			status: http.StatusBadRequest, field: "appInfo.requiredServices"},
		{name: "bad appInstanceId", path: confsPath("-app"), body: confBody("ak-2", "secret-of-app-2"), status: http.StatusBadRequest, field: "appInstanceId"},
		{name: "body over 64 KiB", path: confsPath("app-2"), body: `{"x":"` + strings.Repeat("x", token.MaxBody) + `"}`, status: http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do("PUT", tc.path, admin, tc.body)
			problemtest.Want(t, rec, tc.path, tc.status, tc.field)
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
			if _, err := e.st.GetAppConf(context.Background(), "app-2"); err == nil {
				t.Error("a refused PUT stored app-2's conf")
			}
			c, err := e.st.CredentialByAK(context.Background(), "ak-1")
			if err != nil || c.AppInstanceID != "app-1" || string(c.SecretKey) != "secret-of-app-1" {
				t.Errorf("ak-1 after a refused PUT: %+v, %v", c, err)
			}
		})
	}
	for _, p := range []string{confsPath("-app")} {
		problemtest.Want(t, e.do("GET", p, admin, ""), p, http.StatusBadRequest, "appInstanceId")
		problemtest.Want(t, e.do("DELETE", p, admin, ""), p, http.StatusBadRequest, "appInstanceId")
	}
}

// TestConfsMoveAK: an app that changes its AK frees the old one, which
// then signs nothing and may be given to another app.
func TestConfsMoveAK(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-1", "ak-old", "secret-of-app-1")
	e.putConf(t, "app-1", "ak-new", "secret-of-app-1")
	problemtest.Want(t, e.serve(signed(t, "ak-old", "secret-of-app-1", now)), token.TokenPath, http.StatusUnauthorized, "")
	if rec := e.serve(signed(t, "ak-new", "secret-of-app-1", now)); rec.Code != http.StatusOK {
		t.Fatalf("new AK: %d %s", rec.Code, rec.Body)
	}
	rec := e.do("PUT", confsPath("app-2"), "Bearer "+adminToken, confBody("ak-old", "secret-of-app-2"))
	if rec.Code != http.StatusCreated {
		t.Fatalf("old AK to app-2: %d %s", rec.Code, rec.Body)
	}
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// checkToken checks a 200 token answer and that its JWT verifies, over the
// keys published in the store, as a token of app.
func (e *env) checkToken(t *testing.T, status int, header http.Header, body []byte, app string) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil || len(fields) != 3 {
		t.Errorf("body %s: want exactly access_token, token_type, expires_in (%v)", body, err)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 || tr.AccessToken == "" {
		t.Errorf("token response %s", body)
	}
	ctx := context.Background()
	if err := e.st.PublishJWKS(ctx, e.signer.JWKS()); err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(e.st, auth.VerifierOptions{Now: func() time.Time { return now }})
	cl, err := v.Verify(ctx, tr.AccessToken)
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	if cl.Subject != app || !cl.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("claims = %+v, want sub %s expiring at %v", cl, app, now.Add(time.Hour))
	}
}

func TestToken(t *testing.T) {
	const sk = "secret-of-app-1"
	tests := []struct {
		name string
		// req builds the request; nil: signed by ak-1 now.
		req    func(t *testing.T) *http.Request
		status int
		golden string
	}{
		{name: "signed", status: http.StatusOK},
		{name: "signed 14 minutes ago", req: func(t *testing.T) *http.Request { return signed(t, "ak-1", sk, now.Add(-14*time.Minute)) }, status: http.StatusOK},
		{name: "signed 14 minutes ahead", req: func(t *testing.T) *http.Request { return signed(t, "ak-1", sk, now.Add(14*time.Minute)) }, status: http.StatusOK},
		{name: "unsigned", req: func(t *testing.T) *http.Request { return httptest.NewRequest("POST", token.TokenPath, nil) },
			status: http.StatusUnauthorized, golden: "unsigned"},
		{name: "another scheme", req: func(t *testing.T) *http.Request {
			r := signed(t, "ak-1", sk, now)
			r.Header.Set("Authorization", "Bearer x")
			return r
		}, status: http.StatusUnauthorized},
		{name: "no X-Sdk-Date", req: func(t *testing.T) *http.Request {
			r := signed(t, "ak-1", sk, now)
			r.Header.Del(aksk.DateHeader)
			return r
		}, status: http.StatusUnauthorized},
		{name: "malformed X-Sdk-Date", req: func(t *testing.T) *http.Request {
			r := signed(t, "ak-1", sk, now)
			r.Header.Set(aksk.DateHeader, now.Format(time.RFC3339))
			return r
		}, status: http.StatusUnauthorized},
		{name: "wrong secret", req: func(t *testing.T) *http.Request { return signed(t, "ak-1", "not-the-secret", now) },
			status: http.StatusUnauthorized, golden: "bad_signature"},
		{name: "signed for another host", req: func(t *testing.T) *http.Request {
			r := signed(t, "ak-1", sk, now)
			r.Host = "attacker.example"
			return r
		}, status: http.StatusUnauthorized},
		{name: "body changed after signing", req: func(t *testing.T) *http.Request {
			r := httptest.NewRequest("POST", token.TokenPath, strings.NewReader("tampered"))
			if err := aksk.Sign(r, nil, "ak-1", []byte(sk), []string{"host"}, now); err != nil {
				t.Fatal(err)
			}
			return r
		}, status: http.StatusUnauthorized},
		{name: "date 16 minutes ago", req: func(t *testing.T) *http.Request { return signed(t, "ak-1", sk, now.Add(-16*time.Minute)) }, status: http.StatusUnauthorized},
		{name: "date 16 minutes ahead", req: func(t *testing.T) *http.Request { return signed(t, "ak-1", sk, now.Add(16*time.Minute)) }, status: http.StatusUnauthorized},
		{name: "unknown AK", req: func(t *testing.T) *http.Request { return signed(t, "ak-unknown", sk, now) }, status: http.StatusUnauthorized},
		{name: "AK of a deleted conf", req: func(t *testing.T) *http.Request { return signed(t, "ak-gone", "secret-of-gone", now) }, status: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.putConf(t, "app-1", "ak-1", sk)
			e.putConf(t, "gone", "ak-gone", "secret-of-gone")
			if rec := e.do("DELETE", confsPath("gone"), "Bearer "+adminToken, ""); rec.Code != http.StatusNoContent {
				t.Fatalf("DELETE gone: %d", rec.Code)
			}
			req := signed(t, "ak-1", sk, now)
			if tc.req != nil {
				req = tc.req(t)
			}
			rec := e.serve(req)
			if tc.status == http.StatusOK {
				e.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
				return
			}
			problemtest.Want(t, rec, token.TokenPath, tc.status, "")
			if got := rec.Header().Get("WWW-Authenticate"); got != aksk.Algorithm {
				t.Errorf("WWW-Authenticate = %q, want %q", got, aksk.Algorithm)
			}
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
		})
	}
}

// TestLockout: three bad signatures for one AK from one source lock that
// source out of the AK: its fourth request, even correctly signed, is
// refused unchecked with 429 and Retry-After. The same AK from another
// source and other AKs are not affected, and requests that never reach the
// signature check (unsigned, outside the clock skew) do not count.
func TestLockout(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	e.putConf(t, "app-2", "ak-2", "secret-of-app-2")
	from := func(r *http.Request, addr string) *http.Request { r.RemoteAddr = addr; return r }

	// Refusals before the signature check are not failures.
	for range 5 {
		problemtest.Want(t, e.serve(signed(t, "ak-1", "secret-of-app-1", now.Add(-time.Hour))), token.TokenPath, http.StatusUnauthorized, "")
	}
	for i := range store.MaxFailures {
		rec := e.serve(signed(t, "ak-1", "wrong-secret", now.Add(time.Duration(i)*time.Second)))
		problemtest.Want(t, rec, token.TokenPath, http.StatusUnauthorized, "")
	}
	rec := e.serve(signed(t, "ak-1", "secret-of-app-1", now))
	problemtest.Want(t, rec, token.TokenPath, http.StatusTooManyRequests, "")
	problemtest.Golden(t, "locked", rec.Body.Bytes())
	if got, want := rec.Header().Get("Retry-After"), fmt.Sprint(int(store.LockDuration/time.Second)); got != want {
		t.Errorf("Retry-After = %q, want %s", got, want)
	}
	// The app itself, elsewhere: IPv4 and IPv6 peers, each their own source.
	for i, addr := range []string{"198.51.100.9:5555", "[2001:db8::7]:443"} {
		rec = e.serve(from(signed(t, "ak-1", "secret-of-app-1", now.Add(time.Duration(i+1)*time.Second)), addr))
		e.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-1")
	}
	rec = e.serve(signed(t, "ak-2", "secret-of-app-2", now))
	e.checkToken(t, rec.Code, rec.Header(), rec.Body.Bytes(), "app-2")
}

// TestLockoutIPv6Prefix: an IPv6 source is its /64, so a host cannot escape
// the lock by changing the low bits of its address.
func TestLockoutIPv6Prefix(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	for i := range store.MaxFailures {
		r := signed(t, "ak-1", "wrong-secret", now)
		r.RemoteAddr = fmt.Sprintf("[2001:db8:0:1::%x]:1000", i+1)
		problemtest.Want(t, e.serve(r), token.TokenPath, http.StatusUnauthorized, "")
	}
	r := signed(t, "ak-1", "secret-of-app-1", now)
	r.RemoteAddr = "[2001:db8:0:1:ffff::1]:1000"
	problemtest.Want(t, e.serve(r), token.TokenPath, http.StatusTooManyRequests, "")
	r = signed(t, "ak-1", "secret-of-app-1", now)
	r.RemoteAddr = "[2001:db8:0:2::1]:1000"
	if rec := e.serve(r); rec.Code != http.StatusOK {
		t.Fatalf("another /64: %d %s", rec.Code, rec.Body)
	}
}

// TestUnknownAKLeavesNoState: bad signatures for AKs that do not exist are
// 401s, never 429s, and write nothing to Redis.
func TestUnknownAKLeavesNoState(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	e := newEnv(t, r)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	c := r.Client(t)
	before, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rec := e.serve(signed(t, fmt.Sprintf("ak-unknown-%d", i%4), "wrong-secret", now))
		problemtest.Want(t, rec, token.TokenPath, http.StatusUnauthorized, "")
	}
	after, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("unknown AKs left state: keys before %v, after %v", before, after)
	}
}

// TestEdgeGalleryStyleRequest is the request mep-agent sends: POST with an
// empty body, Content-Type, Host and X-Sdk-Date all signed, over a real
// connection.
func TestEdgeGalleryStyleRequest(t *testing.T) {
	e := newEnv(t, nil)
	e.putConf(t, "app-eg", "QVUJMSUMDEFJEOUYVXYZ", "sk-of-edgegallery-app")
	server := httptest.NewServer(e.h)
	t.Cleanup(server.Close)

	req, err := http.NewRequest("POST", server.URL+token.TokenPath, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := aksk.Sign(req, nil, "QVUJMSUMDEFJEOUYVXYZ", []byte("sk-of-edgegallery-app"), []string{"Content-Type", "Host", "X-Sdk-Date"}, now); err != nil {
		t.Fatal(err)
	}
	if a := req.Header.Get("Authorization"); !strings.Contains(a, "SignedHeaders=content-type;host;x-sdk-date,") {
		t.Fatalf("Authorization = %q", a)
	}
	resp, err := server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.checkToken(t, resp.StatusCode, resp.Header, body, "app-eg")
}

func TestJWKS(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do("GET", token.JWKSPath, "", "")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(e.signer.JWKS()) {
		t.Errorf("JWKS = %s, want the signer's %s", rec.Body, e.signer.JWKS())
	}
	keys, err := auth.ParseJWKS(rec.Body.Bytes())
	if err != nil || len(keys) != 1 {
		t.Errorf("JWKS keys %v, %v", keys, err)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct{ method, path, allow, golden string }{
		{"GET", token.TokenPath, "POST", "method_not_allowed"},
		{"PUT", token.TokenPath, "POST", ""},
		{"POST", token.JWKSPath, "GET", ""},
		{"POST", confsPath("app-1"), "DELETE, GET, PUT", ""},
		{"PATCH", confsPath("app-1"), "DELETE, GET, PUT", ""},
		{"PUT", lockoutPath("app-1"), "DELETE, GET", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := e.do(tc.method, tc.path, "Bearer "+adminToken, "")
			problemtest.Want(t, rec, tc.path, http.StatusMethodNotAllowed, "")
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.golden != "" {
				problemtest.Golden(t, tc.golden, rec.Body.Bytes())
			}
		})
	}
}

// TestStoreUnavailable: with Redis down, token requests and Mm5 calls
// answer 503 with Retry-After.
func TestStoreUnavailable(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	e := newEnv(t, r)
	e.putConf(t, "app-1", "ak-1", "secret-of-app-1")
	r.Stop()
	admin := "Bearer " + adminToken
	tests := []struct {
		name string
		req  *http.Request
	}{
		{"token", signed(t, "ak-1", "secret-of-app-1", now)},
		{"token with a bad signature", signed(t, "ak-1", "wrong-secret", now)},
		{"PUT confs", withAuth(httptest.NewRequest("PUT", confsPath("app-1"), strings.NewReader(confBody("ak-1", "secret-of-app-1"))), admin)},
		{"GET confs", withAuth(httptest.NewRequest("GET", confsPath("app-1"), nil), admin)},
		{"DELETE confs", withAuth(httptest.NewRequest("DELETE", confsPath("app-1"), nil), admin)},
		{"GET lockout", withAuth(httptest.NewRequest("GET", lockoutPath("app-1"), nil), admin)},
		{"DELETE lockout", withAuth(httptest.NewRequest("DELETE", lockoutPath("app-1"), nil), admin)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.serve(tc.req)
			problemtest.Want(t, rec, tc.req.URL.Path, http.StatusServiceUnavailable, "")
			if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("Retry-After = %q", ra)
			}
		})
	}
}

func withAuth(r *http.Request, authorization string) *http.Request {
	r.Header.Set("Authorization", authorization)
	return r
}
