package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/aksk"
)

func TestCurlHost(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"http://127.0.0.1:8080/mep/token", "127.0.0.1:8080"},
		{"http://127.0.0.1/mep/token", "127.0.0.1"},
		{"http://mep:80/mep/token", "mep"},
		{"https://mep:443/mep/token", "mep"},
		{"https://mep:80/mep/token", "mep:80"},
		{"http://mep:443/mep/token", "mep:443"},
		{"http://mep:/mep/token", "mep"},
		{"http://[::1]:8080/mep/token", "[::1]:8080"},
		{"http://[::1]:80/mep/token", "[::1]"},
		{"http://user:pw@mep:8080/mep/token", "mep:8080"},
		{"http://MEP.Example:8080/", "MEP.Example:8080"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := curlHost(u); got != tc.want {
				t.Errorf("curlHost(%q) = %q, want %q", tc.url, got, tc.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "''"},
		{"20260623T101500Z", "'20260623T101500Z'"},
		{"SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date", "'SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date'"},
		{"it's", `'it'\''s'`},
		{"$HOME `x` \"y\"", "'$HOME `x` \"y\"'"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := shellQuote(tc.in); got != tc.want {
				t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// parseSignOutput reads the two lines `kmepctl sign` prints, undoing
// shellQuote.
func parseSignOutput(t *testing.T, out string) (date, authorization string) {
	t.Helper()
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		name, quoted, ok := strings.Cut(line, "=")
		if !ok || len(quoted) < 2 || quoted[0] != '\'' || quoted[len(quoted)-1] != '\'' {
			t.Fatalf("sign printed a line that is not NAME='value': %q", line)
		}
		vars[name] = strings.ReplaceAll(quoted[1:len(quoted)-1], `'\''`, "'")
	}
	if len(vars) != 2 || vars["KMEP_SDK_DATE"] == "" || vars["KMEP_AUTHORIZATION"] == "" {
		t.Fatalf("sign printed %q, want KMEP_SDK_DATE and KMEP_AUTHORIZATION", out)
	}
	return vars["KMEP_SDK_DATE"], vars["KMEP_AUTHORIZATION"]
}

// TestSignVerifiesAsCurlRequest checks the sign output against requests
// built the way curl sends them: Host as curl writes it, the two -H headers,
// curl's own User-Agent and Accept, and the --data-raw body.
func TestSignVerifiesAsCurlRequest(t *testing.T) {
	now := time.Date(2026, 6, 23, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		method   string
		target   string // request target curl sends
		host     string // Host curl sends
		body     string
		wantDate string
	}{
		{
			name:   "README walkthrough",
			args:   []string{"--ak", testAK, "--sk", testSK, "--url", "http://127.0.0.1:8080/mep/token"},
			method: "POST", target: "/mep/token", host: "127.0.0.1:8080",
		},
		{
			name:   "keys from the environment",
			args:   []string{"--url", "http://127.0.0.1:8080/mep/token"},
			env:    map[string]string{envAK: testAK, envSK: testSK},
			method: "POST", target: "/mep/token", host: "127.0.0.1:8080",
		},
		{
			name:   "flags win over the environment",
			args:   []string{"--ak", testAK, "--sk", testSK, "--url", "http://127.0.0.1:8080/mep/token"},
			env:    map[string]string{envAK: "OTHERAK", envSK: "other"},
			method: "POST", target: "/mep/token", host: "127.0.0.1:8080",
		},
		{
			name:   "default port left out like curl does",
			args:   []string{"--ak", testAK, "--sk", testSK, "--url", "http://mep.local:80/mep/token"},
			method: "POST", target: "/mep/token", host: "mep.local",
		},
		{
			name: "method, query and body",
			args: []string{"--ak", testAK, "--sk", testSK, "--method", "PUT", "--body", `{"a":"b c"}`,
				"--url", "https://[::1]:8443/mep/x/y?b=2&a=1"},
			method: "PUT", target: "/mep/x/y?b=2&a=1", host: "[::1]:8443", body: `{"a":"b c"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.env, now, append([]string{"sign"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit code %d, stderr %q", code, stderr)
			}
			date, auth := parseSignOutput(t, stdout)
			if date != "20260623T101500Z" {
				t.Errorf("KMEP_SDK_DATE = %q, want 20260623T101500Z", date)
			}
			a, err := aksk.ParseAuthorization(auth)
			if err != nil {
				t.Fatalf("KMEP_AUTHORIZATION %q: %v", auth, err)
			}
			if want := []string{"host", "x-sdk-date"}; !slices.Equal(a.SignedHeaders, want) {
				t.Errorf("SignedHeaders = %v, want %v", a.SignedHeaders, want)
			}

			// The request as a Go server receives what curl sends.
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"+
				"x-sdk-date: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s",
				tc.method, tc.target, tc.host, date, auth, len(tc.body), tc.body)
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if err := aksk.Verify(r, []byte(tc.body), []byte(testSK), a); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if err := aksk.Verify(r, []byte(tc.body+" "), []byte(testSK), a); err == nil {
				t.Error("Verify accepted another body")
			}
			r.Host += "0"
			if err := aksk.Verify(r, []byte(tc.body), []byte(testSK), a); err == nil {
				t.Error("Verify accepted another host")
			}
		})
	}
}

// TestSignOverTheWire sends the README's request to a verifying server,
// first as curl's bytes over a plain TCP connection, then (when curl is
// installed) with curl itself after eval in sh.
func TestSignOverTheWire(t *testing.T) {
	srv := newTokenServer(t)
	target := srv.URL + "/mep/token"
	host := strings.TrimPrefix(srv.URL, "http://")

	t.Run("curl's bytes", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, time.Now(), "sign", "--ak", testAK, "--sk", testSK, "--url", target)
		if code != exitOK {
			t.Fatalf("exit code %d, stderr %q", code, stderr)
		}
		date, auth := parseSignOutput(t, stdout)
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /mep/token HTTP/1.1\r\nHost: %s\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"+
			"x-sdk-date: %s\r\nAuthorization: %s\r\n\r\n", host, date, auth)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})

	t.Run("eval and curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl is not installed")
		}
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Skip("sh is not installed")
		}
		code, stdout, stderr := runCLI(t, nil, time.Now(), "sign", "--ak", testAK, "--sk", testSK, "--url", target)
		if code != exitOK {
			t.Fatalf("exit code %d, stderr %q", code, stderr)
		}
		script := `eval "$1"; "$2" -sS -f -X POST -H "x-sdk-date: $KMEP_SDK_DATE" -H "Authorization: $KMEP_AUTHORIZATION" "$3"`
		out, err := exec.Command(sh, "-c", script, "sh", stdout, curl, target).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), testToken) {
			t.Errorf("curl got %q, want the token", out)
		}
		if got := <-srv.lastSigned; !slices.Equal(got, []string{"host", "x-sdk-date"}) {
			t.Errorf("curl request signed %v", got)
		}
	})
}
