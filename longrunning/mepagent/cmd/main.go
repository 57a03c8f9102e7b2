// Command mep-agent is the sidecar of an app's pod (package mepagent): a
// drop-in for EdgeGallery's mep-agent. It gets the app's token, registers
// and heartbeats its services, creates its subscriptions, serves the app
// /mep-agent/v1/token and /mep-agent/v1/endpoint/{serName}, and on SIGTERM
// deregisters the services.
//
// Environment:
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
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kmep-io/kmep/longrunning/mepagent"
	"github.com/kmep-io/kmep/store/kit/server"
)

// defaultInfoPath is where EdgeGallery's mep-agent reads its file.
const defaultInfoPath = "./conf/app_instance_info.yaml"

func main() {
	log := server.NewLogger(os.Stderr, "mep-agent", os.Getenv("KMEP_LOG_LEVEL"))
	if err := run(log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// settings is the environment, read once.
type settings struct {
	cfg    mepagent.Config
	client mepagent.ClientOptions
	// infoPath is app_instance_info.yaml; infoExplicit says whether
	// APP_INSTANCE_INFO named it (then it must exist).
	infoPath     string
	infoExplicit bool
}

func fromEnv(getenv func(string) string) (settings, error) {
	var s settings
	base, err := baseURL(getenv)
	if err != nil {
		return s, err
	}
	s.cfg.BaseURL = base
	s.cfg.AccessKey = first(getenv("AK"), getenv("ak"))
	sk := first(getenv("SK"), getenv("sk"))
	if s.cfg.AccessKey == "" || sk == "" {
		return s, errors.New("AK and SK must be set")
	}
	s.cfg.SecretKey = []byte(sk)
	s.cfg.AppInstanceID = getenv("APPINSTID")
	s.cfg.Addr = first(getenv("MEP_AGENT_ADDR"), "127.0.0.1:8090")
	s.cfg.DeregisterOnStop = true
	if v := getenv("MEP_AGENT_DEREGISTER"); v != "" {
		if s.cfg.DeregisterOnStop, err = strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("MEP_AGENT_DEREGISTER: want true or false, not %q", v)
		}
	}
	if v := getenv("MEP_TLS_INSECURE"); v != "" {
		if s.client.InsecureSkipVerify, err = strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("MEP_TLS_INSECURE: want true or false, not %q", v)
		}
	}
	s.client.CAFile = getenv("MEP_CA_CERT")
	s.infoPath = getenv("APP_INSTANCE_INFO")
	s.infoExplicit = s.infoPath != ""
	if !s.infoExplicit {
		s.infoPath = defaultInfoPath
	}
	return s, nil
}

// baseURL is KMEP_URL, else scheme://MEP_IP:MEP_APIGW_PORT.
func baseURL(getenv func(string) string) (string, error) {
	if u := getenv("KMEP_URL"); u != "" {
		return u, nil
	}
	ip, port := getenv("MEP_IP"), getenv("MEP_APIGW_PORT")
	if ip == "" || port == "" {
		return "", errors.New("set KMEP_URL, or MEP_IP and MEP_APIGW_PORT")
	}
	if strings.ContainsAny(ip, "/?#@ ") {
		return "", fmt.Errorf("MEP_IP: %q is not a host name or an IP address", ip)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("MEP_APIGW_PORT: %q is not a port", port)
	}
	scheme := strings.ToLower(first(getenv("MEP_SCHEME"), "https"))
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

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := fromEnv(os.Getenv)
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
	a, err := mepagent.New(s.cfg, mepagent.Deps{Client: client, Log: log})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
