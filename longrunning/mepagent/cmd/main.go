// Command mep-agent is the sidecar of an app's pod (package mepagent): a
// drop-in for EdgeGallery's mep-agent. It gets the app's token, registers
// and heartbeats its services, creates its subscriptions, serves the app
// /mep-agent/v1/token and /mep-agent/v1/endpoint/{serName}, and on SIGTERM
// deregisters the services.
//
// Its settings are the environment, read once at start; -h lists them,
// --version prints the version, and any other argument exits 2 (as every
// kmep binary: server.Main):
//
//	KMEP_URL               the platform, e.g. http://127.0.0.1:8080; wins over the next three
//	MEP_IP, MEP_APIGW_PORT the platform as EdgeGallery names it (https://MEP_IP:MEP_APIGW_PORT)
//	MEP_SCHEME             https (default) or http, with MEP_IP
//	AK, SK                 the app's access key and secret key (also ak, sk); removed from the environment once read
//	APPINSTID              the app instance id (default: appInstanceId of app_instance_info.yaml)
//	APP_INSTANCE_INFO      path of app_instance_info.yaml (default ./conf/app_instance_info.yaml;
//	                       when the default file is missing, nothing is registered)
//	MEP_CA_CERT            PEM file of the CA the platform's certificate chains to (default: system roots)
//	MEP_TLS_INSECURE       true: do not verify the platform's certificate (laptops only)
//	MEP_AGENT_ADDR         listen address of the agent's API (default 127.0.0.1:8090)
//	MEP_AGENT_DEREGISTER   delete the services on SIGTERM (default true)
//	KMEP_HEALTH_ADDR       listen address of GET /healthz and GET /metrics (the agent's token
//	                       fetches, registrations and heartbeats by outcome), e.g. :8091
//	                       (default: none, no such port)
//	KMEP_LOG_LEVEL         debug, info (default), warn or error
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/kmep-io/kmep/longrunning/mepagent"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

// defaultInfoPath is where EdgeGallery's mep-agent reads its file.
const defaultInfoPath = "./conf/app_instance_info.yaml"

func main() { server.Main("mep-agent", run) }

// config is the binary's environment (server.Main reads it). EdgeGallery's
// lower-case ak and sk are not in it (envconfig upper-cases every name):
// fromEnv reads them when AK and SK are unset.
type config struct {
	server.Base
	URL           string `envconfig:"KMEP_URL" desc:"the platform, e.g. http://127.0.0.1:8080; wins over MEP_IP and MEP_APIGW_PORT"`
	MEPIP         string `envconfig:"MEP_IP" desc:"the platform's host as EdgeGallery names it (MEP_SCHEME://MEP_IP:MEP_APIGW_PORT)"`
	MEPPort       string `envconfig:"MEP_APIGW_PORT" desc:"the platform's port, with MEP_IP"`
	Scheme        string `envconfig:"MEP_SCHEME" default:"https" desc:"https or http, with MEP_IP"`
	AK            string `envconfig:"AK" desc:"the app's access key (unset: ak); removed from the environment once read"`
	SK            string `envconfig:"SK" desc:"the app's secret key (unset: sk); removed from the environment once read"`
	AppInstanceID string `envconfig:"APPINSTID" desc:"the app instance id (unset: appInstanceId of app_instance_info.yaml)"`
	InfoPath      string `envconfig:"APP_INSTANCE_INFO" desc:"path of app_instance_info.yaml, which must exist (unset: ./conf/app_instance_info.yaml; when that is missing, nothing is registered)"`
	CACert        string `envconfig:"MEP_CA_CERT" desc:"PEM file of the CA the platform's certificate chains to (unset: system roots)"`
	TLSInsecure   bool   `envconfig:"MEP_TLS_INSECURE" default:"false" desc:"true: do not verify the platform's certificate (laptops only)"`
	Addr          string `envconfig:"MEP_AGENT_ADDR" default:"127.0.0.1:8090" desc:"listen address of the agent's API (loopback: other pods must not read the app's token)"`
	Deregister    bool   `envconfig:"MEP_AGENT_DEREGISTER" default:"true" desc:"delete the services on SIGTERM"`
	HealthAddr    string `envconfig:"KMEP_HEALTH_ADDR" desc:"listen address of GET /healthz and GET /metrics, e.g. :8091 (unset: no such port)"`
}

// settings is what the agent is built from.
type settings struct {
	cfg    mepagent.Config
	client mepagent.ClientOptions
	// infoPath is app_instance_info.yaml; infoExplicit says whether
	// APP_INSTANCE_INFO named it (then it must exist).
	infoPath     string
	infoExplicit bool
}

// fromEnv checks c and turns it into settings; getenv reads EdgeGallery's
// lower-case ak and sk, which c cannot hold.
func fromEnv(c config, getenv func(string) string) (settings, error) {
	var s settings
	base, err := baseURL(c)
	if err != nil {
		return s, err
	}
	s.cfg.BaseURL = base
	s.cfg.AccessKey = first(c.AK, getenv("ak"))
	sk := first(c.SK, getenv("sk"))
	if s.cfg.AccessKey == "" || sk == "" {
		return s, errors.New("AK and SK must be set")
	}
	s.cfg.SecretKey = []byte(sk)
	s.cfg.AppInstanceID = c.AppInstanceID
	s.cfg.Addr = c.Addr
	s.cfg.DeregisterOnStop = c.Deregister
	s.client.InsecureSkipVerify = c.TLSInsecure
	s.client.CAFile = c.CACert
	s.infoPath = c.InfoPath
	s.infoExplicit = s.infoPath != ""
	if !s.infoExplicit {
		s.infoPath = defaultInfoPath
	}
	return s, nil
}

// baseURL is KMEP_URL, else MEP_SCHEME://MEP_IP:MEP_APIGW_PORT.
func baseURL(c config) (string, error) {
	if c.URL != "" {
		return c.URL, nil
	}
	ip, port := c.MEPIP, c.MEPPort
	if ip == "" || port == "" {
		return "", errors.New("set KMEP_URL, or MEP_IP and MEP_APIGW_PORT")
	}
	if strings.ContainsAny(ip, "/?#@ ") {
		return "", fmt.Errorf("MEP_IP: %q is not a host name or an IP address", ip)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("MEP_APIGW_PORT: %q is not a port", port)
	}
	scheme := strings.ToLower(first(c.Scheme, "https"))
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("MEP_SCHEME: want https or http, not %q", scheme)
	}
	return scheme + "://" + net.JoinHostPort(strings.Trim(ip, "[]"), port), nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// loadInfo reads app_instance_info.yaml and logs what it ignores.
func loadInfo(log *slog.Logger, path string, explicit bool) (mepagent.AppInstanceInfo, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		log.Warn("no app_instance_info.yaml: registering nothing", "path", path)
		return mepagent.AppInstanceInfo{}, nil
	}
	if err != nil {
		return mepagent.AppInstanceInfo{}, fmt.Errorf("APP_INSTANCE_INFO: %w", err)
	}
	info, unknown, err := mepagent.ParseAppInstanceInfo(data)
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	for _, u := range unknown {
		log.Warn("app_instance_info.yaml: unknown member ignored", "member", u)
	}
	return info, nil
}

func run(ctx context.Context, log *slog.Logger, c config) error {
	s, err := fromEnv(c, os.Getenv)
	for _, k := range []string{"AK", "SK", "ak", "sk"} {
		_ = os.Unsetenv(k) // no child process inherits them
	}
	if err != nil {
		return err
	}
	defer clear(s.cfg.SecretKey)
	if s.cfg.Info, err = loadInfo(log, s.infoPath, s.infoExplicit); err != nil {
		return err
	}
	if s.cfg.AppInstanceID == "" {
		s.cfg.AppInstanceID = s.cfg.Info.AppInstanceID
	}
	if s.cfg.AppInstanceID == "" {
		return errors.New("APPINSTID must be set (or appInstanceId in app_instance_info.yaml)")
	}
	if s.client.InsecureSkipVerify {
		log.Warn("MEP_TLS_INSECURE=true: the platform's certificate is not verified")
	}
	client, err := mepagent.NewHTTPClient(s.client)
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	a, err := mepagent.New(s.cfg, mepagent.Deps{Client: client, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	return server.RunAgent(ctx, server.AgentOptions{HealthAddr: c.HealthAddr, Handler: metrics.Mount(reg, nil), Log: log}, a.Run)
}
