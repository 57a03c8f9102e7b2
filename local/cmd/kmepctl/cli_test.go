package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/csar"
	"github.com/kmep-io/kmep/store/kit/aksk"
)

const (
	testAK    = "QVUJMSUMGS0VZLS0TLS0"
	testSK    = "0QHhZfmFmTFFNy3eDXLUY_zWrh4GVhTXE6BXQXxQ"
	testToken = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJhcHAtMSJ9.c2ln"
)

// tokenServer is a stand-in for the token function: it verifies the
// signature with testSK, checks the date against the real clock, and answers
// a token or a 401 ProblemDetails. It records the last request's signed
// headers.
type tokenServer struct {
	*httptest.Server
	lastSigned chan []string
}

func newTokenServer(t *testing.T) *tokenServer {
	t.Helper()
	ts := &tokenServer{lastSigned: make(chan []string, 1)}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := ts.verify(r, body); err != nil {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"status": 401, "detail": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": testToken, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) verify(r *http.Request, body []byte) error {
	if r.Method != http.MethodPost || r.URL.Path != "/mep/token" {
		return errors.New("want POST /mep/token")
	}
	a, err := aksk.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	select {
	case <-ts.lastSigned:
	default:
	}
	ts.lastSigned <- a.SignedHeaders
	if a.AccessKey != testAK {
		return errors.New("unknown access key")
	}
	if err := aksk.Verify(r, body, []byte(testSK), a); err != nil {
		return err
	}
	date, err := aksk.ParseDate(r.Header.Get(aksk.DateHeader))
	if err != nil {
		return err
	}
	return aksk.CheckSkew(date, time.Now(), 5*time.Minute)
}

// runCLI runs kmepctl with args and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env map[string]string, now time.Time, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, deps{
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		now:    func() time.Time { return now },
		rand:   rand.Reader,
		client: &http.Client{},
	})
	return code, stdout.String(), stderr.String()
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no command", nil, nil, exitUsage, "Usage:"},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"sign without keys", nil, []string{"sign", "--url", "http://127.0.0.1:8080/mep/token"}, exitUsage, "pass --ak or set KMEP_AK"},
		{"sign without sk", nil, []string{"sign", "--ak", testAK, "--url", "http://127.0.0.1:8080/mep/token"}, exitUsage, "pass --sk or set KMEP_SK"},
		{"sign without url", map[string]string{envAK: testAK, envSK: testSK}, []string{"sign"}, exitUsage, "no --url"},
		{"token without url", map[string]string{envAK: testAK, envSK: testSK}, []string{"token"}, exitUsage, "no --url"},
		{"unknown flag", nil, []string{"sign", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{"bad flag value", nil, []string{"token", "--timeout", "soon"}, exitUsage, `invalid argument "soon" for "--timeout"`},
		{"unknown resource", nil, []string{"list", "widgets"}, exitUsage, `unknown resource "widgets"`},
		{"no resource", nil, []string{"get"}, exitUsage, "no resource: want one of services, apps,"},
		{"bad output", nil, []string{"list", "services", "-o", "xml"}, exitUsage, `-o "xml": want one of "table", "json", "yaml"`},
		{"get with two ids", nil, []string{"get", "services", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{"packages without tenant", map[string]string{envAdminToken: "t"}, []string{"list", "packages"}, exitUsage, "packages are per tenant: pass --tenant"},
		{"rule without app", map[string]string{envAdminToken: "t"}, []string{"get", "rules", "r1"}, exitUsage, "rules are per app: pass --app"},
		{"bad server", map[string]string{envURL: "ftp://x"}, []string{"list", "services", "--token", "t"}, exitUsage, "--server:"},
		{"unreadable token file", nil, []string{"list", "services", "--token-file", "/nonexistent/token"}, exitFailure, "admin token: open /nonexistent/token"},
		{"stray argument", nil, []string{"keygen", "extra"}, exitUsage, `unexpected argument "extra"`},

		{"bad url scheme", nil, []string{"sign", "--ak", testAK, "--sk", testSK, "--url", "ftp://x/mep/token"}, exitFailure, "scheme must be http or https"},
		{"relative url", nil, []string{"sign", "--ak", testAK, "--sk", testSK, "--url", "/mep/token"}, exitFailure, "scheme must be http or https"},
		{"bad access key", nil, []string{"sign", "--ak", "A K", "--sk", testSK, "--url", "http://h/mep/token"}, exitFailure, "invalid character in access key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.env, time.Now(), tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.wantStderr)
			}
			if tc.wantCode != exitOK && stdout != "" {
				t.Errorf("stdout = %q on failure, want nothing", stdout)
			}
		})
	}
}

func TestRunKeygen(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, time.Now(), "keygen")
	if code != exitOK {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("keygen printed %q, want two lines", stdout)
	}
	ak, okAK := strings.CutPrefix(lines[0], "AK=")
	sk, okSK := strings.CutPrefix(lines[1], "SK=")
	if !okAK || !okSK || !akPattern.MatchString(ak) || !skPattern.MatchString(sk) {
		t.Errorf("keygen printed %q, want AK=<20 [A-Z0-9]> and SK=<40 base64url>", stdout)
	}
}

func TestCSARWritesAValidPackage(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"csar", "--name", "shop"}, deps{stdout: &out, stderr: &errb})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	p, err := csar.Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if p.AppName != "shop" || len(p.Charts) != 1 {
		t.Errorf("package: %+v", p)
	}
}

// -h prints the command's usage with its flags on stdout and exits 0.
func TestRunHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sign", "-h"}, []string{"--sk key", "--ak key", "--url URL", "--method method"}},
		{[]string{"list", "--help"}, []string{"-o, --output format", "--app appInstanceId", "--tenant tenantId", "--server URL", "--token-file file"}},
		{[]string{"watch", "-h"}, []string{"--interval duration"}},
	} {
		code, stdout, stderr := runCLI(t, nil, time.Now(), tc.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: help misses %q:\n%s", tc.args, w, stdout)
			}
		}
	}
}

func TestRunVersion(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, time.Now(), "--version")
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "kmepctl ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// completion writes each shell's script, and the script's completions
// offer the resources and the output formats.
func TestRunCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for kmepctl",
		"zsh":  "#compdef kmepctl",
		"fish": "# fish completion for kmepctl",
	} {
		code, stdout, stderr := runCLI(t, nil, time.Now(), "completion", shell)
		if code != exitOK || !strings.Contains(stdout, want) || !strings.Contains(stdout, "__complete") {
			t.Errorf("completion %s: exit %d, stderr %q, script starts %q", shell, code, stderr, stdout[:min(len(stdout), 80)])
		}
	}
	// What the scripts call: kmepctl __complete ARGS... prints candidates.
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "list", ""}, []string{"services\t", "apps\t", "subscriptions\t", "rules\t", "packages\t", "instances\t", "deadletters\t"}},
		{[]string{"__complete", "get", "services", "-o", ""}, []string{"table\n", "json\n", "yaml\n"}},
		{[]string{"__complete", ""}, []string{"get\t", "list\t", "watch\t", "token\t", "sign\t", "keygen\t", "csar\t", "completion\t"}},
	} {
		code, stdout, stderr := runCLI(t, nil, time.Now(), tc.args...)
		if code != exitOK {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: misses %q:\n%s", tc.args, w, stdout)
			}
		}
	}
}
