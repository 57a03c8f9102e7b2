// Command packages is the app package and MEC host function's binary
// (package packages), served on $PORT.
//
// Environment: PORT (8080), REDIS_URL (redis://127.0.0.1:6379/0),
// KMEP_ADMIN_TOKEN (required), KMEP_ENCRYPTION_KEY (required: kubeconfigs
// are sealed with it), S3_ENDPOINT (required), S3_BUCKET (kmep-packages),
// S3_ACCESS_KEY and S3_SECRET_KEY (required), S3_REGION (us-east-1),
// KMEP_PACKAGE_MAX_BYTES (1073741824), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("packages", run) }

// config is the binary's environment (server.Main reads it).
type config struct {
	server.Serve
	store.Redis
	blob.S3
	AdminToken    string              `envconfig:"KMEP_ADMIN_TOKEN" required:"true" desc:"the platform admin's bearer token"`
	EncryptionKey store.EncryptionKey `envconfig:"KMEP_ENCRYPTION_KEY" required:"true" desc:"32 bytes, base64 or hex: seals the kubeconfigs"`
	MaxBytes      server.PositiveInt  `envconfig:"KMEP_PACKAGE_MAX_BYTES" default:"1073741824" desc:"the largest package upload"`
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
	if err := objects.EnsureBucket(ctx); err != nil {
		log.Warn("bucket not checked; uploads answer 503 until S3 answers", "err", err)
	}
	st, closeStore, err := cfg.OpenStore(store.Options{EncryptionKey: cfg.EncryptionKey})
	if err != nil {
		return err
	}
	defer closeStore()
	h := packages.New(packages.Deps{Store: st, Objects: objects, Admin: admin, Log: log, MaxPackageBytes: int64(cfg.MaxBytes)})
	return server.Run(ctx, server.Options{Addr: cfg.Addr(), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}
