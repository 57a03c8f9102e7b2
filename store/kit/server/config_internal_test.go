package server

import (
	"runtime/debug"
	"strings"
	"testing"
)

type testConfig struct {
	Serve
	Timeout PositiveDuration `envconfig:"KMEP_TEST_TIMEOUT" default:"5s" desc:"a bound"`
	Name    string           `envconfig:"KMEP_TEST_NAME" required:"true" desc:"a name"`
}

// --version and -h answer and exit 0, anything else exits 2; no
// argument goes on to start the binary.
func TestHandleArgs(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		code        int
		done        bool
		out, errOut string
	}{
		{args: nil},
		{args: []string{"--version"}, done: true, out: "testbin "},
		{args: []string{"-h"}, done: true, out: "KMEP_TEST_TIMEOUT"},
		{args: []string{"--help"}, done: true, out: "PORT"},
		{args: []string{"serve"}, code: 2, done: true, errOut: `unexpected argument "serve"`},
		{args: []string{"-h", "x"}, code: 2, done: true, errOut: "Usage: testbin"},
	} {
		var out, errOut strings.Builder
		code, done := handleArgs(&out, &errOut, "testbin", &testConfig{}, tc.args)
		if code != tc.code || done != tc.done || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
			t.Errorf("%v: code %d done %v out %q err %q", tc.args, code, done, out.String(), errOut.String())
		}
	}
	var out strings.Builder
	_ = Usage(&out, "testbin", &testConfig{})
	for _, want := range []string{"KMEP_LOG_LEVEL", "info", "PORT", "8080", "KMEP_TEST_TIMEOUT", "5s", "a bound", "KMEP_TEST_NAME", "true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

// Parse applies defaults (also to empty variables), and a bad value is an
// error naming the variable.
func TestParse(t *testing.T) {
	t.Setenv("KMEP_TEST_NAME", "n")
	t.Setenv("PORT", "")
	var c testConfig
	if err := Parse(&c); err != nil {
		t.Fatal(err)
	}
	if c.Port != "8080" || c.Addr() != ":8080" || c.LogLevel != "info" || c.Timeout.String() != "5s" {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range [][2]string{{"PORT", "abc"}, {"PORT", "70000"}, {"KMEP_TEST_TIMEOUT", "0s"}, {"KMEP_TEST_TIMEOUT", "soon"}} {
		t.Run(bad[0]+"="+bad[1], func(t *testing.T) {
			t.Setenv(bad[0], bad[1])
			var c testConfig
			if err := Parse(&c); err == nil || !strings.HasPrefix(err.Error(), bad[0]+":") {
				t.Fatalf("Parse = %v, want an error naming %s", err, bad[0])
			}
		})
	}
	t.Setenv("KMEP_TEST_NAME", "")
	if err := Parse(&testConfig{}); err == nil || !strings.Contains(err.Error(), "KMEP_TEST_NAME") {
		t.Fatalf("Parse without a required variable = %v", err)
	}
}

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}
	read := func() (*debug.BuildInfo, bool) { return bi, true }
	if v := versionOf("", read); v != "v1.2.3 revision abc modified" {
		t.Errorf("build info: %q", v)
	}
	if v := versionOf("v9", read); v != "v9" {
		t.Errorf("linked: %q", v)
	}
}
