// Command instantiate is the app instance function's binary (package
// instantiate), served on $PORT. It links Helm and client-go (to render
// charts); the installs are the installer trigger's (triggers/installer).
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_ADMIN_TOKEN (required), KMEP_ENCRYPTION_KEY (required), S3_ENDPOINT,
// S3_ACCESS_KEY, S3_SECRET_KEY (required), S3_BUCKET (kmep-packages),
// S3_REGION (us-east-1), KMEP_APP_NAMESPACE (mec-apps), KMEP_MEP_URL (the
// platform URL given to each app's mep-agent as mepagent.mepServer; none
// when unset), KMEP_INSTALL_TIMEOUT (5m), KMEP_TERMINATION_GRACE (10s),
// KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kmep-io/kmep/functions/instantiate"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("instantiate", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	blob.S3
	AdminToken     string                  `envconfig:"KMEP_ADMIN_TOKEN" required:"true" desc:"the platform admin's bearer token"`
	EncryptionKey  store.EncryptionKey     `envconfig:"KMEP_ENCRYPTION_KEY" required:"true" desc:"32 bytes, base64 or hex"`
	Namespace      string                  `envconfig:"KMEP_APP_NAMESPACE" default:"mec-apps" desc:"the apps' namespace"`
	MEPURL         string                  `envconfig:"KMEP_MEP_URL" desc:"the platform URL given to each app's mep-agent (unset: none)"`
	InstallTimeout server.PositiveDuration `envconfig:"KMEP_INSTALL_TIMEOUT" default:"5m" desc:"bound of one install"`
	Grace          server.PositiveDuration `envconfig:"KMEP_TERMINATION_GRACE" default:"10s" desc:"the apps' graceful termination period"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) error {
	admin, err := auth.NewAdmin(cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	objects, err := blob.New(cfg.Blob())
	if err != nil {
		return err
	}
	st, closeStore, err := cfg.OpenStore(store.Options{EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		return err
	}
	defer closeStore()
	agent := map[string]any{}
	if u := cfg.MEPURL; u != "" {
		agent["mepServer"] = u
	}
	h := instantiate.New(instantiate.Deps{Store: st, Objects: objects, Cluster: kube.New(kube.Options{Log: log}), Admin: admin,
		Log: log, Namespace: cfg.Namespace, AgentValues: agent,
		InstallTimeout: time.Duration(cfg.InstallTimeout), Graceful: time.Duration(cfg.Grace)})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}
