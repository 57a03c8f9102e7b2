package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmep-io/kmep/store/kit/server"
)

// parseEnv reads env as the binary does: server.Main's Parse into its
// config (every other variable of it unset), then fromEnv with the
// lower-case ak and sk of env.
func parseEnv(t *testing.T, env map[string]string) (settings, error) {
	t.Helper()
	keys, err := server.Keys(&config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		t.Setenv(k, env[k]) // empty counts as unset
	}
	var c config
	if err := server.Parse(&c); err != nil {
		return settings{}, err
	}
	return fromEnv(c, func(k string) string { return env[k] })
}

// The environment as EdgeGallery's mep-agent takes it (MEP_IP,
// MEP_APIGW_PORT, AK/SK or ak/sk) and as kmep adds to it (KMEP_URL), with
// each bad value refused naming its variable.
func TestFromEnv(t *testing.T) {
	creds := map[string]string{"AK": "AKAPP", "SK": "secret"}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range creds {
			out[k] = v
		}
		for k, v := range m {
			if v == "-" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		base       string
		addr       string
		deregister bool
		insecure   bool
		info       string
		explicit   bool
		ak, sk     string // the credentials read; empty: any
		err        string
	}{
		{name: "EdgeGallery", env: with(map[string]string{"MEP_IP": "192.168.1.10", "MEP_APIGW_PORT": "8443", "APPINSTID": "app-1"}),
			base: "https://192.168.1.10:8443", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath},
		{name: "plain HTTP", env: with(map[string]string{"MEP_IP": "mep.local", "MEP_APIGW_PORT": "80", "MEP_SCHEME": "http"}),
			base: "http://mep.local:80", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath},
		{name: "IPv6", env: with(map[string]string{"MEP_IP": "fd00::1", "MEP_APIGW_PORT": "8443"}),
			base: "https://[fd00::1]:8443", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath},
		{name: "KMEP_URL wins", env: with(map[string]string{"KMEP_URL": "http://127.0.0.1:8080", "MEP_IP": "10.0.0.1", "MEP_APIGW_PORT": "8443",
			"MEP_AGENT_ADDR": "127.0.0.1:9000", "MEP_AGENT_DEREGISTER": "false", "MEP_TLS_INSECURE": "true", "APP_INSTANCE_INFO": "/etc/x.yaml"}),
			base: "http://127.0.0.1:8080", addr: "127.0.0.1:9000", insecure: true, info: "/etc/x.yaml", explicit: true},
		{name: "lower-case ak sk", env: map[string]string{"KMEP_URL": "http://h", "ak": "A", "sk": "S"},
			base: "http://h", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath},
		{name: "upper-case wins", env: map[string]string{"KMEP_URL": "http://h", "AK": "A", "SK": "S", "ak": "a", "sk": "s"},
			base: "http://h", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath, ak: "A", sk: "S"},
		{name: "upper-case SK, lower-case ak", env: map[string]string{"KMEP_URL": "http://h", "ak": "a", "SK": "S"},
			base: "http://h", addr: "127.0.0.1:8090", deregister: true, info: defaultInfoPath, ak: "a", sk: "S"},
		{name: "no AK", env: map[string]string{"KMEP_URL": "http://h", "SK": "S"}, err: "AK and SK"},
		{name: "bad insecure", env: with(map[string]string{"KMEP_URL": "http://h", "MEP_TLS_INSECURE": "yes please"}), err: "MEP_TLS_INSECURE"},
		{name: "no platform", env: with(nil), err: "KMEP_URL"},
		{name: "no port", env: with(map[string]string{"MEP_IP": "10.0.0.1"}), err: "MEP_APIGW_PORT"},
		{name: "bad port", env: with(map[string]string{"MEP_IP": "10.0.0.1", "MEP_APIGW_PORT": "99999"}), err: "MEP_APIGW_PORT"},
		{name: "bad host", env: with(map[string]string{"MEP_IP": "10.0.0.1/x", "MEP_APIGW_PORT": "1"}), err: "MEP_IP"},
		{name: "bad scheme", env: with(map[string]string{"MEP_IP": "h", "MEP_APIGW_PORT": "1", "MEP_SCHEME": "ftp"}), err: "MEP_SCHEME"},
		{name: "no SK", env: with(map[string]string{"KMEP_URL": "http://h", "SK": "-"}), err: "AK and SK"},
		{name: "bad deregister", env: with(map[string]string{"KMEP_URL": "http://h", "MEP_AGENT_DEREGISTER": "maybe"}), err: "MEP_AGENT_DEREGISTER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseEnv(t, tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.cfg.BaseURL != tc.base || s.cfg.Addr != tc.addr || s.cfg.DeregisterOnStop != tc.deregister ||
				s.client.InsecureSkipVerify != tc.insecure || s.infoPath != tc.info || s.infoExplicit != tc.explicit {
				t.Fatalf("got %+v %+v %q %v", s.cfg, s.client, s.infoPath, s.infoExplicit)
			}
			if s.cfg.AccessKey == "" || len(s.cfg.SecretKey) == 0 {
				t.Fatal("credentials not read")
			}
			if tc.ak != "" && (s.cfg.AccessKey != tc.ak || string(s.cfg.SecretKey) != tc.sk) {
				t.Fatalf("credentials %q %q, want %q %q", s.cfg.AccessKey, s.cfg.SecretKey, tc.ak, tc.sk)
			}
		})
	}
}

func TestLoadInfo(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("appInstanceId: a1\nserviceInfoPosts:\n  - serName: s\n    color: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("serviceInfoPosts: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     string
		explicit bool
		err      bool
		services int
		log      string
	}{
		{name: "default path missing", path: filepath.Join(dir, "none.yaml"), log: "registering nothing"},
		{name: "explicit path missing", path: filepath.Join(dir, "none.yaml"), explicit: true, err: true},
		{name: "unknown member logged", path: good, services: 1, log: "serviceInfoPosts[0].color (line 4)"},
		{name: "wrong type", path: bad, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			info, err := loadInfo(slog.New(slog.NewTextHandler(&logs, nil)), tc.path, tc.explicit)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if len(info.ServiceInfoPosts) != tc.services || !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("services %d, logs %s", len(info.ServiceInfoPosts), logs.String())
			}
		})
	}
}
