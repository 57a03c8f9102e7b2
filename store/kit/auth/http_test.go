package auth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/problem/problemtest"

	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
)

const (
	testAdminToken = "s3cr3t-admin-token-0123456789"
	challenge      = `Bearer realm="kmep"`
)

// appServer answers 200 with the token's subject once v.App accepts it.
func appServer(t *testing.T, v *auth.Verifier) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(problem.Handler(nil, func(w http.ResponseWriter, r *http.Request) error {
		cl, err := v.App(r)
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, cl.Subject)
		return err
	}))
	t.Cleanup(srv.Close)
	return srv
}

// adminServer answers 204 once a.Check accepts the request.
func adminServer(t *testing.T, a *auth.Admin) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(problem.Handler(nil, func(w http.ResponseWriter, r *http.Request) error {
		if err := a.Check(r); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	t.Cleanup(srv.Close)
	return srv
}

// get requests path from srv with the given Authorization header (none if
// empty).
func get(t *testing.T, srv *httptest.Server, path, authorization string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestApp(t *testing.T) {
	k := newKey(t)
	s := newSigner(t, auth.SignerOptions{}, k)
	now := time.Now()
	good := issue(t, s, "app-1", now)
	up := appServer(t, auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{}))
	down := appServer(t, auth.NewVerifier(&fakeKeys{err: errors.New("redis down")}, auth.VerifierOptions{}))
	invalid := func(desc string) string {
		return `Bearer realm="kmep", error="invalid_token", error_description="` + desc + `"`
	}

	tests := []struct {
		name          string
		srv           *httptest.Server
		authorization string
		wantStatus    int
		wantBody      string // for 200
		wantChallenge string // WWW-Authenticate, for 401
		wantGolden    string // testdata/<name>.json, for errors
	}{
		{name: "valid", srv: up, authorization: "Bearer " + good, wantStatus: 200, wantBody: "app-1"},
		{name: "lower-case scheme", srv: up, authorization: "bearer " + good, wantStatus: 200, wantBody: "app-1"},
		{name: "upper-case scheme, extra space", srv: up, authorization: "BEARER  " + good, wantStatus: 200, wantBody: "app-1"},
		{name: "no header", srv: up, wantStatus: 401, wantChallenge: challenge, wantGolden: "missing_bearer"},
		{name: "basic scheme", srv: up, authorization: "Basic YWRtaW46YWRtaW4=", wantStatus: 401, wantChallenge: challenge, wantGolden: "missing_bearer"},
		{name: "empty credentials", srv: up, authorization: "Bearer ", wantStatus: 401, wantChallenge: challenge, wantGolden: "missing_bearer"},
		{name: "scheme only", srv: up, authorization: "Bearer", wantStatus: 401, wantChallenge: challenge, wantGolden: "missing_bearer"},
		{name: "expired", srv: up, authorization: "Bearer " + issue(t, s, "app-1", now.Add(-2*time.Hour)),
			wantStatus: 401, wantChallenge: invalid("token expired"), wantGolden: "expired"},
		{name: "tampered", srv: up, authorization: "Bearer " + flipSignature(good),
			wantStatus: 401, wantChallenge: invalid("invalid token signature"), wantGolden: "bad_signature"},
		{name: "wrong audience", srv: up, authorization: "Bearer " + issue(t, newSigner(t, auth.SignerOptions{Audience: "other"}, k), "app-1", now),
			wantStatus: 401, wantChallenge: invalid("token has the wrong audience"), wantGolden: "wrong_audience"},
		{name: "admin token", srv: up, authorization: "Bearer " + testAdminToken,
			wantStatus: 401, wantChallenge: invalid("malformed token"), wantGolden: "malformed"},
		{name: "keys unavailable", srv: down, authorization: "Bearer " + good, wantStatus: 503, wantGolden: "keys_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.srv, "/mp1/v1/services", tt.authorization)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChallenge)
			}
			if tt.wantStatus == 200 {
				if string(body) != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type = %q", ct)
			}
			wantRetry := ""
			if tt.wantStatus == 503 {
				wantRetry = "1"
			}
			if got := resp.Header.Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, wantRetry)
			}
			problemtest.Golden(t, tt.wantGolden, body)
		})
	}
}

func TestNewAdmin(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		wantErr bool
	}{
		{name: "long enough", token: testAdminToken},
		{name: "exactly 16", token: "0123456789abcdef"},
		{name: "empty", token: "", wantErr: true},
		{name: "15 characters", token: "0123456789abcde", wantErr: true},
		{name: "inner space", token: "0123456789 abcdef", wantErr: true},
		{name: "trailing newline", token: testAdminToken + "\n", wantErr: true},
		{name: "non-ASCII", token: "0123456789abcdéf", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := auth.NewAdmin(tt.token)
			if tt.wantErr {
				if !errors.Is(err, auth.ErrInvalidAdminToken) || a != nil {
					t.Fatalf("NewAdmin = %v, %v; want ErrInvalidAdminToken", a, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAdminCheck(t *testing.T) {
	a, err := auth.NewAdmin(testAdminToken)
	if err != nil {
		t.Fatal(err)
	}
	srv := adminServer(t, a)
	invalid := `Bearer realm="kmep", error="invalid_token", error_description="invalid admin token"`
	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantChallenge string
		wantGolden    string
	}{
		{name: "right token", authorization: "Bearer " + testAdminToken, wantStatus: 204},
		{name: "lower-case scheme", authorization: "bearer " + testAdminToken, wantStatus: 204},
		{name: "no header", wantStatus: 401, wantChallenge: challenge, wantGolden: "admin_missing_bearer"},
		{name: "basic scheme", authorization: "Basic " + testAdminToken, wantStatus: 401, wantChallenge: challenge, wantGolden: "admin_missing_bearer"},
		{name: "wrong token", authorization: "Bearer " + strings.ToUpper(testAdminToken), wantStatus: 401, wantChallenge: invalid, wantGolden: "admin_invalid"},
		{name: "prefix of the token", authorization: "Bearer " + testAdminToken[:20], wantStatus: 401, wantChallenge: invalid, wantGolden: "admin_invalid"},
		{name: "token with a suffix", authorization: "Bearer " + testAdminToken + "x", wantStatus: 401, wantChallenge: invalid, wantGolden: "admin_invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, "/admin/v1/keys", tt.authorization)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChallenge)
			}
			if tt.wantGolden != "" {
				problemtest.Golden(t, tt.wantGolden, body)
			}
		})
	}
}

// TestAdminAndAppTokensAreDisjoint shows that neither kind of token passes
// the other's check.
func TestAdminAndAppTokensAreDisjoint(t *testing.T) {
	s := newSigner(t, auth.SignerOptions{}, newKey(t))
	v := auth.NewVerifier(auth.StaticKeys(s.JWKS()), auth.VerifierOptions{})
	appToken := issue(t, s, "app-1", time.Now())
	a, err := auth.NewAdmin(testAdminToken)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("app JWT is not an admin token", func(t *testing.T) {
		if _, err := v.Verify(context.Background(), appToken); err != nil {
			t.Fatalf("the app token itself is valid: %v", err)
		}
		resp, _ := get(t, adminServer(t, a), "/admin/v1/keys", "Bearer "+appToken)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("admin check with an app JWT: status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("admin token is not an app JWT", func(t *testing.T) {
		if _, err := v.Verify(context.Background(), testAdminToken); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Verify(admin token) = %v, want ErrInvalidToken", err)
		}
		resp, _ := get(t, appServer(t, v), "/mp1/v1/services", "Bearer "+testAdminToken)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("App with the admin token: status %d, want 401", resp.StatusCode)
		}
	})
}
