// Command kmep is the all-in-one platform for a laptop (make run): every
// kmep function on one port, with its store and secrets set up on its own.
//
// Environment: KMEP_ADDR (127.0.0.1:8080), KMEP_DATA_DIR (.kmep),
// REDIS_URL (unset: a private redis-server, else an embedded server),
// KMEP_ADMIN_TOKEN (unset: .kmep/admin-token), KMEP_ENCRYPTION_KEY (unset:
// .kmep/encryption-key), KMEP_TOKEN_SIGNING_KEY (unset:
// .kmep/signing-key.pem), KMEP_MIN_LIVENESS_INTERVAL (1s),
// KMEP_CALLBACK_ALLOW (none), KMEP_CALLBACK_DENY (none), S3_ENDPOINT
// (unset: an embedded S3 server under .kmep/s3), S3_BUCKET
// (kmep-packages), S3_ACCESS_KEY, S3_SECRET_KEY,
// S3_REGION (us-east-1), KMEP_APP_NAMESPACE (mec-apps), KMEP_DNS_ADDR
// (127.0.0.1:5353: the mesh DNS server), KMEP_RELAY_REDELIVERY (5m: the
// relay's redelivery timeout), KMEP_LOG_LEVEL (info).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() {
	log := server.NewLogger(os.Stderr, "kmep", os.Getenv("KMEP_LOG_LEVEL"))
	cfg := allinone.Config{
		Addr:          os.Getenv("KMEP_ADDR"),
		DataDir:       os.Getenv("KMEP_DATA_DIR"),
		RedisURL:      os.Getenv("REDIS_URL"),
		AdminToken:    os.Getenv("KMEP_ADMIN_TOKEN"),
		CallbackAllow: os.Getenv("KMEP_CALLBACK_ALLOW"),
		CallbackDeny:  os.Getenv("KMEP_CALLBACK_DENY"),
		SigningKeyPEM: []byte(os.Getenv("KMEP_TOKEN_SIGNING_KEY")),
		S3: blob.Config{Endpoint: os.Getenv("S3_ENDPOINT"), Bucket: os.Getenv("S3_BUCKET"), AccessKey: os.Getenv("S3_ACCESS_KEY"),
			SecretKey: os.Getenv("S3_SECRET_KEY"), Region: os.Getenv("S3_REGION")},
		AppNamespace: os.Getenv("KMEP_APP_NAMESPACE"),
		DNSAddr:      os.Getenv("KMEP_DNS_ADDR"),
		Log:          log,
	}
	if len(cfg.SigningKeyPEM) == 0 {
		cfg.SigningKeyPEM = nil
	}
	if v := os.Getenv("KMEP_ENCRYPTION_KEY"); v != "" {
		k, err := store.ParseEncryptionKey(v)
		if err != nil {
			fail(err)
		}
		cfg.EncryptionKey = k
	}
	if v := os.Getenv("KMEP_MIN_LIVENESS_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(fmt.Errorf("KMEP_MIN_LIVENESS_INTERVAL: want a positive duration like 1s"))
		}
		cfg.MinLivenessInterval = d
	}
	if v := os.Getenv("KMEP_RELAY_REDELIVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(fmt.Errorf("KMEP_RELAY_REDELIVERY: want a positive duration like 5m"))
		}
		cfg.Redelivery = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := allinone.Run(ctx, cfg); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kmep:", err)
	os.Exit(2)
}
