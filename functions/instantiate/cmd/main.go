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
	"os"
	"time"

	"github.com/kmep-io/kmep/functions/instantiate"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("instantiate", run) }

func run(ctx context.Context, log *slog.Logger) error {
	admin, err := auth.NewAdmin(os.Getenv("KMEP_ADMIN_TOKEN"))
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	key, err := store.ParseEncryptionKey(os.Getenv("KMEP_ENCRYPTION_KEY"))
	if err != nil {
		return fmt.Errorf("KMEP_ENCRYPTION_KEY: %w", err)
	}
	installTimeout, err := server.EnvDuration("KMEP_INSTALL_TIMEOUT", 5*time.Minute)
	if err != nil {
		return err
	}
	grace, err := server.EnvDuration("KMEP_TERMINATION_GRACE", 10*time.Second)
	if err != nil {
		return err
	}
	objects, err := blob.New(blob.Config{Endpoint: os.Getenv("S3_ENDPOINT"), Bucket: server.Env("S3_BUCKET", "kmep-packages"),
		AccessKey: os.Getenv("S3_ACCESS_KEY"), SecretKey: os.Getenv("S3_SECRET_KEY"), Region: server.Env("S3_REGION", "us-east-1")})
	if err != nil {
		return err
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{EncryptionKey: key})
	if err != nil {
		return err
	}
	defer closeStore()
	agent := map[string]any{}
	if u := os.Getenv("KMEP_MEP_URL"); u != "" {
		agent["mepServer"] = u
	}
	h := instantiate.New(instantiate.Deps{Store: st, Objects: objects, Cluster: kube.New(kube.Options{Log: log}), Admin: admin,
		Log: log, Namespace: server.Env("KMEP_APP_NAMESPACE", "mec-apps"), AgentValues: agent,
		InstallTimeout: installTimeout, Graceful: grace})
	return server.Run(ctx, server.Options{Addr: ":" + server.Env("PORT", "8080"), Handler: h, Log: log})
}
