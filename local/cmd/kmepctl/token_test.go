package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunToken(t *testing.T) {
	srv := newTokenServer(t)
	target := srv.URL + "/mep/token"

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		now        time.Time
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "signed request gets a token",
			args:       []string{"--ak", testAK, "--sk", testSK, "--url", target},
			wantCode:   exitOK,
			wantStdout: testToken + "\n",
		},
		{
			name:       "keys from the environment",
			env:        map[string]string{envAK: testAK, envSK: testSK},
			args:       []string{"--url", target},
			wantCode:   exitOK,
			wantStdout: testToken + "\n",
		},
		{
			name:       "wrong secret key prints the problem body",
			args:       []string{"--ak", testAK, "--sk", testSK + "x", "--url", target},
			wantCode:   exitFailure,
			wantStderr: `"detail":"request not authenticated: signature mismatch"`,
		},
		{
			name:       "stale date is refused",
			args:       []string{"--ak", testAK, "--sk", testSK, "--url", target},
			now:        time.Now().Add(-time.Hour),
			wantCode:   exitFailure,
			wantStderr: "token endpoint answered 401 Unauthorized",
		},
		{
			name:       "wrong path",
			args:       []string{"--ak", testAK, "--sk", testSK, "--url", srv.URL + "/mep/other"},
			wantCode:   exitFailure,
			wantStderr: "want POST /mep/token",
		},
		{
			name:       "nothing listening",
			args:       []string{"--ak", testAK, "--sk", testSK, "--url", "http://127.0.0.1:1/mep/token"},
			wantCode:   exitFailure,
			wantStderr: "kmepctl: token request:",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = time.Now()
			}
			code, stdout, stderr := runCLI(t, tc.env, now, append([]string{"token"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if stdout != tc.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.wantStderr)
			}
		})
	}

	t.Run("signs like mep-agent", func(t *testing.T) {
		if code, _, stderr := runCLI(t, nil, time.Now(), "token", "--ak", testAK, "--sk", testSK, "--url", target); code != exitOK {
			t.Fatalf("exit code %d, stderr %q", code, stderr)
		}
		if got, want := <-srv.lastSigned, []string{"content-type", "host", "x-sdk-date"}; !slices.Equal(got, want) {
			t.Errorf("signed headers %v, want %v", got, want)
		}
	})
}

func TestFetchTokenResponses(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantToken  string
		wantErr    string
		wantStatus int
	}{
		{"token", 200, `{"access_token":"abc.def.ghi","token_type":"Bearer","expires_in":3600}`, "abc.def.ghi", "", 0},
		{"201 is fine", 201, `{"access_token":"t"}`, "t", "", 0},
		{"not json", 200, `<html>`, "", "decode token response", 0},
		{"no token", 200, `{"token_type":"Bearer"}`, "", "no access_token", 0},
		{"token with newline", 200, `{"access_token":"a\nb"}`, "", "white space", 0},
		{"forbidden", 403, `{"status":403,"detail":"access is locked"}`, "", "answered 403 Forbidden", 403},
		{"server error", 500, "", "", "answered 500", 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()

			tok, err := fetchToken(context.Background(), srv.Client(), srv.URL+"/mep/token", testAK, []byte(testSK), time.Now())
			if tc.wantErr == "" {
				if err != nil || tok != tc.wantToken {
					t.Fatalf("fetchToken = %q, %v; want %q", tok, err, tc.wantToken)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("fetchToken = %q, %v; want an error containing %q", tok, err, tc.wantErr)
			}
			var se *statusError
			if errors.As(err, &se) != (tc.wantStatus != 0) {
				t.Fatalf("fetchToken error %v: statusError %v, want %v", err, se != nil, tc.wantStatus != 0)
			}
			if se != nil && (se.code != tc.wantStatus || string(se.body) != tc.body) {
				t.Errorf("statusError = %d %q, want %d %q", se.code, se.body, tc.wantStatus, tc.body)
			}
		})
	}
}

func TestFetchTokenCanceled(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := fetchToken(ctx, srv.Client(), srv.URL+"/mep/token", testAK, []byte(testSK), time.Now())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fetchToken = %v, want context.DeadlineExceeded", err)
	}
}
