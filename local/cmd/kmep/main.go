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
// relay's redelivery timeout), KMEP_LOG_LEVEL (info), KMEP_ACCESS_LOG (true:
// a log line per request; false: none), OTEL_EXPORTER_OTLP_ENDPOINT (unset:
// no traces exported; see server.Tracing for the other OTEL_* variables).
// A second start on a data directory in use fails at once, naming the
// holder's pid; once serving, a banner on stderr names the URL, the DNS
// address, the admin token's file and the store and bucket in use.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/kit/callback"
	"github.com/kmep-io/kmep/store/kit/server"
)

func main() { server.Main("kmep", run) }

// config is the binary's environment (server.Main reads it). Unset
// settings take allinone.Config's defaults.
type config struct {
	server.Base
	Addr                string                  `envconfig:"KMEP_ADDR" desc:"the platform's listen address (unset: 127.0.0.1:8080)"`
	DataDir             string                  `envconfig:"KMEP_DATA_DIR" desc:"where the platform keeps its data and secrets (unset: .kmep)"`
	RedisURL            string                  `envconfig:"REDIS_URL" desc:"an external Redis (unset: a private redis-server, else an embedded server)"`
	AdminToken          string                  `envconfig:"KMEP_ADMIN_TOKEN" desc:"the platform admin's bearer token (unset: .kmep/admin-token)"`
	EncryptionKey       string                  `envconfig:"KMEP_ENCRYPTION_KEY" desc:"32 bytes, base64 or hex (unset: .kmep/encryption-key)"`
	SigningKey          string                  `envconfig:"KMEP_TOKEN_SIGNING_KEY" desc:"PEM of the token signing keys (unset: .kmep/signing-key.pem)"`
	MinLivenessInterval server.PositiveDuration `envconfig:"KMEP_MIN_LIVENESS_INTERVAL" desc:"the shortest heartbeat interval a service may ask for (unset: 1s)"`
	callback.Lists
	S3Endpoint   string                  `envconfig:"S3_ENDPOINT" desc:"an external S3 server (unset: an embedded S3 server under .kmep/s3)"`
	S3Bucket     string                  `envconfig:"S3_BUCKET" desc:"the packages' bucket (unset: kmep-packages)"`
	S3AccessKey  string                  `envconfig:"S3_ACCESS_KEY" desc:"the S3 access key"`
	S3SecretKey  string                  `envconfig:"S3_SECRET_KEY" desc:"the S3 secret key"`
	S3Region     string                  `envconfig:"S3_REGION" desc:"the S3 region (unset: us-east-1)"`
	AppNamespace string                  `envconfig:"KMEP_APP_NAMESPACE" desc:"the apps' namespace (unset: mec-apps)"`
	DNSAddr      string                  `envconfig:"KMEP_DNS_ADDR" desc:"the mesh DNS server's address (unset: 127.0.0.1:5353)"`
	Redelivery   server.PositiveDuration `envconfig:"KMEP_RELAY_REDELIVERY" desc:"the relay's redelivery timeout (unset: 5m)"`
	AccessLog    bool                    `envconfig:"KMEP_ACCESS_LOG" default:"true" desc:"a log line per request (false: none)"`
}

func run(ctx context.Context, log *slog.Logger, env config) error {
	cfg := allinone.Config{
		Addr:          env.Addr,
		DataDir:       env.DataDir,
		RedisURL:      env.RedisURL,
		AdminToken:    env.AdminToken,
		CallbackAllow: env.CallbackAllow,
		CallbackDeny:  env.CallbackDeny,
		S3: blob.Config{Endpoint: env.S3Endpoint, Bucket: env.S3Bucket, AccessKey: env.S3AccessKey,
			SecretKey: env.S3SecretKey, Region: env.S3Region},
		AppNamespace:        env.AppNamespace,
		DNSAddr:             env.DNSAddr,
		MinLivenessInterval: time.Duration(env.MinLivenessInterval),
		Redelivery:          time.Duration(env.Redelivery),
		NoAccessLog:         !env.AccessLog,
		Banner:              os.Stderr,
		Log:                 log,
	}
	if env.SigningKey != "" {
		cfg.SigningKeyPEM = []byte(env.SigningKey)
	}
	if v := env.EncryptionKey; v != "" {
		k, err := store.ParseEncryptionKey(v)
		if err != nil {
			return err
		}
		cfg.EncryptionKey = k
	}
	return allinone.Run(ctx, cfg)
}
