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
	"os"

	"github.com/kmep-io/kmep/functions/packages"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/auth"
	"github.com/kmep-io/kmep/store/kit/metrics"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("packages", run) }

func run(ctx context.Context, log *slog.Logger) error {
	admin, err := auth.NewAdmin(os.Getenv("KMEP_ADMIN_TOKEN"))
	if err != nil {
		return fmt.Errorf("KMEP_ADMIN_TOKEN: %w", err)
	}
	key, err := store.ParseEncryptionKey(os.Getenv("KMEP_ENCRYPTION_KEY"))
	if err != nil {
		return fmt.Errorf("KMEP_ENCRYPTION_KEY: %w", err)
	}
	maxBytes, err := server.EnvInt("KMEP_PACKAGE_MAX_BYTES", 1<<30)
	if err != nil {
		return err
	}
	objects, err := blob.New(s3Config())
	if err != nil {
		return err
	}
	if err := objects.EnsureBucket(ctx); err != nil {
		log.Warn("bucket not checked; uploads answer 503 until S3 answers", "err", err)
	}
	st, closeStore, err := store.Open(server.Env("REDIS_URL", "redis://127.0.0.1:6379/0"), store.Options{EncryptionKey: key})
	if err != nil {
		return err
	}
	defer closeStore()
	h := packages.New(packages.Deps{Store: st, Objects: objects, Admin: admin, Log: log, MaxPackageBytes: int64(maxBytes)})
	return server.Run(ctx, server.Options{Addr: ":" + server.Env("PORT", "8080"), Handler: metrics.Mount(metrics.NewRegistry(), h), Log: log})
}

// s3Config reads the S3_* settings.
func s3Config() blob.Config {
	return blob.Config{Endpoint: os.Getenv("S3_ENDPOINT"), Bucket: server.Env("S3_BUCKET", "kmep-packages"),
		AccessKey: os.Getenv("S3_ACCESS_KEY"), SecretKey: os.Getenv("S3_SECRET_KEY"), Region: server.Env("S3_REGION", "us-east-1")}
}
