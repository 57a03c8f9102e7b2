package services_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/functions/services"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/mec"
)

// fleet is two instances of the services function as their binary wires
// them (discovery cache, a Verifier following token revocations), each with
// its own Redis client, behind real HTTP servers, sharing one real
// redis-server with a writer that provisions and revokes apps as the token
// and lcm functions do.
type fleet struct {
	st        *store.Store
	signer    *auth.Signer
	instances []string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	prefix := r.Prefix()
	open := func() *store.Store {
		st, err := store.New(store.Options{Client: r.Client(t), Prefix: prefix, EncryptionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
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
	f := &fleet{st: open(), signer: signer}
	if err := f.st.PublishJWKS(context.Background(), signer.JWKS()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st := open()
		cache := services.NewCache(st, store.CacheOptions{})
		v := auth.NewVerifier(st, auth.VerifierOptions{Revocations: st})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{}, 2)
		go func() { _ = cache.Run(ctx); done <- struct{}{} }()
		go func() { _ = v.Run(ctx); done <- struct{}{} }()
		t.Cleanup(func() { cancel(); <-done; <-done })
		srv := httptest.NewServer(services.New(services.Deps{Store: st, Cache: cache, Authenticate: v.AppInstance,
			Log: slog.New(slog.DiscardHandler)}))
		t.Cleanup(srv.Close)
		f.instances = append(f.instances, srv.URL)
	}
	return f
}

// provision gives app credentials and returns a token issued for them as
// the token function issues it.
func (f *fleet) provision(t *testing.T, app, ak string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := f.st.PutAppConf(ctx, store.AppConf{AppInstanceID: app, AccessKeyID: ak, SecretKey: []byte("secret-of-" + ak)}); err != nil {
		t.Fatal(err)
	}
	c, err := f.st.CredentialByAK(ctx, ak)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.signer.IssueGeneration(app, c.Generation, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call sends one request to instance i with tok and returns the status and
// body.
func (f *fleet) call(t *testing.T, i int, method, path, tok, body string) (int, []byte) {
	t.Helper()
	return testenv.Call(t, method, f.instances[i]+path, tok, body)
}

// until calls path on instance i until it answers want, and returns how
// long that took from since; it fails after 10 s.
func (f *fleet) until(t *testing.T, i int, want int, method, path, tok, body string, since time.Time) time.Duration {
	t.Helper()
	for {
		code, b := f.call(t, i, method, path, tok, body)
		if code == want {
			return time.Since(since)
		}
		if time.Since(since) > 10*time.Second {
			t.Fatalf("instance %d: %s %s answers %d %s, want %d", i, method, path, code, b, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// settled is call, repeated while the instance answers 503 (it had not
// followed the change stream for a second, as a loaded machine may make
// it): the answer it settles on.
func (f *fleet) settled(t *testing.T, i int, method, path, tok, body string) (int, []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := f.call(t, i, method, path, tok, body)
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return code, b
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRevokedTokenAcrossInstances is issue 13's item 1 on the services
// function: after the app's credentials are deleted, its AK rotated, or the
// app purged (the end of a termination), its token no longer registers a
// service on either instance, within one second; a token issued after the
// credentials are put back works, the old one does not.
func TestRevokedTokenAcrossInstances(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	tok := f.provision(t, "app-a", "ak-1")
	for i := range f.instances {
		f.until(t, i, http.StatusCreated, "POST", servicesPath("app-a"), tok, info(fmt.Sprintf("before-%d", i)), time.Now())
	}
	steps := []struct {
		name   string
		revoke func() error
		// again re-provisions the app and returns its new token.
		again func() string
	}{
		{"DELETE confs", func() error { return f.st.DeleteAppConf(ctx, "app-a") }, func() string { return f.provision(t, "app-a", "ak-1") }},
		{"AK rotation", func() error {
			_, err := f.st.PutAppConf(ctx, store.AppConf{AppInstanceID: "app-a", AccessKeyID: "ak-2", SecretKey: []byte("secret-of-ak-2")})
			return err
		}, func() string {
			c, err := f.st.CredentialByAK(ctx, "ak-2")
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := f.signer.IssueGeneration("app-a", c.Generation, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"termination (purge)", func() error { _, err := f.st.PurgeApp(ctx, "app-a"); return err }, func() string { return f.provision(t, "app-a", "ak-3") }},
	}
	for _, s := range steps {
		since := time.Now()
		if err := s.revoke(); err != nil {
			t.Fatal(err)
		}
		for i := range f.instances {
			d := f.until(t, i, http.StatusUnauthorized, "POST", servicesPath("app-a"), tok, info("after"), since)
			t.Logf("%s: instance %d refuses the token after %v", s.name, i, d)
			if d > time.Second {
				t.Errorf("%s: instance %d took %v, want within 1 s", s.name, i, d)
			}
			code, b := f.settled(t, i, "GET", base+"/services", tok, "")
			var pd problem.Details
			if err := json.Unmarshal(b, &pd); code != http.StatusUnauthorized || err != nil || pd.Detail != "token revoked" {
				t.Errorf("%s: discovery with the revoked token: %d %s", s.name, code, b)
			}
		}
		old := tok
		tok = s.again()
		for i := range f.instances {
			f.until(t, i, http.StatusCreated, "POST", servicesPath("app-a"), tok, info(fmt.Sprintf("%s-%d", s.name, i)), time.Now())
			if code, b := f.settled(t, i, "POST", servicesPath("app-a"), old, info("old")); code != http.StatusUnauthorized {
				t.Errorf("%s: the old token after re-provisioning: %d %s", s.name, code, b)
			}
		}
	}
}

// TestOtherAppsReads is issue 13's item 10 with real tokens over HTTP: an
// app's token reads another app's services only through discovery; under
// the other app's appInstanceId the list, a service and its liveness are
// 403 ProblemDetails.
func TestOtherAppsReads(t *testing.T) {
	f := newFleet(t)
	owner, other := f.provision(t, "app-a", "ak-a"), f.provision(t, "app-b", "ak-b")
	f.until(t, 0, http.StatusCreated, "POST", servicesPath("app-a"), owner, info("theirs", liveness(30)), time.Now())
	code, b := f.call(t, 0, "GET", servicesPath("app-a"), owner, "")
	var list []mec.ServiceInfo
	if err := json.Unmarshal(b, &list); code != http.StatusOK || err != nil || len(list) != 1 {
		t.Fatalf("owner's list: %d %s", code, b)
	}
	id := list[0].SerInstanceID
	tests := []struct {
		path   string
		tok    string
		status int
	}{
		{servicesPath("app-a"), other, http.StatusForbidden},
		{servicesPath("app-a") + "?ser_name=theirs", other, http.StatusForbidden},
		{servicePath("app-a", id), other, http.StatusForbidden},
		{livenessPath("app-a", id), other, http.StatusForbidden},
		{servicePath("app-a", id), owner, http.StatusOK},
		{livenessPath("app-a", id), owner, http.StatusOK},
		{base + "/services?ser_name=theirs", other, http.StatusOK},
		{base + "/services/" + id, other, http.StatusOK},
	}
	for _, tc := range tests {
		for i := range f.instances {
			t.Run(fmt.Sprintf("%s instance %d", tc.path, i), func(t *testing.T) {
				code := 0
				var b []byte
				// The other instance's cache may need a moment to hold the service.
				deadline := time.Now().Add(10 * time.Second)
				for code != tc.status && time.Now().Before(deadline) {
					code, b = f.call(t, i, "GET", tc.path, tc.tok, "")
					if code == http.StatusNotFound {
						time.Sleep(time.Millisecond)
						continue
					}
					break
				}
				if code != tc.status {
					t.Fatalf("status %d, want %d: %s", code, tc.status, b)
				}
				if tc.status == http.StatusForbidden {
					var pd problem.Details
					if err := json.Unmarshal(b, &pd); err != nil || pd.Status != http.StatusForbidden || !strings.Contains(pd.Detail, `"app-a"`) {
						t.Errorf("ProblemDetails %s (%v)", b, err)
					}
				}
			})
		}
	}
}
